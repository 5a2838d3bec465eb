"""Contamination: n-gram overlap found exactly on planted overlaps; CLI output; clean-subset scores."""
import json

from t5tune.quality import contamination
from t5tune.infer import evaluation

from tests import cli
from tests.quality import quality_fixtures as qf


def test_planted_overlaps_found_exactly():
  result = contamination.for_mixtures("t5tune_q_train", "t5tune_q_eval")
  assert result.dirty == {"cq_eval": set(qf.PLANTED)}
  assert result.dirty_by_train["cq_eval"] == {"cq_train_a": 6, "cq_train_b": 2}
  pairs = {(o.eval_index, o.train_task) for o in result.overlaps}
  assert pairs == {(i, t) for i, t in qf.PLANTED.items()}
  by_index = {o.eval_index: o for o in result.overlaps}
  assert by_index[0].train_index == 0 and len(by_index[0].ngram.split()) == 13
  assert by_index[7].train_index == 11 and len(by_index[7].ngram.split()) == 9
  assert result.rates() == {"cq_eval": 8 / 40}
  # 12-gram overlaps count with n=12, and the 7-word field with min_n=7.
  loose = contamination.for_mixtures("t5tune_q_train", "t5tune_q_eval", n=12, min_n=7)
  assert loose.dirty["cq_eval"] == set(qf.PLANTED) | {8, 9}
  assert contamination.clean_mask("cq_eval", "validation", ["t5tune_q_train"]) == [
      i not in qf.PLANTED for i in range(40)]


def test_contamination_cli_prints_rates_and_writes_overlaps(tmp_path):
  out = tmp_path / "overlaps.jsonl"
  args = ["data", "contamination", "t5tune_q_train",
          "t5tune_q_eval", "--module=tests.quality.quality_fixtures", f"--out={out}"]
  proc = cli.run(args, timeout=300)
  assert proc.returncode == 0, proc.stderr[-2000:]
  # --out is the old spelling of --output: still accepted, with a one-line note.
  assert "--out is deprecated; use --output" in proc.stderr
  assert "cq_eval: 8/40 = 20.0%" in proc.stdout
  lines = [json.loads(l) for l in out.read_text().splitlines()]
  assert sorted(l["eval_index"] for l in lines) == sorted(qf.PLANTED)
  for l in lines:  # the n-gram is in both records, as written
    assert l["ngram"] in l["eval_record"]["text"] + " " + l["eval_record"]["question"]
    assert l["ngram"] in l["train_record"]["text"]
  # A second run refuses to replace the file (nothing of the user's is lost).
  again = cli.run(args, timeout=300)
  assert again.returncode != 0 and "--overwrite" in again.stderr
  assert "Traceback" not in again.stderr


def test_evaluation_reports_clean_subset_beside_full_scores():
  mask = contamination.clean_mask("cq_eval", "validation", ["t5tune_q_train"])
  ev = evaluation.TaskEvaluator(["cq_eval"], clean_masks={"cq_eval": mask})
  # Predictions right on the clean examples and wrong on the contaminated ones.
  targets = [ex["target"] for ex in ev._examples["cq_eval"]]
  texts = [t if clean else ("no" if t == "yes" else "yes") for t, clean in zip(targets, mask)]
  out = ev._clean_subset("cq_eval", texts)
  assert out == {"clean_examples": 32.0, "clean/accuracy": 100.0}
