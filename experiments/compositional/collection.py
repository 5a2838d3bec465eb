"""The compositional collection: ~160 tasks (selector x transform x readout), held-out pairing clusters, records.

    tasks = collection.all_tasks()                      # [Task(selector, transform, readout), ...]
    training = collection.training_tasks()              # no held-out pairing among them
    recs = collection.records(task, "train", seed=0)    # [{"words", "instruction", "answer", ...}]

Every record reads the same kind of input, a list of 5-6 nouns
(`lexicon.word_list`); which nouns lists are train, validation or test is
fixed by a hash of the list, so no test list is ever trained on. A held-out
cluster is a family of primitive pairings (e.g. selector "animals" with
transform "plural"): every task containing one of them is held out, all four
clusters jointly, and is only evaluated. What each cluster needs is taught
by training tasks one primitive at a time ("animals" with other transforms;
"plural" with other selectors).
"""
from __future__ import annotations

import dataclasses
import hashlib
import math

from experiments.compositional import lexicon
from experiments.compositional import primitives as prim

SPLITS = ("train", "validation", "test")
# Records per training task and split; held-out tasks get test records only,
# enough that each cluster has >= HELD_OUT_EXAMPLES.
SIZES = {"train": 48, "validation": 4, "test": 4}
HELD_OUT_EXAMPLES = 320
# Of 100 hash buckets of a word list: test 20, validation 10, train the rest.
_TEST_BUCKETS, _VALIDATION_BUCKETS = 20, 10

# name -> pairings ((kind, primitive), (kind, primitive)); a task is held out
# when it contains both primitives of any pairing of any cluster.
HELD_OUT = {
    "animals+plural": [((prim.SELECTOR, "animals"), (prim.TRANSFORM, "plural"))],
    "last+alphabetical": [((prim.SELECTOR, "last2"), (prim.TRANSFORM, "alphabetical")),
                          ((prim.SELECTOR, "last3"), (prim.TRANSFORM, "alphabetical"))],
    "translate+last": [((prim.TRANSFORM, "translate"), (prim.READOUT, "last"))],
    "category+member": [((prim.SELECTOR, "foods"), (prim.READOUT, "member")),
                        ((prim.SELECTOR, "tools"), (prim.READOUT, "member"))],
}


@dataclasses.dataclass(frozen=True, order=True)
class Task:
  selector: str
  transform: str
  readout: str

  @property
  def name(self) -> str:
    return f"{self.selector}.{self.transform}.{self.readout}"

  def primitives(self) -> dict[str, str]:
    return {prim.SELECTOR: self.selector, prim.TRANSFORM: self.transform,
            prim.READOUT: self.readout}

  @property
  def classification(self) -> bool:
    """Balanced yes / no answers: scored by rank classification (judging's rule)."""
    return self.readout == "member"


def all_tasks() -> list[Task]:
  out = []
  for s in prim.SELECTORS:
    for t in prim.TRANSFORMS:
      for r in prim.READOUTS:
        if r in prim.TRANSFORM_FREE and t != "keep":
          continue
        out.append(Task(s, t, r))
  return out


def cluster_of(task: Task) -> str | None:
  """The held-out cluster a task belongs to (None: a training task)."""
  p = task.primitives()
  for cluster, pairings in HELD_OUT.items():
    for (ka, a), (kb, b) in pairings:
      if p[ka] == a and p[kb] == b:
        return cluster
  return None


def training_tasks() -> list[Task]:
  return [t for t in all_tasks() if cluster_of(t) is None]


def held_out_tasks(cluster: str) -> list[Task]:
  return [t for t in all_tasks() if cluster_of(t) == cluster]


def task_order(seed: int = 0) -> list[Task]:
  """Training tasks in the order the task-count curve adds them (the first N train a run)."""
  tasks = training_tasks()
  lexicon.rng("order", seed).shuffle(tasks)
  return tasks


def task_ids(seed: int = 0) -> dict[str, str]:
  """An opaque identifier per task (FLAN's dataset-name ablation): 'q' and three digits."""
  tasks = all_tasks()
  numbers = lexicon.rng("ids", seed).sample(range(100, 1000), len(tasks))
  return {t.name: f"q{n}" for t, n in zip(tasks, numbers)}


def split_of(words: tuple[str, ...]) -> str:
  bucket = int.from_bytes(hashlib.blake2b(" ".join(words).encode(), digest_size=8).digest(),
                          "little") % 100
  if bucket < _TEST_BUCKETS:
    return "test"
  return "validation" if bucket < _TEST_BUCKETS + _VALIDATION_BUCKETS else "train"


def answer(task: Task, words, query: str = "") -> tuple[str, list[tuple[str, ...]]]:
  """(answer, intermediate results [selected, transformed]) of `task` on `words`."""
  selected = prim.SELECTORS[task.selector].apply(tuple(words))
  changed = prim.TRANSFORMS[task.transform].apply(selected)
  if task.readout == "member":
    return ("yes" if query in changed else "no"), [selected, changed]
  return prim.READOUTS[task.readout].apply(changed), [selected, changed]


def _query(task: Task, words, want_yes: bool, r) -> str:
  """A query word whose answer is `want_yes`: selected, or else a listed-but-unselected / absent word."""
  selected = set(prim.SELECTORS[task.selector].apply(tuple(words)))
  if want_yes:
    return r.choice(sorted(selected))
  listed = sorted(set(words) - selected)
  absent = sorted(set(lexicon.WORDS) - set(words))
  return r.choice(listed if listed and r.random() < 0.5 else absent)


def num_records(task: Task, split: str) -> int:
  cluster = cluster_of(task)
  if cluster is None:
    return SIZES[split]
  if split != "test":
    return 0
  n = math.ceil(HELD_OUT_EXAMPLES / len(held_out_tasks(cluster)))
  return n + n % 2  # even: yes / no balanced exactly


def records(task: Task, split: str, seed: int = 0, unseen: bool = False,
            ids: dict[str, str] | None = None, n: int | None = None) -> list[dict]:
  """The task's records of one split, fixed by (task, split, seed).

  Each record: words (the input list), instruction (training wordings, or with
  `unseen` one primitive in its unseen wording), task_id, answer, cot (the
  intermediate results, then the answer), query, options (yes / no for
  classification tasks, else empty), task and cluster names. `n` overrides
  the split's size (more training lists per task); the first records are the same.
  """
  ids = ids or task_ids(seed)
  n = num_records(task, split) if n is None else n
  r = lexicon.rng("records", task.name, split, seed, unseen)
  out, seen = [], set()
  while len(out) < n:
    words = lexicon.word_list(r)
    if split_of(words) != split or words in seen:
      continue
    seen.add(words)
    query = _query(task, words, len(out) % 2 == 0, r) if task.classification else ""
    ans, steps = answer(task, words, query)
    wordings = {k: r.choice(prim.get(k, v).wordings) for k, v in task.primitives().items()}
    if unseen:
      k = r.choice(prim.KINDS)
      wordings[k] = prim.get(k, task.primitives()[k]).unseen
    text = prim.instruction(r.choice(prim.FRAMES), wordings[prim.SELECTOR],
                            wordings[prim.TRANSFORM], wordings[prim.READOUT], query)
    out.append({"words": " ".join(words), "instruction": text, "task_id": ids[task.name],
                "answer": ans, "query": query,
                "cot": " ; ".join(" ".join(s) for s in steps) + f". So the answer is {ans}.",
                "options": list(prim.YES_NO) if task.classification else [],
                "task": task.name, "cluster": cluster_of(task) or "held_in"})
  return out
