"""Audit of the flan_mini world corpus and the redesigned collection.

Coverage: every word of every template and option occurs in the corpus.
Contamination (FLAN's analysis in miniature): no test item of a held-out
cluster (its inputs with its answer) occurs in the corpus or in any training
task; 8-gram overlap is measured and printed. Composition: what each held-out
cluster needs is taught by some other, held-in, training task.
"""
import collections
import os
import re

import numpy as np
import pytest
import seqio

from experiments.flan_mini import collection
from experiments.flan_mini import corpus
from experiments.flan_mini import world as world_lib

HELD_OUT = ("nli", "paraphrase", "closed_book", "sentiment")
# FLAN drops the neighbour of the held-out cluster from training.
EXCLUDED_NEIGHBOUR = {"nli": "paraphrase", "paraphrase": "nli"}
_WORD = re.compile(r"[A-Za-z0-9]+")
N = 8


@pytest.fixture(scope="module")
def docs():
  return corpus.documents(seed=0)


@pytest.fixture(scope="module")
def records():
  return {t: collection.generate(t, seed=0) for t in collection.TASKS}


def _words(text):
  return [w.lower() for w in _WORD.findall(text)]


def _ngrams(words, n=N):
  return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


def _answer_field(task):
  fields = collection.TASKS[task].fields
  return next(f for f in ("answer", "label", "summary", "text", "target", "output") if f in fields
              and (f != "text" or "data" in fields))


def _item(task, record):
  """A test item as text: its input fields, then its answer."""
  answer = _answer_field(task)
  inputs = [str(record[f]) for f in collection.TASKS[task].fields
            if f not in (answer, "options", "rationale")]
  return " ".join(inputs + [str(record[answer])])


def test_every_template_word_and_option_occurs_in_the_corpus(docs):
  words = {w for d in docs for w in _words(d)}
  needed = corpus.template_words()
  assert len(needed) > 100
  assert sorted(needed - words) == []


def test_corpus_is_fixed_for_a_seed_and_has_its_parts(docs):
  assert corpus.documents(seed=0) == docs
  assert corpus.documents(seed=1) != docs
  text = "\n".join(docs)
  w = world_lib.World(0)
  # Every fact of every fact-base person is stated, in several wordings.
  for name in w.people:
    assert text.count(name) >= 6
    assert f"{name} has a {w.facts[name]['pet']}" in text or f"{name} keeps a" in text
  # Closed-book question wordings are never used for fact-base people.
  assert not any(f"Where does {n} live" in text for n in w.people)
  for part in ("In Lumi", "it is not possible to tell", " + ", "Premise: "):
    assert part in text


def test_no_held_out_test_item_is_in_the_corpus_or_a_training_task(docs, records):
  corpus_text = "\n".join(docs).lower()
  corpus_grams = set()
  for d in docs:
    corpus_grams |= _ngrams(_words(d))
  report = {}
  for cluster in HELD_OUT:
    excluded = {cluster, EXCLUDED_NEIGHBOUR.get(cluster)}
    train_items, train_grams = set(), set()
    for task, spec in collection.TASKS.items():
      if spec.cluster in excluded:
        continue
      for r in records[task]["train"]:
        item = " ".join(_words(_item(task, r)))
        train_items.add(item)
        train_grams |= _ngrams(item.split())
    overlap_corpus = overlap_train = long_items = 0
    for task in collection.cluster_tasks([cluster]):
      for r in records[task]["test"]:
        words = _words(_item(task, r))
        item = " ".join(words)
        assert item not in corpus_text, (task, item)
        assert item not in train_items, (task, item)
        grams = _ngrams(words)
        if grams:
          long_items += 1
          overlap_corpus += bool(grams & corpus_grams)
          overlap_train += bool(grams & train_grams)
    report[cluster] = (long_items, overlap_corpus, overlap_train)
  print("\nheld-out test items with >= 1 shared 8-gram (items of >= 8 words, corpus, held-in train):")
  for cluster, (n, c, t) in report.items():
    print(f"  {cluster:12s} {n:4d} items  corpus {c}  train {t}")
  # The corpus uses its own cast: no 8-gram of a held-out test item is in it.
  assert all(c == 0 for _, c, _ in report.values())


def test_each_held_out_skill_is_taught_by_a_held_in_task(records):
  w = world_lib.World(0)
  for cluster in HELD_OUT:
    excluded = {cluster, EXCLUDED_NEIGHBOUR.get(cluster)}
    held_in = [t for t, s in collection.TASKS.items() if s.cluster not in excluded]
    targets = collections.Counter()
    for task in held_in:
      for r in records[task]["train"]:
        targets[str(r[_answer_field(task)])] += 1
        targets.update(w for w in _words(" ".join(str(v) for v in r.values())))
    answers = {str(r[_answer_field(t)]) for t in collection.cluster_tasks([cluster])
               for r in records[t]["train"]}
    if cluster in ("nli", "paraphrase", "sentiment"):
      # Every answer of the held-out cluster is a target or a word of some held-in record.
      assert all(targets[a] or all(targets[x] for x in _words(a)) for a in answers), cluster
    if cluster == "nli":
      assert targets[collection.CANNOT_TELL] > 50  # rc_verify's third answer
    # Options that change per example are trained in some held-in task.
    varying = [t for t in held_in if "options" in collection.TASKS[t].fields
               and len({tuple(r["options"]) for r in records[t]["train"]}) > 10]
    assert varying, cluster
  # Recall of stored facts outside closed_book, on half of the people only.
  recalled = {r["data"].split(" | ")[0][len("name: "):] for r in records["s2t_recall"]["train"]}
  assert recalled <= set(collection.recall_people(w))
  assert len(recalled) > len(w.people) // 3


def test_vocabulary_is_trained_on_the_corpus_cached_and_has_sentinels(tmp_path, docs):
  path = corpus.vocabulary(str(tmp_path))
  mtime = os.path.getmtime(path)
  assert corpus.vocabulary(str(tmp_path)) == path and os.path.getmtime(path) == mtime
  assert sorted(os.listdir(tmp_path)) == [os.path.basename(path)[:-len(".model")] + ".model"]
  vocab = corpus.get_vocabulary(path)
  assert vocab.extra_ids == corpus.EXTRA_IDS
  # Words are one or a few pieces: sequences are short.
  pieces_per_word = np.mean([len(vocab.encode(d)) / len(d.split()) for d in docs[:300]])
  assert pieces_per_word < 1.5
  for word in ("premise", "hypothesis", "paraphrase", "sentiment", "options"):
    assert len(vocab.encode(word)) <= 3, word
  # The stage-A task: span corruption with sentinels from the vocabulary's end.
  name = corpus.register(vocabulary=path)
  assert corpus.register(vocabulary=path) == name
  ex = next(seqio.get_mixture_or_task(name).get_dataset(
      {"inputs": 128, "targets": 32}, split="train", shuffle=False, seed=0).as_numpy_iterator())
  assert ex["targets"][0] == vocab.vocab_size - 1 and ex["inputs"][-1] == 1
  assert len(ex["inputs"]) == 128  # the chunk length fills the inputs exactly
