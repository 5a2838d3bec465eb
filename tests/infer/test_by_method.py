"""Evaluation reports a task's classification and generation templates apart, each with its metric."""
import json

import pytest

from t5tune import data
from t5tune.infer import by_method
from t5tune.infer import decoding
from t5tune.infer import evaluation
from t5tune.infer import judging
from t5tune.infer import metrics
from t5tune.models import config as model_config
from t5tune.models import t5
from tests import fixtures

MIXED, CLS = "t5tune_bymethod_mixed", "t5tune_bymethod_cls"


def _register():
  opt = data.Template("opt", "{text}\nIs it good?\n{options_}", "{label}", data.ZERO_SHOT_OPTIONS)
  inv = data.Template("inv", "Write a review whose answer is {label}.", "{text}", data.INVERTED)
  for name, templates in ((MIXED, [opt, inv]), (CLS, [opt])):
    if name not in data.task_names():
      data.register_task(
          name, source=data.sources.function({"validation": lambda: fixtures.cls_records(24, 5)}),
          fields=["text", "options", "label"], templates=templates,
          metric_fns=[metrics.accuracy], dedup=None)


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
  _register()
  out = tmp_path_factory.mktemp("eval")
  model = t5.build_model(model_config.preset("tiny"), seed=0)
  ev = evaluation.TaskEvaluator([MIXED, CLS], batch_size=8, output_dir=str(out),
                                options=decoding.DecodeOptions(max_decode_len=8))
  return ev, ev.evaluate(model, step=3), out


def _lines(out, task):
  with open(out / "predictions" / f"{task}.step_3.jsonl") as f:
    return [json.loads(l) for l in f]


def test_each_kind_scored_apart_and_the_headline_is_over_both(evaluated):
  import seqio
  ev, results, out = evaluated
  lines = _lines(out, MIXED)
  kinds = {}
  for i, line in enumerate(lines):
    kinds.setdefault(by_method.kind(line["method"]), []).append(i)
  assert set(kinds) == {"classification", "generation"}, "the task must hold both kinds"
  # The split follows the one rank-or-generate rule: options and not inverted -> ranked.
  assert ev.methods(MIXED) == [l["method"] for l in lines]
  # (every example has options; only the classification template's target is one of them)
  assert [l["method"] == judging.RANK_CLASSIFICATION for l in lines] == [
      l["target"] in l["options"] for l in lines]
  post = seqio.get_mixture_or_task(MIXED).postprocess_fn
  got = results[MIXED]
  for kind, ids in kinds.items():
    targets, preds = judging.postprocess(post, [lines[i]["target"] for i in ids],
                                         [lines[i]["prediction"] for i in ids])
    want = 100.0 * sum(t == p for t, p in zip(targets, preds)) / len(ids)
    assert got[f"{kind}/accuracy"] == pytest.approx(want), kind
    assert got[f"{kind}_examples"] == len(ids)
  n = len(lines)
  weighted = sum(got[f"{k}/accuracy"] * len(ids) for k, ids in kinds.items()) / n
  assert got["accuracy"] == pytest.approx(weighted)  # accuracy is a mean over examples


def test_a_task_of_one_kind_gets_no_split_but_says_how_it_was_judged(evaluated):
  _, results, out = evaluated
  assert not any("/" in k or k.endswith("_examples") for k in results[CLS]), results[CLS]
  saved = json.loads((out / "metrics.json").read_text())
  assert saved["tasks"] == results
  judged = saved["judged"]
  assert judged[CLS] == {"classification": {"examples": 24, "method": "rank_classification",
                                            "metrics": ["accuracy"]}}
  assert judged[MIXED]["generation"]["method"].startswith("greedy decoding")
  assert sum(v["examples"] for v in judged[MIXED].values()) == 24
  lines = by_method.summary_lines(judged)
  mixed = next(l for l in lines if MIXED in l)
  assert "metric accuracy" in mixed and "the headline is over both" in mixed
  n = judged[MIXED]["classification"]["examples"]
  assert f"classification: {n} examples, rank_classification; metric accuracy" in mixed
  assert "headline" not in next(l for l in lines if CLS in l)
