"""Planted data for the quality tests: tasks whose contamination is known exactly.

    t5tune data contamination t5tune_q_train t5tune_q_eval --module=tests.quality.quality_fixtures

`cq_eval` (validation) has 40 records; records 0-4 carry a 13-word span of a
`cq_train_a` record, 5-6 one of `cq_train_b`, 7 has a 9-word field that is a
span of a `cq_train_a` record (matched whole: 8 <= 9 < 13); 8 shares only 12
words in a row and 9 a 7-word field (neither counts); the rest share nothing.
"""
import random

from t5tune import data
from t5tune.infer import metrics

_LETTERS = "abcdefghijklmnopqrstuvwxyz"
PLANTED = {0: "cq_train_a", 1: "cq_train_a", 2: "cq_train_a", 3: "cq_train_a", 4: "cq_train_a",
           5: "cq_train_b", 6: "cq_train_b", 7: "cq_train_a"}


def _words(rng, n):
  return ["".join(rng.choice(_LETTERS) for _ in range(rng.randint(4, 8))) for _ in range(n)]


def _build(seed=0):
  rng = random.Random(seed)
  train = {t: [{"text": " ".join(_words(rng, 30)), "question": " ".join(_words(rng, 5)),
                "answer": rng.choice(["yes", "no"])} for _ in range(50)]
           for t in ("cq_train_a", "cq_train_b")}
  evaluation = []
  for i in range(40):
    text = _words(rng, 30)
    question = _words(rng, 5)
    if i in PLANTED and i != 7:
      src = train[PLANTED[i]][i * 3]["text"].split()
      text[10:23] = src[4:17]  # 13 words in a row
    elif i == 7:
      question = train["cq_train_a"][11]["text"].split()[2:11]  # a 9-word field
    elif i == 8:
      text[5:17] = train["cq_train_b"][0]["text"].split()[0:12]  # only 12
    elif i == 9:
      question = train["cq_train_a"][0]["text"].split()[0:7]  # 7 words: below min_n
    evaluation.append({"text": " ".join(text), "question": " ".join(question),
                       "answer": rng.choice(["yes", "no"]), "options": ["yes", "no"]})
  return train, evaluation


TRAIN, EVAL = _build()
_TEMPLATES = [data.Template("q", "{text}\n{question}?", "{answer}")]
for _name, _records in TRAIN.items():
  data.register_task(_name, source=data.sources.function({"train": lambda r=_records: r}),
                     fields=["text", "question", "answer"], templates=_TEMPLATES,
                     metric_fns=[metrics.accuracy], overwrite=True)
data.register_task("cq_eval", source=data.sources.function({"validation": lambda: EVAL}),
                   fields=["text", "question", "answer", "options"], templates=_TEMPLATES,
                   metric_fns=[metrics.accuracy], overwrite=True)
data.register_mixture("t5tune_q_train", ["cq_train_a", "cq_train_b"], overwrite=True)
data.register_mixture("t5tune_q_eval", ["cq_eval"], overwrite=True)
