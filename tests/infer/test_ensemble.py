"""Prompt ensembling: the ensemble's choice is the combination of the single-template scores and outputs."""
import numpy as np
import pytest

from t5tune.data import tasks
from t5tune.data import templates
from t5tune.infer import api
from t5tune.infer import ensemble
from t5tune.infer import judging
from t5tune.infer import metrics
from t5tune.models import config as model_config
from t5tune.models import t5

T = templates.Template
CLS_TEMPLATES = [
    T("a", "Is {x} big?\n{options_}", "{answer}", templates.ZERO_SHOT_OPTIONS),
    T("b", "{x}: big or not?", "{answer}"),
    T("c", "Question: is {x} large? {options_}", "{answer}", templates.ZERO_SHOT_OPTIONS),
    T("inv", "Name a thing whose answer is {answer}.", "{x}", templates.INVERTED),
]


@pytest.fixture(scope="module")
def model():
  return t5.build_model(model_config.preset("tiny"))


def _register():
  records = [{"x": f"thing {i}", "options": ["yes", "no", "maybe"], "answer": ["yes", "no", "maybe"][i % 3]}
             for i in range(10)]
  tasks.register_task("ens_cls", source={"validation": records}, fields=["x", "options", "answer"],
                      templates=CLS_TEMPLATES, metric_fns=[metrics.accuracy], overwrite=True)
  gen = [{"x": f"word {i}", "y": f"drow {i}"} for i in range(6)]
  tasks.register_task("ens_gen", source={"validation": gen}, fields=["x", "y"],
                      templates=[T("g1", "Reverse {x}", "{y}"), T("g2", "{x} backwards:", "{y}"),
                                 T("g3", "Spell {x} reversed", "{y}")],
                      metric_fns=[metrics.accuracy], overwrite=True)


def test_combine_scores_and_vote():
  best, mean = ensemble.combine_scores([[[-1.0, -3.0]], [[-4.0, -1.0]], [[-1.0, -1.5]]])
  assert best.tolist() == [1] and np.allclose(mean, [[-2.0, -5.5 / 3]])
  assert ensemble.vote([["a", "b"], ["c", "b"], ["c", "x"]]) == ["c", "b"]
  assert ensemble.vote([["a"], ["b"]]) == ["a"]  # a tie goes to the earliest template


def test_rank_ensemble_is_the_mean_of_single_template_scores(model):
  _register()
  result = ensemble.evaluate(model, "ens_cls", vocabulary="byte")
  assert result.templates == ["a", "b", "c"] and result.method == judging.RANK_CLASSIFICATION
  info = tasks.get_info("ens_cls")
  records = info.source.records("validation")[0]
  options = [r["options"] for r in records]
  per_template = []
  for template in CLS_TEMPLATES[:3]:
    inputs = [templates.render(template, r)[0] for r in records]
    c = api.classify(model, inputs, options, vocabulary="byte")
    per_template.append(c.scores)
    assert result.single[template.name] == judging.metrics(
        [metrics.accuracy], [r["answer"] for r in records], c.predictions)
  mean = np.mean(np.asarray(per_template), axis=0)
  want = [o[int(i)] for o, i in zip(options, mean.argmax(-1))]
  assert result.predictions == want
  assert result.ensemble == judging.metrics([metrics.accuracy], [r["answer"] for r in records], want)


def test_generation_ensemble_is_the_majority_vote(model):
  _register()
  result = ensemble.evaluate(model, "ens_gen", vocabulary="byte", max_decode_len=6)
  assert result.method == "greedy" and result.templates == ["g1", "g2", "g3"]
  records = tasks.get_info("ens_gen").source.records("validation")[0]
  outputs = [api.generate(model, [templates.render(t, r)[0] for r in records], vocabulary="byte",
                          max_decode_len=6) for t in tasks.get_info("ens_gen").source.templates]
  assert result.predictions == ensemble.vote(outputs)
  assert "ensemble" not in result.single and set(result.single) == {"g1", "g2", "g3"}
  table = ensemble.table({"ens_gen": result})
  assert "| ens_gen | greedy | 3 |" in table


def test_evaluate_reports_ensembles_beside_single_scores(model, tmp_path):
  import json  # pylint: disable=g-import-not-at-top
  from t5tune.cli import evaluate as evaluate_cli  # pylint: disable=g-import-not-at-top
  from t5tune.convert import loading  # pylint: disable=g-import-not-at-top
  from t5tune.infer import evaluation  # pylint: disable=g-import-not-at-top
  _register()
  model_dir = str(tmp_path / "model")
  loading.save_model(model, model_dir)
  config = evaluation.default_config()
  config.ensemble_templates = 2
  config.decoding.max_decode_len = 6
  results, table = evaluate_cli.run(config, model_dir, str(tmp_path / "eval"), tasks=["ens_cls", "ens_gen"])
  written = json.loads((tmp_path / "eval" / "ensemble.json").read_text())
  assert set(written) == {"ens_cls", "ens_gen"}
  assert written["ens_cls"]["templates"] == ["a", "b"] and written["ens_cls"]["method"] == "rank_classification"
  direct = ensemble.evaluate(model, "ens_cls", num_templates=2)
  assert written["ens_cls"]["ensemble"] == direct.ensemble and written["ens_cls"]["single"] == direct.single
  assert "prompt ensembles:" in table and "| ens_cls | rank_classification | 2 |" in table
  assert "ens_cls" in results  # the single-template evaluation is still there
