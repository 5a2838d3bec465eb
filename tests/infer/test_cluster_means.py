"""Cluster means for summary.md: each task's primary metric, averaged per cluster and variant (as FLAN reports)."""
import pytest

from t5tune.infer import cluster_means


def test_means_per_cluster_and_variant_from_each_tasks_primary_metric():
  resolved = [("rte", "eval_rank", "rte_r"), ("rte", "eval_gen", "rte_g"),
              ("cb", "eval_rank", "cb_r"), ("cb", "eval_gen", "cb_g"),
              ("xsum", "eval_gen", "xsum_g"), ("nq", "eval_gen", "nq_g"), ("plain", "", "plain")]
  results = {"rte_r": {"accuracy": 60.0, "classification/accuracy": 60.0},
             "rte_g": {"accuracy": 50.0}, "cb_r": {"accuracy": 80.0}, "cb_g": {"accuracy": 40.0},
             "xsum_g": {"rouge1": 30.0, "rouge2": 10.0, "rougeL": 25.0, "rougeLsum": 26.0},
             "nq_g": {"exact_match": 12.0, "f1": 20.0}, "plain": {"accuracy": 99.0}}
  nli = {"cluster": "nli", "metrics": ["accuracy"]}
  metadata = {"rte_r": nli, "rte_g": nli, "cb_r": nli, "cb_g": nli,
              "xsum_g": {"cluster": "summarization", "metrics": ["rouge"]},
              "nq_g": {"cluster": "closed_book_qa"},  # no metric names: its first plain metric
              "plain": {}}
  found = cluster_means.means(results, resolved, metadata)
  assert found[("nli", "eval_rank")] == (pytest.approx(70.0), 2, ["accuracy"])
  assert found[("nli", "eval_gen")] == (pytest.approx(45.0), 2, ["accuracy"])
  assert found[("summarization", "eval_gen")] == (25.0, 1, ["rougeL"])
  assert found[("closed_book_qa", "eval_gen")] == (12.0, 1, ["exact_match"])
  table = cluster_means.table(results, resolved, metadata).splitlines()
  assert table[2] == "| cluster | tasks | metric | eval_rank | eval_gen | zero-shot |"
  assert "| nli | 2 | accuracy | 70.00 | 45.00 |  |" in table
  assert "| summarization | 1 | rougeL |  | 25.00 |  |" in table
  assert cluster_means.table({"plain": {"accuracy": 1.0}}, [("plain", "", "plain")], {}) == ""
