"""Quality sections of the data report: diversity, clarity, consistency, near-dups, contamination, label issues."""
import json

from t5tune.quality import report
from t5tune.quality import report_quality

from tests.quality import quality_fixtures as qf


def test_measures_on_hand_made_instructions():
  assert report_quality.verb_noun("Write a short poem about the sea.") == ("write", "short")
  assert report_quality.verb_noun("Premise: x\nClassify the following review.") == ("classify", "review")
  assert report_quality.verb_noun("What is the capital of France?") is None
  assert report_quality.mattr(["a", "b", "a", "b"]) == 0.5
  assert report_quality.mattr(list("abcabc"), window=3) == 1.0
  assert report_quality.mattr(list("aab"), window=2) == (0.5 + 1.0) / 2
  c = report_quality.clarity(["Write a poem.", "Is the sky blue?", "Text: hi\nTranslate it."])
  assert c["question"] == 1 / 3 and c["imperative"] == 2 / 3 and c["words"]["p50"] == 4  # 3, 4 and 4 words
  d = report_quality.diversity(["Write a poem.", "Write a poem.", "List the fruits."])
  assert d["verb_noun_pairs"] == [("write poem", 2), ("list fruits", 1)]
  assert d["distinct_verb_noun"] == 2
  examples = [
      {"template_name": "t", "template_kind": "zs_opt", "inputs": "q", "targets": "yes",
       "options": ["yes", "no"]},
      {"template_name": "t", "template_kind": "zs_opt", "inputs": "q", "targets": "maybe",
       "options": ["yes", "no"]},
      {"template_name": "u", "template_kind": "inv", "inputs": "q", "targets": "q", "options": []},
      {"template_name": "u", "template_kind": "inv", "inputs": "q", "targets": " ", "options": []}]
  assert report_quality.consistency(examples) == {
      "t": {"examples": 2, "violations": {"target_not_in_options": 1}},
      "u": {"examples": 2, "violations": {"target_equals_input": 1, "empty_target": 1}}}


def test_report_has_near_duplicate_contamination_diversity_and_label_issue_sections(tmp_path):
  issues = tmp_path / "issues.jsonl"
  issues.write_text("".join(json.dumps({"task": "cq_train_a", "record": i, "issue": True}) + "\n"
                            for i in range(3)))
  out, json_path, png_path = report.write(
      "t5tune_q_train", str(tmp_path), feature_lengths={"inputs": 256, "targets": 8},
      contamination_eval="t5tune_q_eval", label_issues_path=str(issues), near_threshold=0.8)
  saved = json.loads(open(json_path).read())
  assert saved["contamination"]["tasks"]["cq_eval"]["contaminated"] == len(qf.PLANTED)
  assert saved["contamination"]["tasks"]["cq_eval"]["by_train_task"] == {
      "cq_train_a": 6, "cq_train_b": 2}
  assert saved["near_duplicates"]["within"] == {
      "cq_train_a": {"pairs": 0, "records_involved": 0},
      "cq_train_b": {"pairs": 0, "records_involved": 0}}
  assert saved["label_issues"]["tasks"] == {"cq_train_a": {"issues": 3}}
  q = saved["tasks"]["cq_train_a"]["splits"]["train"]["quality"]
  assert set(q) == {"diversity", "clarity", "consistency"}
  assert q["consistency"] == {"q": {"examples": 50, "violations": {}}}
  assert saved["metadata"]["examples_by_template_kind"] == {"zs_noopt": 100}
  text = report.format_text(out)
  assert "contamination vs t5tune_q_eval" in text and "8/40" in text
  assert "near-duplicates [train]" in text and "verb-noun pairs" in text
