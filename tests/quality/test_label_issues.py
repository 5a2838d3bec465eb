"""Label issues: a tiny model trained with t5tune on cross-validation folds ranks flipped answers first."""
import random

from t5tune import data
from t5tune import sharding
from t5tune.cli import data_quality
from t5tune.quality import label_issues

_GOOD = ["great", "superb", "lovely", "brilliant", "fine", "nice"]
_BAD = ["awful", "boring", "dull", "poor", "bad", "weak"]
_THINGS = ["film", "book", "song", "meal", "game", "show", "play", "trip"]
N, FLIP = 240, 24


def _records():
  rng = random.Random(0)
  records = []
  for i in range(N):
    good = i % 2 == 0
    records.append({"text": f"{rng.choice(_GOOD if good else _BAD)} {rng.choice(_THINGS)} {i}",
                    "options": ["positive", "negative"], "label": "positive" if good else "negative"})
  flipped = set(rng.sample(range(N), FLIP))
  for i in flipped:
    records[i]["label"] = "negative" if records[i]["label"] == "positive" else "positive"
  return records, flipped


RECORDS, FLIPPED = _records()
data.register_task("t5tune_li_sentiment", source=data.sources.function({"train": lambda: RECORDS}),
                   fields=["text", "options", "label"], dedup=None, overwrite=True,
                   templates=[data.Template("as_is", "{text}", "{label}", data.ZERO_SHOT)])


def test_rank_orders_by_cleanlab_label_quality():
  items = [label_issues.Item("t", i, "x", "a", ("a", "b")) for i in range(20)]
  items += [label_issues.Item("t", 20 + i, "x", "b", ("b", "a")) for i in range(20)]
  # The model prefers the given answer strongly, except for records 3 and 25.
  scores = [[0.0, -4.0] for _ in range(40)]
  scores[3] = [-5.0, 0.0]
  scores[25] = [-6.0, 0.0]
  rows = label_issues.rank(items, scores)
  assert [r["record"] for r in rows[:2]] == [25, 3]
  assert [r["record"] for r in rows if r["issue"]] == [25, 3]
  assert rows[0]["given"] == "b" and rows[0]["predicted"] == "a"
  assert abs(sum(rows[0]["probabilities"]) - 1) < 1e-5
  assert label_issues.counts(rows) == {"t": {"scored": 40, "issues": 2}}
  losses = label_issues.loss_outliers(items[:10], [float(i) for i in range(10)], top_fraction=0.2)
  assert [r["record"] for r in losses if r["issue"]] == [9, 8]


def test_flipped_answers_ranked_first_by_model_trained_with_t5tune(tmp_path):
  items = label_issues.classification_items("t5tune_li_sentiment", "train")
  assert len(items) == N and {i.record for i in items} == set(range(N))
  # Kept cheap: the tiny preset, 120 steps per fold, short byte sequences, one device.
  config = data_quality.fold_config(steps=120, batch_size=32, learning_rate=5e-3,
                                    inputs_length=32, targets_length=16)
  scores = data_quality.crossval_option_scores(items, 2, config, str(tmp_path),
                                               mesh=sharding.single_device_mesh())
  rows = label_issues.rank(items, scores)
  top = [r["record"] for r in rows[:FLIP]]
  precision = len(set(top) & FLIPPED) / FLIP
  print("precision at", FLIP, "=", precision)
  # A random ranking puts 2.4 flips in the top 24 on average (precision 0.1);
  # >= 10 of 24 has hypergeometric probability 1.2e-5 under it. The exact
  # precision moves with the initial weights (0.5-0.7 seen), so the bound is
  # about beating chance by far, not about one run's figure.
  assert precision >= 10 / FLIP, precision
  flagged = {r["record"] for r in rows if r["issue"]}
  print("flagged flips", len(flagged & FLIPPED), "of", FLIP, "flagged", len(flagged))
  assert len(flagged & FLIPPED) >= 10  # cleanlab's flags catch flips far above chance
