"""The compositional collection as seqio tasks (through `t5tune.data.register_task`): training pools and evaluation sets.

    name = tasks.training_task("instructions", n=24, seed=0, vocabulary=path)
    name = tasks.eval_task("held_out", "animals+plural", seed=0, vocabulary=path)

A training pool is one seqio task holding the records of the first N
training tasks (`collection.task_order`), rendered in one style:

  instructions   "{instruction}\\nWords: {words}" -> answer      (P+IT)
  no_template    the word list alone (t5tune's no-template rendering)  (P+NT)
  task_id        "Task {task_id}.\\nWords: {words}" -> answer    (P+TaskID, FLAN's dataset-name ablation)
  cot            as instructions, the target writes the intermediate results first

Every style renders the same records, so runs differ only in what the input
says. Evaluation sets are rendered with instructions (as FLAN evaluates its
baselines), split into the generated part (exact match after greedy
decoding) and the yes / no part (rank classification, `t5tune.infer.judging`):

  held_out/CLUSTER          test records of a held-out cluster
  held_in, held_in_yesno    test records of the training tasks
  held_in_val, held_in_val_yesno   their validation records (what settings are chosen on)
  unseen, unseen_yesno      the same tasks, one primitive in its unseen wording
  held_in_id                held-in test records with the task id instead (the TaskID run's own format)
"""
from __future__ import annotations

import functools
import re

from t5tune import data

from experiments.compositional import collection
from experiments.compositional import corpus
from experiments.flan_mini import metrics as flan_metrics

T = data.Template
STYLES = {
    "instructions": T("instruction", "{instruction}\nWords: {words}", "{answer}", data.ZERO_SHOT),
    "no_template": T("answer", "{words}", "{answer}", data.ZERO_SHOT),
    "task_id": T("task_id", "Task {task_id}.\nWords: {words}", "{answer}", data.ZERO_SHOT),
    "cot": T("cot", "{instruction}\nWords: {words}\nShow the steps.", "{cot}", data.COT),
}
# A style's record fields: what its template names (the no-template input
# shows every field but the answer: the word list alone). Yes / no evaluation
# sets add "options" (never rendered; rank classification scores them).
FIELDS = {"instructions": ("words", "instruction", "answer"),
          "no_template": ("words", "answer"),
          "task_id": ("words", "task_id", "answer"),
          "cot": ("words", "instruction", "cot")}
# Exact match after taking the answer out of a chain of thought (flan_mini's rule).
postprocess = flan_metrics.postprocess
METRIC_FNS = [flan_metrics.exact_match]


@functools.lru_cache(maxsize=None)
def prefix(seed: int, vocabulary: str) -> str:
  return f"compositional_s{seed}_v{tag(vocabulary)}"


def tag(vocabulary: str) -> str:
  from experiments.flan_mini import corpus as flan_corpus  # pylint: disable=g-import-not-at-top
  return flan_corpus.vocabulary_tag(vocabulary)


def _safe(text: str) -> str:
  return re.sub(r"[^a-z0-9_]", "_", text.lower())


def _register(name: str, records: dict, style: str, vocabulary: str, seed: int,
              metadata: dict, options: bool = False) -> str:
  import seqio  # pylint: disable=g-import-not-at-top
  if name in seqio.TaskRegistry.names():
    return name
  data.register_task(
      name, source={split: list(r) for split, r in records.items()},
      templates=[STYLES[style]], fields=list(FIELDS[style]) + (["options"] if options else []), no_template=(style == "no_template"),
      postprocess_fn=postprocess, metric_fns=METRIC_FNS, seed=seed, dedup=None,
      vocabulary=corpus.get_vocabulary(vocabulary), metadata=metadata)
  return name


def training_task(style: str, n: int | None, seed: int, vocabulary: str,
                  train_records: int = 0) -> str:
  """The pool of the first `n` training tasks (None: all) in `style`; registers it once.

  `train_records`: training records per task (0: the collection's size).
  """
  if style not in STYLES:
    raise ValueError(f"style {style!r} is not one of {sorted(STYLES)}")
  order = collection.task_order(seed)
  n = len(order) if n is None else n
  if not 1 <= n <= len(order):
    raise ValueError(f"n={n}: there are {len(order)} training tasks")
  chosen = order[:n]
  size = {"train": train_records or None, "validation": None}
  records = {split: [r for t in chosen for r in collection.records(t, split, seed, n=size[split])]
             for split in ("train", "validation")}
  tag = f"_r{train_records}" if train_records else ""
  return _register(f"{prefix(seed, vocabulary)}_{style}_n{n}{tag}", records, style, vocabulary, seed,
                   {"style": style, "tasks": [t.name for t in chosen]})


def eval_sets(seed: int = 0) -> dict[str, list[dict]]:
  """{set name: records}: the held-out clusters, held-in (test and validation) and unseen wordings, split by method."""
  out = {}
  for cluster in collection.HELD_OUT:
    out[f"held_out/{cluster}"] = [r for t in collection.held_out_tasks(cluster)
                                  for r in collection.records(t, "test", seed)]
  for name, split, unseen in (("held_in", "test", False), ("unseen", "test", True),
                              ("held_in_val", "validation", False)):
    recs = [r for t in collection.training_tasks()
            for r in collection.records(t, split, seed, unseen=unseen)]
    out[name] = [r for r in recs if not r["options"]]
    out[f"{name}_yesno"] = [r for r in recs if r["options"]]
  return out


def eval_task(set_name: str, seed: int, vocabulary: str, style: str = "instructions") -> str:
  """An evaluation set as a seqio task (test split), rendered in `style`."""
  records = eval_sets(seed)[set_name]
  name = f"{prefix(seed, vocabulary)}_eval_{_safe(set_name)}_{style}"
  return _register(name, {"test": records}, style, vocabulary, seed, {"set": set_name},
                   options=bool(records and records[0]["options"]))
