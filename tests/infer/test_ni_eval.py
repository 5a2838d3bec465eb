"""Super-NaturalInstructions' official ROUGE-L and exact match, on task files and splits in the official layout written here."""
import json

import pytest
from rouge_score import rouge_scorer

from t5tune.data.collections import natural_instructions as ni
from t5tune.infer import ni_eval
from tests.data import test_natural_instructions as ni_files


def test_rouge_l_is_nis_best_over_references_pooled_over_instances(tmp_path):
  ni_files._official(tmp_path)
  refs = ni.official_references(ni.read_task(str(tmp_path / "tasks" / "task002_titles.json")))
  assert len(refs) == 100 and refs[3] == ("answer 3", "other 3")
  predictions = ["other 0", "Answer 1!"] + ["answer two" for _ in range(98)]
  (tmp_path / "pred").mkdir()
  with open(tmp_path / "pred" / "ni_task002_titles.step_7.jsonl", "w") as f:
    for i in reversed(range(100)):  # rows in any order: by index
      f.write(json.dumps({"index": i, "prediction": predictions[i]}) + "\n")
  result = ni_eval.from_predictions(str(tmp_path), str(tmp_path / "pred"), step=7)
  scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
  want = [max(scorer.score(prediction=p, target=r)["rougeL"].fmeasure for r in rs)
          for p, rs in zip(predictions, refs)]
  task = result["tasks"]["ni_task002_titles"]
  assert task["rougeL"] == pytest.approx(100 * sum(want) / 100) and want[:2] == [1.0, 1.0]
  assert task["exact_match"] == pytest.approx(2.0)  # "other 0" and "Answer 1!" (normalised)
  assert result["overall"] == {"rougeL": task["rougeL"], "exact_match": task["exact_match"],
                               "instances": 100}
