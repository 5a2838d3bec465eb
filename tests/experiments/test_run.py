"""The flan_mini driver end to end at the `test` setting, from scratch and from an HF T5 directory."""
import json
import os

import pytest

from configs.experiments import flan_mini as flan_mini_config
from experiments.flan_mini import run


def _config(**flan_mini):
  config = flan_mini_config.get_config("test")
  config.flan_mini.held_out = ("nli",)
  config.flan_mini.eval_examples = 2
  for key, value in flan_mini.items():
    config.flan_mini[key] = value
  return config


def test_run_clusters_and_styles():
  training = ["a", "b", "c", "d"]
  assert run.run_clusters("clusters_2", training) == ["a", "b"]
  assert run.run_clusters("no_template", training) == training
  assert run.run_style("mixed") == "mixed"
  with pytest.raises(ValueError, match="unknown run"):
    run.run_style("instruction")
  with pytest.raises(ValueError, match="training clusters"):
    run.run_clusters("clusters_9", training)


def test_driver_trains_evaluates_and_reports(tmp_path):
  config = _config(eval_few_shot=True)
  training = run.training_clusters(config.flan_mini)
  assert "nli" not in training and len(training) == 9
  out = run.train_and_evaluate(config, "instructions", str(tmp_path), training)
  run_dir = tmp_path / "instructions"
  assert out["steps"] == config.train.train.steps
  assert (run_dir / "metrics.jsonl").exists() and (run_dir / "tb").is_dir()
  assert os.listdir(run_dir / "checkpoints")
  held_out = out["evals"]["held_out_zs"]
  assert set(held_out["tasks"]) == {"nli_facts", "nli_count", "nli_quality"}
  assert all(t["method"] == "rank_classification" for t in held_out["tasks"].values())
  assert 0.0 <= held_out["score"] <= 100.0
  assert "held_out_fs" in out["evals"]
  # A finished run is read back, not redone.
  again = run.train_and_evaluate(config, "instructions", str(tmp_path), training)
  assert again["evals"] == json.loads(json.dumps(out["evals"]))
  results = {"instructions": again, "no_template": again}
  assert "did NOT help" in " ".join(run.verdicts(results))
  assert "| instructions |" in run.table(results, ["nli"])
  assert os.path.exists(run.plot(results, str(tmp_path), str(tmp_path / "r.png")))


def test_driver_starts_from_a_hugging_face_t5_directory(tmp_path):
  from tests.models import hf_reference  # pylint: disable=g-import-not-at-top
  _, hf_dir = hf_reference.build_hf_t5(tmp_path / "hf", gated=True, vocab_size=384)
  config = _config(eval_few_shot=False)
  config.train.init_from = hf_dir
  training = run.training_clusters(config.flan_mini)
  out = run.train_and_evaluate(config, "instructions", str(tmp_path / "runs"), training)
  assert out["steps"] == config.train.train.steps
  saved = json.load(open(tmp_path / "runs" / "instructions" / "config.json"))
  assert saved["init_from"] == hf_dir
  assert set(out["evals"]["held_out_zs"]["tasks"]) == {"nli_facts", "nli_count", "nli_quality"}
