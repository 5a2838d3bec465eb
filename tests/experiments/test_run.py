"""The flan_mini driver end to end at the `test` setting: stage A, held-out runs, statistics, report."""
import json
import os

import pytest

from configs.experiments import flan_mini as flan_mini_config
from experiments.flan_mini import run

_NLI_TASKS = {"nli_facts", "nli_count", "nli_quality"}


def stand_in_corpus(seed, vocabulary):
  """Stage A's task for the driver test: any registered seqio task trains the same way."""
  from experiments.flan_mini import tasks  # pylint: disable=g-import-not-at-top
  return tasks.training_mixture(["sentiment"], "no_template", seed, vocabulary)


def _config(**flan_mini):
  config = flan_mini_config.get_config("test")
  config.flan_mini.held_out = ("nli",)
  config.flan_mini.eval_examples = 2
  for key, value in flan_mini.items():
    config.flan_mini[key] = value
  return config


def test_run_clusters_styles_and_excluded_neighbours():
  training = ["a", "b", "c", "d"]
  assert run.run_clusters("clusters_2", training) == ["a", "b"]
  assert run.run_clusters("no_template", training) == training
  assert run.run_clusters("pretrained", training) == []
  assert run.run_style("mixed") == "mixed"
  assert run.run_style("pretrained") is None
  assert run.run_style("instructions_scratch") == "zero_shot"
  with pytest.raises(ValueError, match="unknown run"):
    run.run_style("instruction")
  with pytest.raises(ValueError, match="training clusters"):
    run.run_clusters("clusters_9", training)
  for held_out, dropped in (("nli", "paraphrase"), ("paraphrase", "nli")):
    training = run.training_clusters(_config(held_out=(held_out,)).flan_mini)
    assert held_out not in training and dropped not in training and len(training) == 8
  assert len(run.training_clusters(_config(held_out=("sentiment",)).flan_mini)) == 9


def test_stage_a_then_held_out_runs_with_intervals(tmp_path):
  config = _config(eval_few_shot=False, runs=("pretrained", "instructions"))
  config.flan_mini.pretrain.steps = 2
  config.flan_mini.pretrain.inputs_length = config.train.data.inputs_length
  config.train.eval.every = config.train.checkpoint.every = 2
  config.train.eval.batches = 1
  config.flan_mini.pretrain.task_fn = "tests.experiments.test_run:stand_in_corpus"
  config.flan_mini.pretrain.cache_dir = str(tmp_path / "stage_a_cache")
  groups = run.run_all(config, str(tmp_path / "runs"))
  stage_a = run.stage_a_dir(config)
  assert os.path.exists(os.path.join(stage_a, "config.json"))
  p, it = groups["nli"]["runs"]["pretrained"][0], groups["nli"]["runs"]["instructions"][0]
  assert p["steps"] == 0 and p["evaluated_model"] == stage_a
  assert it["init_from"] == stage_a and it["steps"] == config.train.train.steps
  # The evaluated checkpoint is the best on held-in validation, a kept step.
  assert os.path.isdir(os.path.join(it["evaluated_model"], "params"))
  held_out = it["evals"]["held_out_zs"]
  assert set(held_out["tasks"]) == _NLI_TASKS
  for m in held_out["tasks"].values():
    assert m["method"] == "rank_classification"
    assert len(m["per_example"]) == len(m["templates"]) == len(m["option_scores"]) == 2
    assert set(m["variants"]) == {"length_normalized", "calibrated"}
    assert m["accuracy"] == pytest.approx(sum(m["per_example"]) / 2)
  # A second call reuses stage A and every finished run.
  again = run.run_all(config, str(tmp_path / "runs"))
  assert again["nli"]["runs"]["instructions"][0]["evals"] == json.loads(json.dumps(it["evals"]))

  out = run.report(config, groups, str(tmp_path))
  stats = out["statistics"]["nli"]
  zs = stats["scores"]["instructions|held_out_zs|nli|plain"]
  assert zs["low"] <= zs["score"] <= zs["high"] and zs["chance"] == pytest.approx(100 / 3)
  (d,) = [d for d in stats["comparisons"] if d["rule"] == "plain"]
  assert (d["a"], d["b"]) == ("instructions", "pretrained")
  # 6 examples cannot separate two runs: the interval covers 0.
  assert d["low"] <= 0 <= d["high"] and d["verdict"] == "inconclusive"
  md = open(tmp_path / "results.md").read()
  assert "inconclusive" in md and "chance" in md and "Confusion matrix" in md
  assert os.path.exists(tmp_path / "results.png")


def test_driver_starts_from_a_hugging_face_t5_directory(tmp_path):
  from tests.models import hf_reference  # pylint: disable=g-import-not-at-top
  _, hf_dir = hf_reference.build_hf_t5(tmp_path / "hf", gated=True, vocab_size=384)
  config = _config(eval_few_shot=True)
  config.train.init_from = hf_dir
  # The checkpoint's architecture (2 encoder, 3 decoder layers), not the test setting's depth.
  config.train.model.overrides.num_encoder_layers = None
  config.train.model.overrides.num_decoder_layers = None
  training = run.training_clusters(config.flan_mini)
  out = run.train_and_evaluate(config, "instructions", str(tmp_path / "runs"), training)
  assert out["steps"] == config.train.train.steps
  saved = json.load(open(tmp_path / "runs" / "instructions" / "config.json"))
  assert saved["init_from"] == hf_dir
  assert set(out["evals"]["held_out_zs"]["tasks"]) == _NLI_TASKS and "held_out_fs" in out["evals"]
