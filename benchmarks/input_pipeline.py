"""Input-pipeline throughput: a 10-task templated mixture to global jax.Array batches.

    JAX_NUM_CPU_DEVICES=8 python benchmarks/input_pipeline.py --batches=50

Measures, in one run, t5tune's `pipeline.make_iterator` (seqio mixture ->
feature converter -> this host's shard -> global arrays on an 8-device mesh)
against the peer: the same seqio mixture, feature converter and tf.data batch
read as numpy, without jax, each side in its own process. Packing on and off. Also the cost of resuming:
the size and time of `save` (tf.data iterator checkpoint) and `restore`, next
to the alternative of replaying with `.skip(n)`. Prints a table.
"""
import os

os.environ.setdefault("JAX_NUM_CPU_DEVICES", "8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import random  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

from absl import app  # noqa: E402
from absl import flags  # noqa: E402
import jax  # noqa: E402
import numpy as np  # noqa: E402
import seqio  # noqa: E402
import tensorflow as tf  # noqa: E402

from t5tune import data  # noqa: E402
from t5tune import sharding  # noqa: E402
from t5tune.data import pipeline  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402  (benchmarks/harness.py, beside this script)

_BATCHES = flags.DEFINE_integer("batches", 50, "batches timed per row (after one warm-up batch)")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 32, "global batch size")
_EXAMPLES = flags.DEFINE_integer("examples_per_task", 2000, "train records per task")
_SIDE = flags.DEFINE_enum("side", None, ["t5tune", "peer"], "run one side (in a child process)")
LENGTHS = {"inputs": 256, "targets": 64}
WORDS = ("alpha beta gamma delta river stone cloud music garden window paper light "
         "quiet rapid green silver orange winter summer market story number").split()


def _records(task, n):
  rng = random.Random(task)
  for i in range(n):
    text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 60)))
    yield {"text": f"{i}: {text}", "options": ["yes", "no", "maybe"],
           "label": rng.choice(["yes", "no", "maybe"]),
           "summary": " ".join(text.split()[:rng.randint(2, 12)])}


def register(n_tasks=10):
  names = []
  for t in range(n_tasks):
    name = f"bench_task_{t}"
    n = _EXAMPLES.value // (1 + t % 3)  # unequal sizes, so the cap matters
    templates = [
        data.Template("opt", f"Task {t}. {{text}}\nWhich label fits?\n{{options_}}", "{label}",
                      data.ZERO_SHOT_OPTIONS),
        data.Template("noopt", f"{{text}}\n\nTask {t}: yes, no or maybe?", "{label}"),
        data.Template("sum", "Summarize briefly: {text}", "{summary}"),
        data.Template("inv", "Write a text whose summary is: {summary}", "{text}", data.INVERTED),
    ]
    data.register_task(name, source=data.sources.function({"train": lambda t=t, n=n: _records(t, n)}),
                       fields=["text", "options", "label", "summary"], templates=templates)
    names.append(name)
  data.register_mixture("bench_mix", names, rate=data.examples_proportional(cap=1500))
  return names


def _examples_in(batch):
  seg = np.asarray(batch.get("decoder_segment_ids", batch["decoder_loss_weights"]))
  return int(sum(len(set(row.tolist()) - {0}) for row in seg))


def _time(next_batch):
  t0 = time.perf_counter()
  first = next_batch()
  warm = time.perf_counter() - t0
  n_examples, t0 = 0, time.perf_counter()
  for _ in range(_BATCHES.value):
    b = next_batch()
    n_examples += _examples_in(b)
  jax.block_until_ready(b) if not isinstance(next(iter(b.values())), np.ndarray) else None
  dt = time.perf_counter() - t0
  del first
  return warm, n_examples / dt, _BATCHES.value / dt


def _side(side):
  """One side's rows (packing on and off); t5tune's side also measures resuming."""
  t0 = time.perf_counter()
  register()
  for name in data.task_names(lambda i: i.name.startswith("bench_task_")):
    data.tasks.get_info(name).source.prepared("train")
  prep = time.perf_counter() - t0
  mesh = sharding.make_mesh((-1, 1, 1))
  rows = []
  for pack in (True, False):
    if side == "t5tune":
      it = pipeline.make_iterator("bench_mix", split="train", feature_lengths=LENGTHS,
                                  batch_size=_BATCH_SIZE.value, pack=pack, seed=0, mesh=mesh)
    else:
      it = pipeline.local_dataset(
          "bench_mix", split="train", feature_lengths=LENGTHS,
          local_batch_size=_BATCH_SIZE.value, pack=pack, seed=0,
          shard=seqio.ShardInfo(0, 1)).as_numpy_iterator()
    rows.append((pack,) + _time(lambda: next(it)))
  out = {"prep_s": prep, "rows": rows, "devices": jax.device_count()}
  if side == "t5tune":
    out["resume"] = _resume(mesh)
  return out


def _resume(mesh, steps=100):
  it = pipeline.make_iterator("bench_mix", split="train", feature_lengths=LENGTHS,
                              batch_size=_BATCH_SIZE.value, pack=True, seed=0, mesh=mesh)
  for _ in range(steps):
    next(it)
  with tempfile.TemporaryDirectory() as d:
    t0 = time.perf_counter()
    it.save(d)
    save_s = time.perf_counter() - t0
    size = sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(d) for f in fs)
    fresh = pipeline.make_iterator("bench_mix", split="train", feature_lengths=LENGTHS,
                                   batch_size=_BATCH_SIZE.value, pack=True, seed=0, mesh=mesh)
    t0 = time.perf_counter()
    fresh.restore(d)
    next(fresh)
    restore_s = time.perf_counter() - t0
  replay = pipeline.local_dataset(
      "bench_mix", split="train", feature_lengths=LENGTHS, local_batch_size=_BATCH_SIZE.value,
      pack=True, seed=0, shard=seqio.ShardInfo(0, 1))
  t0 = time.perf_counter()
  next(iter(replay.skip(steps)))
  skip_s = time.perf_counter() - t0
  return {"steps": steps, "save_s": save_s, "mib": size / 2**20, "restore_s": restore_s,
          "skip_s": skip_s}


def main(argv):
  del argv
  if _SIDE.value:
    return harness.report(_side(_SIDE.value))
  script = os.path.abspath(__file__)
  flags_ = [f"--batches={_BATCHES.value}", f"--batch_size={_BATCH_SIZE.value}",
            f"--examples_per_task={_EXAMPLES.value}"]
  sides = {side: harness.run_side(script, [f"--side={side}", *flags_])
           for side in ("t5tune", "peer")}
  names = {"t5tune": "t5tune make_iterator -> jax.Array", "peer": "peer: seqio + tf.data -> numpy"}
  print("\n## Input pipeline (each side in its own process)\n")
  print("\n".join(harness.machine_lines({
      "versions": f"jax {jax.__version__}, seqio {seqio.__version__},"
                  f" tensorflow {tf.__version__}"})))
  print(f"- 10-task mixture, 4 templates each, {_EXAMPLES.value}//(1..3) records per task,"
        f" batch {_BATCH_SIZE.value}, lengths {LENGTHS}, {sides['t5tune']['devices']} CPU"
        f" devices; {_BATCHES.value} batches timed after the first\n")
  print("| pipeline | pack | read+clean+render s | first batch s | examples/s | batches/s |")
  print("|---|---|---|---|---|---|")
  for i in range(2):
    for side in ("t5tune", "peer"):
      pack, warm, ex_s, b_s = sides[side]["rows"][i]
      print(f"| {names[side]} | {pack} | {sides[side]['prep_s']:.1f} | {warm:.2f} |"
            f" {ex_s:.0f} | {b_s:.2f} |")
  r = sides["t5tune"]["resume"]
  print(f"\nresume after {r['steps']} packed batches: save {r['save_s']:.2f} s,"
        f" {r['mib']:.1f} MiB (shuffle/prefetch buffers); restore + first batch"
        f" {r['restore_s']:.2f} s; replay with .skip({r['steps']}) {r['skip_s']:.2f} s")


if __name__ == "__main__":
  app.run(main)
