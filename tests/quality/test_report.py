"""`t5tune data report` and `train-vocab` on the test mixture: every figure is in the JSON."""
import json
import os

import seqio

from t5tune import data
from tests import cli

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _cli(*args, cwd=REPO):
  proc = cli.run(["data", *args], cwd=cwd, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return proc.stdout


def test_report_cli_writes_json_with_every_figure_and_a_png(tmp_path):
  out = _cli("report", "t5tune_demo_mix", "--module=t5tune.demo_tasks", "--inputs_length=96",
             "--targets_length=48", f"--output={tmp_path}")
  assert "t5tune_demo_sentiment" in out and "truncated inputs" in out
  report = json.loads((tmp_path / "t5tune_demo_mix.report.json").read_text())
  assert (tmp_path / "t5tune_demo_mix.lengths.png").stat().st_size > 1000
  assert abs(sum(report["mixing_rates"].values()) - 1) < 1e-6
  assert set(report["tasks"]) == {"t5tune_demo_sentiment", "t5tune_demo_qa", "t5tune_demo_reverse"}
  rev = report["tasks"]["t5tune_demo_reverse"]["splits"]["train"]
  assert rev["examples"] == 47 and rev["read"] == 51
  assert rev["duplicates"] == 3 and rev["invalid"] == 1
  assert rev["removed"] == {"duplicate_exact": 2, "duplicate_normalized": 1, "empty_field": 1}
  assert "removed duplicate_exact 2, duplicate_normalized 1, empty_field 1" in out
  for entry in report["tasks"].values():
    for split in ("train", "validation"):
      s = entry["splits"][split]
      for key in ("examples", "duplicates", "invalid", "skipped_bad_records", "length_filtered"):
        assert isinstance(s[key], int)
      assert set(s["input_tokens"]) == set(s["target_tokens"]) == {
          "p50", "p90", "p95", "p99", "mean", "max"}
      assert set(s["truncation"]) == {"inputs", "targets"}
      assert sum(s["template_usage"].values()) == s["examples"]
      assert 0 < s["instructions"]["distinct_1"] <= 1 and 0 < s["instructions"]["distinct_2"] <= 1
      assert s["instructions"]["leading_verbs"]
  qa = report["tasks"]["t5tune_demo_qa"]["splits"]["train"]
  assert qa["truncation"]["inputs"] == 1.0  # every QA input is longer than 96 tokens
  assert {v for v, _ in qa["instructions"]["leading_verbs"]} == {"answer", "read"}
  assert set(report["totals"]) == {"train", "validation"}
  assert report["totals"]["train"]["examples"] == sum(
      e["splits"]["train"]["examples"] for e in report["tasks"].values())


def test_list_wraps_each_mixtures_tasks(capsys):
  """A mixture's tasks as a wrapped, indented block under its name and count (a collection's
  mixtures were single lines of thousands of characters)."""
  from t5tune.cli import data as data_cli
  from t5tune.data import mixtures
  names = [f"t5tune_test_wide_task_with_a_long_name_{i:02d}" for i in range(12)]
  for name in names:
    data.register_task(name, source={"train": [{"q": "a question", "a": "an answer"}]},
                       fields=["q", "a"], templates=[data.Template("qa", "{q}", "{a}")],
                       overwrite=True)
  mixtures.register_mixture("t5tune_test_wide_mix", names, overwrite=True)
  data_cli._list()  # pylint: disable=protected-access
  out = capsys.readouterr().out
  block = out[out.index("  t5tune_test_wide_mix  "):].splitlines()
  assert block[0] == f"  t5tune_test_wide_mix  ({len(names)} tasks)"
  body = []
  for line in block[1:]:
    if not line.startswith("      "):
      break
    body.append(line)
  assert len(body) > 1 and max(len(line) for line in body) <= 100
  assert " ".join(body).split() == ", ".join(names).split()


def test_list_and_train_vocab(tmp_path):
  out = _cli("list", "--module=t5tune.demo_tasks")
  assert "t5tune_demo_qa" in out and "t5tune_demo_mix" in out and "'cluster': 'qa'" in out
  prefix = str(tmp_path / "spm")
  _cli("train-vocab", "--module=t5tune.demo_tasks", "--tasks=t5tune_demo_mix",
       "--vocab_size=200", f"--output={prefix}")
  vocab = data.get_vocabulary(prefix + ".model")
  assert isinstance(vocab, seqio.SentencePieceVocabulary)
  assert isinstance(data.get_vocabulary("byte"), seqio.ByteVocabulary)
  assert vocab.eos_id == 1 and vocab.pad_id == 0
  ids = vocab.encode("Where does Ada live?")
  assert vocab.decode(ids) == "Where does Ada live?"


def test_near_duplicate_removals_are_in_the_headline_and_the_console():
  """After dedup="near" drops records, the printed report says so (not "duplicates 0")."""
  from t5tune.quality import report
  words = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda".split()
  base = " ".join(words * 3)
  records = [{"q": f"{base} {i}", "a": "x"} for i in range(6)] + [{"q": "something else", "a": "y"}]
  data.register_task("report_near_dups", source={"train": records}, fields=["q", "a"],
                     templates=[data.Template("t", "{q}", "{a}")], dedup="near", overwrite=True)
  built = report.build("report_near_dups", feature_lengths={"inputs": 64, "targets": 8})
  split = built["tasks"]["report_near_dups"]["splits"]["train"]
  near = split["removed"].get("duplicate_near", 0)
  assert near >= 4 and split["duplicates"] == near, split["removed"]
  text = report.format_text(built)
  assert f"duplicates {near}" in text and f"duplicate_near {near}" in text
