"""Exports a flan_mini setting's training and evaluation data to numpy files, for `portable.py`.

    python -m experiments.flan_mini.export --config=configs/experiments/flan_mini.py:large \\
        --out=runs/flan_mini_portable/large

Runs where seqio and TensorFlow are installed; `portable.py` then trains and
evaluates every run of the setting on a machine with only JAX (no seqio, no
TensorFlow). Written under OUT:

  manifest.json  the config, lengths, per run its seqio mixture name, clusters,
                 style and its tasks with their seqio mixing rates
                 (`Mixture.get_rate`), per task its example count and shuffle
                 buffer, and the evaluation sets (targets, option strings)
  train.npz      per training task: `TASK.inputs`/`TASK.targets` token ids
                 (uint16, concatenated) and `TASK.inputs_len`/`TASK.targets_len`;
                 exactly what the seqio task yields for the run's pipeline
                 (`Task.get_dataset` with the lengths, the split's source
                 permutation for the seed, tokenized, trimmed, EOS), in that order
  eval.npz       per evaluation set `KEY.inputs`(_len) and `KEY.options`
                 (_len per option, _count per example): the token ids
                 with the vocabulary's EOS (`eos_id` in the manifest) that
                 `evaluate.task` feeds the model (KEY = TASK + variant)

What `portable.py` does with train.npz is what seqio and t5tune's pipeline do
with these examples (repeat, per-task shuffle buffer, sampling by the rates,
`EncDecFeatureConverter` packing); `tests/experiments/test_portable.py`
checks its packing against seqio's.
"""
from __future__ import annotations

import os
import time

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags
import numpy as np

from t5tune import atomic


FORMAT = 2  # 2: the vocabulary's EOS id and each evaluation example's template
MANIFEST = "manifest.json"


def _ragged(rows: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
  flat = np.fromiter((t for r in rows for t in r), np.int64)
  if flat.size and (flat.min() < 0 or flat.max() >= 2 ** 16):
    raise ValueError("token ids do not fit uint16")
  return flat.astype(np.uint16), np.array([len(r) for r in rows], np.int32)


def _task_tokens(task_name: str, lengths: dict, seed: int) -> tuple[list, list]:
  """(inputs, targets) id lists of a training task, as its seqio dataset yields them."""
  import seqio  # pylint: disable=g-import-not-at-top
  task = seqio.get_mixture_or_task(task_name)
  # The pipeline's call, one epoch, with a shuffle buffer of one: the source's
  # permutation for the seed, before the buffer (`portable.py` applies that).
  ds = task.get_dataset(sequence_length=dict(lengths), split="train", shuffle=True,
                        shuffle_buffer_size=1, seed=seed, num_epochs=1,
                        shard_info=seqio.ShardInfo(0, 1))
  inputs, targets = [], []
  for ex in ds.as_numpy_iterator():
    inputs.append(ex["inputs"].tolist())
    targets.append(ex["targets"].tolist())
  return inputs, targets


def export(config, out: str) -> dict:
  """Writes OUT/manifest.json, train.npz and eval.npz for `config`; returns the manifest."""
  import seqio  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from experiments.flan_mini import collection  # pylint: disable=g-import-not-at-top
  from experiments.flan_mini import evaluate  # pylint: disable=g-import-not-at-top
  from experiments.flan_mini import run  # pylint: disable=g-import-not-at-top
  from experiments.flan_mini import tasks  # pylint: disable=g-import-not-at-top
  from t5tune.data import tasks as tasks_lib  # pylint: disable=g-import-not-at-top
  f, t = config.flan_mini, config.train
  if f.vocabulary != "byte":
    raise ValueError(f"config.flan_mini.vocabulary={f.vocabulary!r}: the portable path"
                     " decodes with the byte vocabulary only")
  if t.init_from or f.pretrain.steps:
    raise ValueError("config.train.init_from or flan_mini.pretrain.steps is set: the portable"
                     " path trains from scratch (set --config.flan_mini.pretrain.steps=0)")
  start = time.time()
  os.makedirs(out, exist_ok=True)
  backend = run.SeqioBackend(f)
  from t5tune.data import vocab as vocab_lib  # pylint: disable=g-import-not-at-top
  backend_vocab = vocab_lib.get_vocabulary(f.vocabulary)
  training = run.training_clusters(f)
  run.check_runs(f, training)
  lengths = {"inputs": t.data.inputs_length, "targets": t.data.targets_length}
  runs, needed = {}, []
  for name in f.runs:
    clusters = run.run_clusters(name, training)
    mixture_name = backend.train_config(config, name, clusters).data.mixture
    mixture = seqio.get_mixture_or_task(mixture_name)
    rates = [[task.name, float(mixture.get_rate(task))] for task in mixture.tasks]
    runs[name] = {"mixture": mixture_name, "clusters": clusters, "style": run.run_style(name),
                  "tasks": rates}
    needed += [n for n, _ in rates if n not in needed]
  arrays, task_info = {}, {}
  for name in needed:
    inputs, targets = _task_tokens(name, lengths, t.seed)
    arrays[f"{name}.inputs"], arrays[f"{name}.inputs_len"] = _ragged(inputs)
    arrays[f"{name}.targets"], arrays[f"{name}.targets_len"] = _ragged(targets)
    task_info[name] = {"examples": len(inputs),
                       "shuffle_buffer_size": seqio.get_mixture_or_task(name).shuffle_buffer_size}
    logging.info("exported %s: %d examples", name, len(inputs))
  np.savez_compressed(os.path.join(out, "train.npz"), **arrays)

  evals, eval_arrays = {}, {}
  for _, clusters, variant in run.eval_plan(f, list(f.held_out), training):
    for task in collection.cluster_tasks(clusters):
      key = task + variant
      if key in evals:
        continue
      info = tasks_lib.get_info(tasks.task_name(task, variant, f.seed, f.vocabulary))
      vocab = info.source.vocabulary
      examples = info.source.prepared("test").examples[:f.eval_examples]
      eos = vocab.eos_id
      enc = [list(vocab.encode(ex["inputs"])) + [eos] for ex in examples]
      eval_arrays[f"{key}.inputs"], eval_arrays[f"{key}.inputs_len"] = _ragged(enc)
      method = evaluate.task_method(examples)  # the rule `t5tune evaluate` applies
      ranked = method == "rank_classification"
      if ranked:
        opts = [[list(vocab.encode(o)) + [eos] for o in ex["options"]] for ex in examples]
        eval_arrays[f"{key}.options"], eval_arrays[f"{key}.options_len"] = _ragged(
            [o for row in opts for o in row])
        eval_arrays[f"{key}.options_count"] = np.array([len(r) for r in opts], np.int32)
      evals[key] = {"task": task, "variant": variant, "cluster": collection.TASKS[task].cluster,
                    "method": method,
                    "targets": [ex["targets"] for ex in examples],
                    "templates": [ex["template_name"] for ex in examples],
                    "options": [ex["options"] for ex in examples] if ranked else None}
  np.savez_compressed(os.path.join(out, "eval.npz"), **eval_arrays)

  manifest = {
      "format": FORMAT, "setting": config.setting, "lengths": lengths, "seed": t.seed,
      "eos_id": int(backend_vocab.eos_id),
      "batch_size": t.data.batch_size, "pack": t.data.pack, "held_out": list(f.held_out),
      "training_clusters": training, "runs": runs, "tasks": task_info, "evals": evals,
      "exported_with": {"seqio": getattr(seqio, "__version__", "?"), "tensorflow": tf.__version__},
      "export_seconds": time.time() - start, "config": config.to_dict()}
  atomic.write_json(os.path.join(out, MANIFEST), manifest, default=list)
  return manifest


def main(argv):
  del argv
  if not _OUT.value:
    raise app.UsageError("--out is required (e.g. runs/flan_mini_portable/large)")
  out = os.path.abspath(_OUT.value)
  manifest = export(_CONFIG.value, out)
  sizes = {n: os.path.getsize(os.path.join(out, n)) for n in sorted(os.listdir(out))}
  print(f"exported {manifest['setting']}: {len(manifest['runs'])} runs,"
        f" {len(manifest['tasks'])} training tasks, {len(manifest['evals'])} evaluation sets"
        f" in {manifest['export_seconds']:.0f} s")
  for n, size in sizes.items():
    print(f"  {os.path.join(out, n)}  {size / 2 ** 20:.2f} MiB")


if __name__ == "__main__":
  # Flags only when run as a program: the modules import each other.
  _CONFIG = config_flags.DEFINE_config_file(
      "config", "configs/experiments/flan_mini.py", "The flan_mini experiment config.")
  _OUT = flags.DEFINE_string("out", None, "Directory to write the export to.")
  logging.set_verbosity(logging.WARNING)
  app.run(main)
