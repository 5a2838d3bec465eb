"""A tiny model trained with t5tune's trainer learns a classification task; seqio evaluation outputs."""
import glob
import json
import os

import pytest

import tests.fixtures  # noqa: F401  (registers the tasks)
from t5tune.infer import decoding
from t5tune.infer import eval_tasks
from t5tune.infer import evaluation
from t5tune.infer import metrics
from t5tune.train import experiment
from t5tune.train import trainer

# 100 steps reach what 200 did (measured 2026-12-04): 100% zero-shot, 68.75% on the fs2
# variant. One layer a stack learns the zero-shot task too but not the few-shot transfer
# (50% at 150 steps), which test_zero_and_few_shot_side_by_side_with_outputs checks.
TRAIN_STEPS = 100


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  """(final eval metrics, trained model): TRAIN_STEPS trainer steps on t5tune_infer_cls (tiny preset)."""
  c = experiment.default_config()
  c.data.mixture = "t5tune_infer_cls"
  c.data.modules = ("tests.fixtures",)
  c.data.inputs_length = 64
  c.data.targets_length = 8
  c.data.batch_size = 32
  c.data.pack = False
  c.train.steps = TRAIN_STEPS
  c.train.log_every = 50
  c.optimizer.learning_rate = 1e-2
  c.eval.every = TRAIN_STEPS
  c.eval.batches = 1
  c.checkpoint.every = 10 * TRAIN_STEPS
  c.checkpoint.async_save = False
  eval_fn = evaluation.make_eval_fn(["t5tune_infer_cls"], batch_size=16,
                                    options=decoding.DecodeOptions(max_decode_len=8))
  seen = {}

  def recording_eval_fn(model, step):
    seen["model"] = model
    return eval_fn(model, step)

  result = trainer.train(c, str(tmp_path_factory.mktemp("train")), eval_fns=[recording_eval_fn])
  return result.eval_metrics, seen["model"]


def test_rank_classification_learns_above_chance(trained):
  eval_metrics, _ = trained
  # Two balanced classes: chance is 50%.
  assert eval_metrics["t5tune_infer_cls/accuracy"] >= 85.0, eval_metrics
  assert "t5tune_infer_cls/f1_macro" in eval_metrics


def test_zero_and_few_shot_side_by_side_with_outputs(trained, tmp_path):
  _, model = trained
  resolved = (eval_tasks.resolve_tasks(clusters=["infer_test_sentiment"], variants=("", "fs2"))
              + eval_tasks.resolve_tasks(["t5tune_infer_reverse"]))
  assert [n for _, _, n in resolved] == [
      "t5tune_infer_cls", "t5tune_infer_cls_fs2", "t5tune_infer_reverse"]
  out = str(tmp_path / "eval")
  ev = evaluation.TaskEvaluator([n for _, _, n in resolved], batch_size=16, output_dir=out,
                                options=decoding.DecodeOptions(max_decode_len=24))
  results = ev.evaluate(model, step=TRAIN_STEPS)
  assert results["t5tune_infer_cls_fs2"]["accuracy"] > 50.0  # few-shot prompts work too
  table = evaluation.side_by_side(results, resolved)
  assert "| task | metric | zero-shot | fs2 |" in table and "t5tune_infer_cls | accuracy" in table

  with open(os.path.join(out, "metrics.json")) as f:
    saved = json.load(f)
  assert saved["step"] == TRAIN_STEPS and saved["tasks"] == results
  assert glob.glob(os.path.join(out, "tb", "**", "events.out.tfevents*"), recursive=True)

  lines = [json.loads(l) for l in open(
      os.path.join(out, "predictions", f"t5tune_infer_cls.step_{TRAIN_STEPS}.jsonl"))]
  assert len(lines) == 48
  assert set(lines[0]) >= {"input", "target", "prediction", "score", "method", "options"}
  assert {l["method"] for l in lines} == {"rank_classification"}
  assert all(l["prediction"] in l["options"] for l in lines)
  acc = 100.0 * sum(l["prediction"] == l["target"] for l in lines) / len(lines)
  assert acc == pytest.approx(results["t5tune_infer_cls"]["accuracy"])

  # Generation: seqio's metric values equal the libraries on the written predictions.
  gen = [json.loads(l) for l in open(
      os.path.join(out, "predictions", f"t5tune_infer_reverse.step_{TRAIN_STEPS}.jsonl"))]
  assert {l["method"] for l in gen} == {"greedy"}
  targets, preds = [l["target"] for l in gen], [l["prediction"] for l in gen]
  expected = {**metrics.rouge(targets, preds), **metrics.bleu(targets, preds),
              **metrics.squad(targets, preds)}
  assert results["t5tune_infer_reverse"] == pytest.approx(expected)


def test_unknown_variant_and_task_are_named():
  with pytest.raises(ValueError, match="register_variants"):
    eval_tasks.resolve_tasks(["t5tune_infer_cls"], variants=("fs5",))
  with pytest.raises(ValueError, match="t5tune_infer_clx.*Did you mean 't5tune_infer_cls'"):
    eval_tasks.resolve_tasks(["t5tune_infer_clx"])


def test_evaluate_command_on_a_saved_checkpoint(trained, tmp_path):
  from t5tune.cli import evaluate as evaluate_cli
  from t5tune.convert import loading
  _, model = trained
  ckpt = tmp_path / "checkpoints" / str(TRAIN_STEPS)
  loading.save_model(model, str(ckpt))
  config = evaluation.default_config()
  config.modules = ("tests.fixtures",)
  config.batch_size = 16
  results, table = evaluate_cli.run(config, str(tmp_path / "checkpoints"),
                                    tasks=["t5tune_infer_cls"])
  assert results["t5tune_infer_cls"]["accuracy"] >= 85.0
  summary = (tmp_path / "eval" / str(TRAIN_STEPS) / "summary.md").read_text()
  assert f"step {TRAIN_STEPS}" in summary and table in summary
  # the cluster's mean (FLAN reports clusters), and which template rendered each example
  accuracy = results["t5tune_infer_cls"]["accuracy"]
  assert f"| infer_test_sentiment | 1 | accuracy | {accuracy:.2f} |" in summary
  predictions = tmp_path / "eval" / str(TRAIN_STEPS) / "predictions" / f"t5tune_infer_cls.step_{TRAIN_STEPS}.jsonl"
  templates = [json.loads(line)["template"] for line in predictions.open()]
  assert set(templates) == {"cls_opt", "cls_noopt"}, templates
  # Any other model directory: MODEL_DIR/eval.
  assert evaluate_cli.default_output(str(tmp_path / "model"), 0) == str(tmp_path / "model" / "eval")


def test_one_rank_or_generate_rule_and_scorer_for_evaluate_and_the_experiments(trained, tmp_path):
  """TaskEvaluator and experiments/flan_mini/evaluate.py decide and score through t5tune.infer.judging."""
  from experiments.flan_mini import evaluate as flan_evaluate
  from t5tune import data
  from t5tune.data import tasks as tasks_lib
  from tests import fixtures
  _, model = trained
  if "t5tune_infer_inverted" not in data.task_names():
    # Options on every example, but an inverted template: its target is not an option.
    data.register_task(
        "t5tune_infer_inverted",
        source=data.sources.function({"validation": lambda: fixtures.cls_records(8, 3)}),
        fields=["text", "options", "label"],
        templates=[data.Template("inv", "Write a review whose answer is {label}.", "{text}",
                                 data.INVERTED)],
        metric_fns=[metrics.rouge], dedup=None)
  for task, want in [("t5tune_infer_cls", "rank_classification"),
                     ("t5tune_infer_reverse", "greedy"), ("t5tune_infer_inverted", "greedy")]:
    examples = tasks_lib.get_info(task).source.prepared("validation").examples
    ev = evaluation.TaskEvaluator([task], batch_size=16)
    assert ev.methods(task) == [want] * len(examples), task
    assert flan_evaluate.task_method(examples) == want, task
  # The same per-example scorer: a rank-classified task scored both ways, end to end ...
  ev = evaluation.TaskEvaluator(["t5tune_infer_cls", "t5tune_infer_reverse"], batch_size=16,
                                options=decoding.DecodeOptions(max_decode_len=24),
                                output_dir=str(tmp_path))
  results = ev.evaluate(model)
  flan = flan_evaluate.task(model, "t5tune_infer_cls", split="validation")
  assert flan["method"] == "rank_classification" and len(flan["per_example"]) == 48
  assert flan["per_example"] == ev.per_example("t5tune_infer_cls")
  assert flan["accuracy"] == pytest.approx(results["t5tune_infer_cls"]["accuracy"])
  # ... and the evaluator's generated predictions through the experiments' scorer.
  import seqio
  task = seqio.get_mixture_or_task("t5tune_infer_reverse")
  lines = [json.loads(l) for l in open(tmp_path / "predictions" / "t5tune_infer_reverse.step_0.jsonl")]
  scored = flan_evaluate.finish([l["input"] for l in lines], [l["target"] for l in lines],
                                [l["prediction"] for l in lines], "greedy", task.postprocess_fn,
                                task.metric_fns)
  assert scored["per_example"] == ev.per_example("t5tune_infer_reverse")
  assert scored["rouge1"] == pytest.approx(results["t5tune_infer_reverse"]["rouge1"])


def test_input_over_the_limit_is_refused_or_cut_with_truncate(tmp_path):
  """As `serve` and `predict`: an input over max_inputs_length is named, or cut with truncate."""
  from t5tune import data
  from t5tune import errors
  if "t5tune_infer_long" not in data.task_names():
    data.register_task(
        "t5tune_infer_long", source={"validation": [{"q": "ok", "a": "b"}, {"q": "y" * 600, "a": "b"}]},
        fields=["q", "a"], templates=[data.Template("t", "{q}", "{a}")],
        metric_fns=[metrics.accuracy])
  config = evaluation.default_config()
  config.tasks = ("t5tune_infer_long",)
  out = tmp_path / "eval"
  with pytest.raises(errors.UsageError, match=r"example 1 has 601 input tokens, over"
                     r" max_inputs_length=512"):
    evaluation.evaluator_from_config(config, str(out))
  assert not out.exists()  # refused before anything is written
  config.max_inputs_length = 700
  evaluation.evaluator_from_config(config)  # within a raised limit
  config.max_inputs_length, config.truncate = 100, True
  evaluator, _ = evaluation.evaluator_from_config(config)
  lengths = [len(ex["inputs"]) for ex in
             evaluator._evaluators["t5tune_infer_long"].cached_task_datasets[
                 "t5tune_infer_long"].as_numpy_iterator()]
  assert sorted(lengths) == [3, 100]  # "ok" + EOS; the long one cut to the limit
