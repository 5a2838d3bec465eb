"""Three tiny instruction tasks and a mixture for the data tests, the CLI and the benchmark.

    t5tune_test_sentiment   classification with answer options (generated)
    t5tune_test_qa          extractive QA with a rationale, so CoT (generated)
    t5tune_test_reverse     generation, from tests/data/testdata/reverse_*.jsonl
    t5tune_test_mix         the three, examples-proportional with a cap of 100

`t5tune data report t5tune_test_mix --module=tests.data.fixtures` reports on them.
"""
import os
import random

from t5tune import data
from t5tune.infer import metrics

TESTDATA = os.path.join(os.path.dirname(__file__), "testdata")
_NAMES = ["Ada", "Bo", "Cy", "Di", "Ed", "Flo", "Gus", "Hal", "Ivy", "Jo", "Kai", "Lu"]
_PLACES = ["Paris", "Oslo", "Lima", "Kyiv", "Rome", "Pune", "Baku", "Riga"]
_GOOD = ["great", "wonderful", "moving", "funny", "clever", "superb"]
_BAD = ["dull", "boring", "awful", "clumsy", "tedious", "bland"]
_THINGS = ["film", "movie", "show", "play", "story", "book"]


def sentiment_records(n: int, seed: int):
  rng = random.Random(seed)
  for _ in range(n):
    good = rng.random() < 0.5
    adj = rng.choice(_GOOD if good else _BAD)
    text = f"The {rng.choice(_THINGS)} by {rng.choice(_NAMES)} was {adj}."
    yield {"text": text, "options": ["positive", "negative"],
           "label": "positive" if good else "negative"}


def qa_records(n: int, seed: int):
  rng = random.Random(seed)
  for _ in range(n):
    who, where = rng.choice(_NAMES), rng.choice(_PLACES)
    other = rng.choice([p for p in _PLACES if p != where])
    context = f"{who} lives in {where}. {who}'s friend moved to {other} last year."
    yield {"context": context, "question": f"Where does {who} live?", "answer": where,
           "rationale": f"The text says {who} lives in {where}."}


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

data.register_task(
    "t5tune_test_sentiment",
    source=data.sources.function({
        "train": lambda: sentiment_records(300, 1),
        "validation": lambda: sentiment_records(40, 2)}),
    fields=["text", "options", "label"], templates=SENTIMENT_TEMPLATES,
    metric_fns=[metrics.accuracy], metadata={"cluster": "sentiment"})
data.register_task(
    "t5tune_test_qa",
    source=data.sources.function({
        "train": lambda: qa_records(200, 3), "validation": lambda: qa_records(30, 4)}),
    fields=["context", "question", "answer", "rationale"], templates=QA_TEMPLATES,
    metric_fns=[metrics.squad], metadata={"cluster": "qa"})
data.register_task(
    "t5tune_test_reverse",
    source={"train": os.path.join(TESTDATA, "reverse_train.jsonl"),
            "validation": os.path.join(TESTDATA, "reverse_validation.jsonl")},
    fields=["instruction", "input", "output"], templates=REVERSE_TEMPLATES,
    metric_fns=[metrics.rouge], metadata={"cluster": "generation"})
data.register_mixture(
    "t5tune_test_mix",
    ["t5tune_test_sentiment", "t5tune_test_qa", "t5tune_test_reverse"],
    rate=data.examples_proportional(cap=100))
