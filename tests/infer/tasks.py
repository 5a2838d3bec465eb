"""Two small tasks for the inference tests, with metric functions.

    t5tune_infer_cls        classification with answer options (learnable: the
                            adjective decides the label); variants "" and "fs2"
    t5tune_infer_reverse    generation, from tests/data/testdata/reverse_*.jsonl
"""
import os
import random

from t5tune import data
from t5tune.infer import metrics

TESTDATA = os.path.join(os.path.dirname(os.path.dirname(__file__)), "data", "testdata")
_GOOD = ["great", "superb", "lovely", "fine", "good", "nice"]
_BAD = ["awful", "dull", "poor", "bad", "weak", "grim"]
_THINGS = ["film", "meal", "show", "book"]


def cls_records(n: int, seed: int):
  rng = random.Random(seed)
  for _ in range(n):
    good = rng.random() < 0.5
    text = f"The {rng.choice(_THINGS)} was {rng.choice(_GOOD if good else _BAD)}."
    yield {"text": text, "options": ["yes", "no"], "label": "yes" if good else "no"}


CLS_TEMPLATES = [
    data.Template("cls_opt", "{text} Liked it?\n{options_}", "{label}", data.ZERO_SHOT_OPTIONS),
    data.Template("cls_noopt", "{text} Did they like it?", "{label}", data.ZERO_SHOT),
]

if "t5tune_infer_cls" not in data.task_names():
  data.register_variants(
      "t5tune_infer_cls", variants=("", "fs2"),
      source=data.sources.function({
          "train": lambda: cls_records(600, 1), "validation": lambda: cls_records(48, 2)}),
      fields=["text", "options", "label"], templates=CLS_TEMPLATES,
      metric_fns=[metrics.accuracy, metrics.f1_macro], dedup=None,
      metadata={"cluster": "infer_test_sentiment"})
  data.register_task(
      "t5tune_infer_reverse",
      source={"train": os.path.join(TESTDATA, "reverse_train.jsonl"),
              "validation": os.path.join(TESTDATA, "reverse_validation.jsonl")},
      fields=["instruction", "input", "output"],
      templates=[data.Template("rev", "{instruction}\n{input}", "{output}")],
      metric_fns=[metrics.rouge, metrics.bleu, metrics.squad],
      metadata={"cluster": "infer_test_generation"})
