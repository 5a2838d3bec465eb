"""Small generated instruction tasks for smoke runs, demos and tests (importing registers them).

    t5tune_demo_sentiment   classification with answer options: the adjective decides the label
    t5tune_demo_qa          extractive QA with a rationale, so chain-of-thought targets too
    t5tune_demo_reverse     generation, from t5tune/demo_data/reverse_*.jsonl (with a few
                            duplicate and empty records, so cleaning has work to do)
    t5tune_demo_mix         the three, examples-proportional with a cap of 100

    t5tune train --config=configs/experiments/tiny.py --workdir=runs/tiny
    t5tune data report t5tune_demo_mix --module=t5tune.demo_tasks

A top-level module rather than one in `t5tune.data`, because the tasks carry
metric functions from `t5tune.infer.metrics` and `data` imports nothing else
of t5tune. Shipped configs and benchmarks use it; nothing in the library does.
"""
import os
import random

from t5tune import data
from t5tune.infer import metrics

DEMO_DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "demo_data")
NAMES = ["Ada", "Bo", "Cy", "Di", "Ed", "Flo", "Gus", "Hal", "Ivy", "Jo", "Kai", "Lu"]
PLACES = ["Paris", "Oslo", "Lima", "Kyiv", "Rome", "Pune", "Baku", "Riga"]
GOOD = ["great", "wonderful", "moving", "funny", "clever", "superb"]
BAD = ["dull", "boring", "awful", "clumsy", "tedious", "bland"]
THINGS = ["film", "movie", "show", "play", "story", "book"]


def review_records(n: int, seed: int, *, labels=("positive", "negative"), good=GOOD, bad=BAD,
                   things=THINGS, names=NAMES):
  """`n` one-sentence reviews whose adjective (from `good` or `bad`) decides the label.

  `names=()` leaves the author out ("The film was dull.").
  """
  rng = random.Random(seed)
  for _ in range(n):
    positive = rng.random() < 0.5
    adj = rng.choice(good if positive else bad)
    thing = rng.choice(things)
    by = f" by {rng.choice(names)}" if names else ""
    yield {"text": f"The {thing}{by} was {adj}.", "options": list(labels),
           "label": labels[0] if positive else labels[1]}


def qa_records(n: int, seed: int):
  rng = random.Random(seed)
  for _ in range(n):
    who, where = rng.choice(NAMES), rng.choice(PLACES)
    other = rng.choice([p for p in PLACES if p != where])
    context = f"{who} lives in {where}. {who}'s friend moved to {other} last year."
    yield {"context": context, "question": f"Where does {who} live?", "answer": where,
           "rationale": f"The text says {who} lives in {where}."}


def reverse_files() -> dict[str, str]:
  """The reverse task's JSONL files by split."""
  return {split: os.path.join(DEMO_DATA, f"reverse_{split}.jsonl")
          for split in ("train", "validation")}


SENTIMENT_TEMPLATES = [
    data.Template("sent_opt", "{text}\nWhat is the sentiment of this review?\n{options_}",
                  "{label}", data.ZERO_SHOT_OPTIONS),
    data.Template("sent_noopt", "Review: {text}\nIs this review positive or negative?",
                  "{label}", data.ZERO_SHOT),
    data.Template("sent_inv", "Write a {label} review.", "{text}", data.INVERTED),
]
QA_TEMPLATES = [
    data.Template("qa_plain", "Read the text and answer the question.\n\n{context}\n\nQ: {question}",
                  "{answer}", data.ZERO_SHOT),
    data.Template("qa_cot", "Answer the question, explaining your reasoning.\n{context}\n{question}",
                  "{rationale} So the answer is {answer}.", data.COT),
]
REVERSE_TEMPLATES = [
    data.Template("rev_1", "{instruction}\n\n{input}", "{output}"),
    data.Template("rev_2", "Input: {input}\n{instruction}", "{output}"),
]

# Importing twice (a test module and a config naming this module) registers once.
if "t5tune_demo_sentiment" not in data.task_names():
  data.register_task(
      "t5tune_demo_sentiment",
      source=data.sources.function({
          "train": lambda: review_records(300, 1),
          "validation": lambda: review_records(40, 2)}),
      fields=["text", "options", "label"], templates=SENTIMENT_TEMPLATES,
      metric_fns=[metrics.accuracy], metadata={"cluster": "sentiment"})
  data.register_task(
      "t5tune_demo_qa",
      source=data.sources.function({
          "train": lambda: qa_records(200, 3), "validation": lambda: qa_records(30, 4)}),
      fields=["context", "question", "answer", "rationale"], templates=QA_TEMPLATES,
      metric_fns=[metrics.squad], metadata={"cluster": "qa"})
  data.register_task(
      "t5tune_demo_reverse", source=reverse_files(),
      fields=["instruction", "input", "output"], templates=REVERSE_TEMPLATES,
      metric_fns=[metrics.rouge], metadata={"cluster": "generation"})
  data.register_mixture(
      "t5tune_demo_mix",
      ["t5tune_demo_sentiment", "t5tune_demo_qa", "t5tune_demo_reverse"],
      rate=data.examples_proportional(cap=100))
