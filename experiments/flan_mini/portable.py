"""Trains and evaluates the flan_mini runs from an export, on a machine without seqio or TensorFlow.

    python -m experiments.flan_mini.export --config=configs/experiments/flan_mini.py:large \\
        --out=runs/flan_mini_portable/large                    # here: seqio builds the data
    python -m experiments.flan_mini.portable --config=configs/experiments/flan_mini.py:large \\
        --data=runs/flan_mini_portable/large --workdir=runs/flan_mini_large \\
        [--runs=instructions,no_template] [--merge=a/results.json,b/results.json]

Needs JAX, Flax, optax, orbax, numpy, scikit-learn, ml_collections and
rouge-score. Each run is trained by t5tune's trainer (`config.data.iterator_factory`
= `train_iterator` below) and evaluated with `evaluate.py`'s model calls and
`metrics.py`'s scoring, through `run.py`'s driver code (`PortableBackend`),
so results.json, results.md and the table have the driver's format.

The training batches: the exported examples of each task of the run's
mixture (what its seqio task yields: tokenized, trimmed, with EOS, in the
source's order for the seed) go through what seqio and t5tune's pipeline do
with them, in numpy: each task repeats forever through a shuffle buffer of
the task's size (`ds.repeat().shuffle(buffer)`), the mixture draws each next
example's task with probability proportional to its seqio rate
(`sample_from_datasets`), and windows of max(lengths) consecutive examples
are packed in order, next-fit, as seqio's `trim_and_pack_dataset`, then
converted as `EncDecFeatureConverter(pack=True)` does. The distribution of
batches is seqio's; the random draws are numpy's, not tf.data's, so the
order of examples differs from a seqio run with the same seed.

`--merge` takes runs from earlier results.json files (e.g. the first half of
the runs, done by another command) so one table reports all of them.
"""
from __future__ import annotations

import collections
import copy
import json
import os
import time

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags
import numpy as np

from t5tune import atomic


DATA_ENV = "FLAN_MINI_PORTABLE_DATA"
FACTORY = "experiments.flan_mini.portable:train_iterator"
STATE_FILE = "portable_iterator.json"
FORMAT = 2  # export.FORMAT (export.py imports seqio: not imported here)
_BYTE_SPECIALS = 3  # seqio.ByteVocabulary: pad 0, eos 1, unk 2, then the 256 bytes


def byte_decode(ids) -> str:
  """seqio.ByteVocabulary's decode: bytes of the byte ids, special and extra ids dropped."""
  return bytes(int(i) - _BYTE_SPECIALS for i in ids
               if _BYTE_SPECIALS <= int(i) < _BYTE_SPECIALS + 256).decode("utf-8", errors="ignore")


class ExportedIds:
  """A vocabulary over exported token ids, for `evaluate.classify`/`generate` (t5tune.infer.api).

  An exported row already ends in the vocabulary's EOS: `encode` drops it
  (t5tune.infer appends `eos_id` again); `decode` is the byte vocabulary's.
  """

  def __init__(self, eos_id: int):
    self.eos_id = int(eos_id)

  def encode(self, ids) -> list[int]:
    if isinstance(ids, str):  # text (the content-free input): the byte vocabulary's ids
      return [b + _BYTE_SPECIALS for b in ids.encode("utf-8")]
    ids = [int(i) for i in ids]
    return ids[:-1] if ids and ids[-1] == self.eos_id else ids

  def decode(self, ids) -> str:
    return byte_decode(ids)


class Export:
  """An export directory: its manifest and its token arrays."""

  def __init__(self, directory: str):
    self.directory = os.path.abspath(directory)
    path = os.path.join(self.directory, "manifest.json")
    if not os.path.exists(path):
      raise FileNotFoundError(
          f"{path}: not an export; write one with python -m experiments.flan_mini.export"
          " --config=... --out=DIR")
    with open(path) as fh:
      self.manifest = json.load(fh)
    if self.manifest.get("format") != FORMAT:
      raise ValueError(f"{path}: export format {self.manifest.get('format')}, this code reads"
                       f" {FORMAT}; export again with python -m experiments.flan_mini.export")
    self.vocabulary = ExportedIds(self.manifest["eos_id"])
    self._train = self._eval = None

  def _ragged(self, arrays, key: str) -> list[np.ndarray]:
    flat, lengths = arrays[key], arrays[key + "_len"]
    return np.split(flat.astype(np.int32), np.cumsum(lengths)[:-1])

  def train_examples(self, task: str) -> tuple[list[np.ndarray], list[np.ndarray]]:
    if self._train is None:
      self._train = np.load(os.path.join(self.directory, "train.npz"))
    return self._ragged(self._train, f"{task}.inputs"), self._ragged(self._train, f"{task}.targets")

  def eval_set(self, key: str) -> dict:
    """{"inputs": id lists, "options": per example id lists or None, + the manifest entry}."""
    if self._eval is None:
      self._eval = np.load(os.path.join(self.directory, "eval.npz"))
    entry = dict(self.manifest["evals"][key])
    entry["inputs"] = [r.tolist() for r in self._ragged(self._eval, f"{key}.inputs")]
    entry["option_ids"] = None
    if entry["method"] == "rank_classification":
      flat = [r.tolist() for r in self._ragged(self._eval, f"{key}.options")]
      counts = np.cumsum(self._eval[f"{key}.options_count"])
      entry["option_ids"] = [flat[a:b] for a, b in zip(np.r_[0, counts[:-1]], counts)]
    return entry

  def run_of_mixture(self, mixture: str) -> dict:
    for run in self.manifest["runs"].values():
      if run["mixture"] == mixture:
        return run
    raise ValueError(f"mixture {mixture!r} is not in the export {self.directory}"
                     f" (runs: {', '.join(self.manifest['runs'])}); export this setting")


# -- training batches -------------------------------------------------------------

class MixtureStream:
  """Packed rows of a mixture as seqio + EncDecFeatureConverter(pack=True) make them (numpy RNG)."""

  def __init__(self, inputs: list[list[np.ndarray]], targets: list[list[np.ndarray]],
               rates: list[float], buffer_sizes: list[int], lengths: dict, seed: int):
    self.inputs, self.targets = inputs, targets
    self.rates = np.asarray(rates, np.float64) / np.sum(rates)
    self.buffer_sizes = buffer_sizes
    self.lengths = (int(lengths["inputs"]), int(lengths["targets"]))
    self.window = max(self.lengths)  # seqio packs windows of max(lengths) examples
    self.rng = np.random.Generator(np.random.PCG64(seed))
    self.positions = [0] * len(inputs)  # examples read so far per task (repeated)
    self.buffers: list[list[int]] = [[] for _ in inputs]
    self.pending: collections.deque = collections.deque()  # packed rows not yet served

  def _next_example(self, task: int) -> int:
    """The task's next example: `ds.repeat().shuffle(buffer)` over its examples."""
    buf, n = self.buffers[task], len(self.inputs[task])
    while len(buf) < self.buffer_sizes[task]:
      buf.append(self.positions[task] % n)
      self.positions[task] += 1
    i = int(self.rng.integers(len(buf)))
    out = buf[i]
    buf[i] = self.positions[task] % n  # the slot refills with the next element
    self.positions[task] += 1
    return out

  def _pack_window(self) -> None:
    choices = self.rng.choice(len(self.rates), size=self.window, p=self.rates)
    row, used = [], [0, 0]
    for task in choices.tolist():
      ex = self._next_example(task)
      size = (len(self.inputs[task][ex]), len(self.targets[task][ex]))
      if used[0] + size[0] > self.lengths[0] or used[1] + size[1] > self.lengths[1]:
        self.pending.append(row)
        row, used = [], [0, 0]
      row.append((task, ex))
      used = [used[0] + size[0], used[1] + size[1]]
    self.pending.append(row)

  def rows(self, n: int) -> list[list[tuple[int, int]]]:
    while len(self.pending) < n:
      self._pack_window()
    return [self.pending.popleft() for _ in range(n)]

  def features(self, rows) -> dict[str, np.ndarray]:
    """EncDecFeatureConverter(pack=True)'s model features of packed rows."""
    (li, lt), b = self.lengths, len(rows)
    f = {k: np.zeros((b, li), np.int32) for k in
         ("encoder_input_tokens", "encoder_segment_ids", "encoder_positions")}
    f.update({k: np.zeros((b, lt), np.int32) for k in
              ("decoder_target_tokens", "decoder_input_tokens", "decoder_segment_ids",
               "decoder_positions")})
    for r, row in enumerate(rows):
      pi = pt = 0
      for seg, (task, ex) in enumerate(row, start=1):
        x, y = self.inputs[task][ex][:li], self.targets[task][ex][:lt]
        f["encoder_input_tokens"][r, pi:pi + len(x)] = x
        f["encoder_segment_ids"][r, pi:pi + len(x)] = seg
        f["encoder_positions"][r, pi:pi + len(x)] = np.arange(len(x))
        f["decoder_target_tokens"][r, pt:pt + len(y)] = y
        f["decoder_segment_ids"][r, pt:pt + len(y)] = seg
        f["decoder_positions"][r, pt:pt + len(y)] = np.arange(len(y))
        # Shifted right within the segment, 0 (BOS) first.
        f["decoder_input_tokens"][r, pt + 1:pt + len(y)] = y[:-1]
        pi, pt = pi + len(x), pt + len(y)
    f["decoder_loss_weights"] = (f["decoder_target_tokens"] != 0).astype(np.int32)
    return f

  def state(self) -> dict:
    return {"rng": self.rng.bit_generator.state, "positions": list(self.positions),
            "buffers": [list(b) for b in self.buffers],
            "pending": [[list(p) for p in row] for row in self.pending]}

  def set_state(self, state: dict) -> None:
    self.rng.bit_generator.state = state["rng"]
    self.positions = list(state["positions"])
    self.buffers = [list(b) for b in state["buffers"]]
    self.pending = collections.deque([[tuple(p) for p in row] for row in state["pending"]])


class PortableIterator:
  """Global-array batches of a run's mixture from an export; `save`/`restore` its exact position."""

  def __init__(self, export: Export, mixture: str, *, batch_size: int, seed: int, mesh,
               lengths: dict):
    import jax  # pylint: disable=g-import-not-at-top
    if jax.process_count() != 1:
      raise ValueError("the portable iterator feeds one process; run on one host")
    m = export.manifest
    if dict(lengths) != m["lengths"]:
      raise ValueError(f"config.data inputs/targets lengths {dict(lengths)} differ from the"
                       f" export's {m['lengths']} ({export.directory}); export again")
    run = export.run_of_mixture(mixture)
    names = [n for n, _ in run["tasks"]]
    data = [export.train_examples(n) for n in names]
    self.stream = MixtureStream(
        [d[0] for d in data], [d[1] for d in data], [r for _, r in run["tasks"]],
        [m["tasks"][n]["shuffle_buffer_size"] for n in names], m["lengths"], seed)
    self.mesh, self.batch_size = mesh, batch_size
    self.spec = {"export": export.directory, "mixture": mixture, "batch_size": batch_size,
                 "seed": seed, "lengths": m["lengths"]}
    self.step = 0

  def __iter__(self):
    return self

  def __next__(self):
    import jax  # pylint: disable=g-import-not-at-top
    from t5tune import sharding  # pylint: disable=g-import-not-at-top
    local = self.stream.features(self.stream.rows(self.batch_size))
    self.step += 1
    return {k: jax.make_array_from_process_local_data(
        sharding.batch_sharding(self.mesh, v.ndim), v, v.shape) for k, v in local.items()}

  def save(self, directory) -> None:
    directory = os.fspath(directory)
    os.makedirs(directory, exist_ok=True)
    atomic.write_json(os.path.join(directory, STATE_FILE),
                      {"spec": self.spec, "step": self.step, "stream": self.stream.state()})

  def restore(self, directory) -> None:
    path = os.path.join(os.fspath(directory), STATE_FILE)
    with open(path) as fh:
      saved = json.load(fh)
    changed = [f"{k}: saved {saved['spec'].get(k)!r}, now {v!r}"
               for k, v in self.spec.items() if k != "export" and saved["spec"].get(k) != v]
    if changed:
      raise ValueError(f"cannot resume the data iterator from {path}: {'; '.join(changed)}")
    self.stream.set_state(saved["stream"])
    self.step = int(saved["step"])


def train_iterator(config, mesh, split: str) -> PortableIterator:
  """`config.data.iterator_factory`: a run's batches from the export in $FLAN_MINI_PORTABLE_DATA."""
  if split != "train":
    raise ValueError(f"the flan_mini export has training data only (asked for {split!r});"
                     " set config.eval.every=0")
  directory = os.environ.get(DATA_ENV)
  if not directory:
    raise ValueError(f"set ${DATA_ENV} to an export directory"
                     " (python -m experiments.flan_mini.export --out=DIR)")
  if not config.data.pack:
    raise ValueError("config.data.pack=False: the portable iterator packs, as the export's runs do")
  return PortableIterator(
      Export(directory), config.data.mixture, batch_size=config.data.batch_size,
      seed=config.seed, mesh=mesh,
      lengths={"inputs": config.data.inputs_length, "targets": config.data.targets_length})


# -- the driver's backend ------------------------------------------------------------

class PortableBackend:
  """`run.py`'s backend over an export: same training config, same evaluation code."""

  def __init__(self, f, export: Export):
    self.f, self.export = f, export
    os.environ[DATA_ENV] = export.directory

  def train_config(self, config, name: str, clusters: list[str]):
    run = self.export.manifest["runs"].get(name)
    if run is None or run["clusters"] != clusters:
      raise ValueError(f"run {name!r} (clusters {clusters}) is not in the export"
                       f" {self.export.directory}; export this config")
    t = copy.deepcopy(config.train)
    t.data.mixture = run["mixture"]
    t.data.iterator_factory = FACTORY
    t.data.modules = ()  # the seqio tasks are not registered here
    t.eval.every = 0  # the export has no validation data: the final model is evaluated
    return t

  def score(self, model, task: str, variant: str) -> dict:
    from experiments.flan_mini import evaluate  # pylint: disable=g-import-not-at-top
    from experiments.flan_mini import metrics  # pylint: disable=g-import-not-at-top
    f = self.f
    s = self.export.eval_set(task + variant)
    vocab = self.export.vocabulary
    inputs = [vocab.decode(vocab.encode(r)) for r in s["inputs"][:3]]
    fns = metrics.metric_fns(s["cluster"])
    if s["method"] == "rank_classification":
      return evaluate.rank_task(model, vocab, s["inputs"], s["targets"], s["option_ids"],
                                f.eval_inputs_length, metrics.postprocess, fns,
                                s["templates"], option_labels=s["options"])
    predictions = evaluate.generate(model, vocab, s["inputs"], f.eval_inputs_length,
                                    f.eval_decode_length)
    return evaluate.finish(inputs, s["targets"], predictions, s["method"],
                           metrics.postprocess, fns, templates=s["templates"])


def check_config(config, manifest: dict) -> None:
  """The config must ask for what was exported (data, evaluation sets); training keys may differ."""
  exported = manifest["config"]
  f, fe = config.flan_mini.to_dict(), exported["flan_mini"]
  keys = ("seed", "held_out", "cluster_order", "vocabulary", "eval_examples", "eval_held_in",
          "eval_few_shot")
  norm = lambda v: list(v) if isinstance(v, (list, tuple)) else v
  bad = [f"config.flan_mini.{k}={f[k]!r} (exported: {fe[k]!r})" for k in keys
         if norm(f[k]) != norm(fe[k])]
  missing = [r for r in config.flan_mini.runs if r not in manifest["runs"]]
  if missing:
    bad.append(f"config.flan_mini.runs has {missing}, not exported")
  if bad:
    raise ValueError("the config differs from the export's: " + "; ".join(bad)
                     + ". Export again with this config, or use the exported one")


def main(argv):
  del argv
  import jax  # pylint: disable=g-import-not-at-top
  from experiments.flan_mini import run  # pylint: disable=g-import-not-at-top
  if not _DATA.value:
    raise app.UsageError("--data is required (an experiments.flan_mini.export directory)")
  config = _CONFIG.value
  export = Export(_DATA.value)
  check_config(config, export.manifest)
  workdir = os.path.abspath(_WORKDIR.value)
  results_dir = os.path.abspath(_RESULTS.value or workdir)
  os.makedirs(workdir, exist_ok=True)
  os.makedirs(results_dir, exist_ok=True)
  if not os.environ.get("JAX_COMPILATION_CACHE_DIR"):
    # Every run compiles the same programs: later runs read them from disk.
    jax.config.update("jax_compilation_cache_dir", os.path.join(workdir, "jax_cache"))
  f = config.flan_mini
  backend = PortableBackend(f, export)
  training = run.training_clusters(f)
  run.check_runs(f, training)
  done = {}
  for path in _MERGE.value:
    with open(path) as fh:
      done.update(json.load(fh)["runs"])
  for name in f.runs:  # runs an earlier command finished in this workdir
    path = os.path.join(workdir, name, "eval.json")
    if name not in done and name not in (_RUNS.value or []) and os.path.exists(path):
      with open(path) as fh:
        done[name] = json.load(fh)
  todo = _RUNS.value or [r for r in f.runs if r not in done]
  unknown = [r for r in todo if r not in f.runs]
  if unknown:
    raise app.UsageError(f"--runs {unknown} are not runs of the config ({', '.join(f.runs)})")
  start = time.time()
  for name in todo:
    done[name] = run.train_and_evaluate(config, name, workdir, training, backend)
    results = {r: done[r] for r in f.runs if r in done}
    run.report(config, _groups(f, results), results_dir, wall_seconds=time.time() - start,
               data=export.directory, exported_with=export.manifest["exported_with"],
               device_kind=jax.devices()[0].device_kind)
  if not todo:
    run.report(config, _groups(f, {r: done[r] for r in f.runs if r in done}), results_dir,
               data=export.directory)


def _groups(f, results: dict) -> dict:
  """The report's one group: the config's held-out clusters, held out together here."""
  from experiments.flan_mini import run  # pylint: disable=g-import-not-at-top
  return {"+".join(f.held_out): run.group(list(f.held_out), results)}


if __name__ == "__main__":
  # Flags only when run as a program: the modules import each other.
  _CONFIG = config_flags.DEFINE_config_file(
      "config", "configs/experiments/flan_mini.py", "The flan_mini config (as exported).")
  _DATA = flags.DEFINE_string("data", None, "The export (experiments.flan_mini.export --out).")
  _WORKDIR = flags.DEFINE_string("workdir", "runs/flan_mini_portable_runs", "Where runs go.")
  _RUNS = flags.DEFINE_list("runs", None, "Runs to train now (default: every run of the config).")
  _MERGE = flags.DEFINE_list("merge", [], "results.json files whose runs count as done.")
  _RESULTS = flags.DEFINE_string("results_dir", None,
                                 "Where results.json/.md/.png go (default: workdir).")
  logging.set_verbosity(logging.WARNING)
  app.run(main)
