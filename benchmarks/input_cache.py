"""Input throughput per host, cached (`t5tune data cache`) against uncached, beside what a pod consumes.

    python benchmarks/input_cache.py --batches=30 --out=benchmarks/results/input_cache.jsonl

For three collections (the FLAN 2021 held-out NLI training mixture on TFDS mock
data, the compositional collection's full training pool, and a
Super-NaturalInstructions-shaped collection of generated task files), each
tokenised with the byte vocabulary (compositional: its own
SentencePiece model, 896 pieces) at FLAN's lengths: the cache is built once
(Beam DirectRunner, timed, in its own process), then every row (cached or
not, packed or not, 1 or 2 simulated hosts) runs in its own child process,
reading `pipeline.local_dataset` for host 0 with `seqio.ShardInfo(0, hosts)`
and a local batch of batch_size / hosts, as `pipeline.make_iterator` does on
a real host (without the device transfer). Each row reports examples/s,
non-padding tokens/s, slot tokens/s (batch rows x (inputs + targets) length:
what a train step consumes) and the child's peak RSS (ru_maxrss).

Beside the rows: the slot tokens/s one host must supply for Flan-T5-XL on v4-64
and Flan-T5-XXL on v5e-256 at 40% MFU, from t5tune's analytic FLOP count
(`t5tune.models.info.train_flops`, no TPU compile) and `t5tune.targets`'
chip peak and host count. Needed per host = (inputs + targets length) x chips x
peak x MFU / (train FLOPs per sequence x hosts): the global batch cancels.
"""
import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import json  # noqa: E402
import random  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402  (benchmarks/harness.py, beside this script)

COLLECTIONS = ("flan", "compositional", "ni")
_COLLECTIONS = flags.DEFINE_list("collections", list(COLLECTIONS), "collections to measure")
_BATCHES = flags.DEFINE_integer("batches", 30, "batches timed per row (after one warm-up batch)")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 32, "global batch size (a host reads / hosts)")
_INPUTS = flags.DEFINE_integer("inputs_length", 1024, "encoder length (FLAN: 1024)")
_TARGETS = flags.DEFINE_integer("targets_length", 256, "decoder length (FLAN: 256)")
_NI_TASKS = flags.DEFINE_integer("ni_tasks", 1000, "generated Super-NaturalInstructions task files")
_NI_INSTANCES = flags.DEFINE_integer("ni_instances", 20, "instances per generated task file")
_TIMEOUT = flags.DEFINE_integer("child_timeout", 900, "seconds per child (a build of 1,000 NI tasks"
                                " took over 900 on a loaded 2-core machine)")
_OUT = flags.DEFINE_string("out", "", "append each row as a JSON line to this file")
_WORKDIR = flags.DEFINE_string("workdir", "", "caches and generated files (default: a temp dir)")
# A child's flags.
_ROLE = flags.DEFINE_enum("role", None, ["build", "row"], "run one child")
_COLLECTION = flags.DEFINE_string("collection", "", "the child's collection")
_CACHED = flags.DEFINE_boolean("cached", False, "read the cache")
_PACK = flags.DEFINE_boolean("pack", True, "pack examples")
_HOSTS = flags.DEFINE_integer("hosts", 1, "simulated hosts (this child reads host 0's shard)")

FLAN_MIXTURE = "flan2021_heldout_nli_train"
# (model preset, Cloud TPU slice) pairs of the question; 40% MFU.
POD = (("flan_t5_xl", "v4-64"), ("flan_t5_xxl", "v5e-256"))
MFU = 0.40
GLOBAL_BATCH = 128  # stated for the step time only; the per-host need does not depend on it
WORDS = ("alpha beta gamma delta river stone cloud music garden window paper light quiet rapid"
         " green silver orange winter summer market story number").split()


def _ni_files(directory, n_tasks, n_instances):
  """`n_tasks` task files in Super-NaturalInstructions' format (one task per JSON file)."""
  os.makedirs(directory, exist_ok=True)
  for t in range(n_tasks):
    rng = random.Random(t)
    def text(lo, hi):
      return " ".join(rng.choice(WORDS) for _ in range(rng.randint(lo, hi)))
    task = {"Definition": [f"Task {t}: " + text(20, 60)], "Source": ["generated"],
            "Categories": ["Generated"],
            "Positive Examples": [{"input": text(20, 80), "output": text(1, 10)} for _ in range(2)],
            "Instances": [{"id": f"task{t:04d}-{i}", "input": text(30, 200),
                           "output": [text(1, 30)]} for i in range(n_instances)]}
    with open(os.path.join(directory, f"task{t:04d}_generated.json"), "w") as f:
      json.dump(task, f)


def _register(collection, workdir):
  """Registers `collection`'s tasks; returns the mixture or task name to read."""
  if collection == "flan":
    import t5tune.flan_tasks_mock  # noqa: F401  pylint: disable=g-import-not-at-top,unused-import
    return FLAN_MIXTURE
  if collection == "compositional":
    from experiments.compositional import corpus  # pylint: disable=g-import-not-at-top
    from experiments.compositional import tasks  # pylint: disable=g-import-not-at-top
    # Its own SentencePiece model (its tasks take no "byte"); trained once, cached by content.
    return tasks.training_task("instructions", None, seed=0, vocabulary=corpus.vocabulary(seed=0))
  from t5tune.data.collections import natural_instructions as ni  # pylint: disable=g-import-not-at-top
  from t5tune.infer import metrics  # pylint: disable=g-import-not-at-top
  directory = os.path.join(workdir, "ni_tasks")
  if not os.path.exists(os.path.join(directory, "COMPLETE")):
    _ni_files(directory, _NI_TASKS.value, _NI_INSTANCES.value)
    open(os.path.join(directory, "COMPLETE"), "w").close()
  ni.register(directory, metric_fns=metrics, vocabulary="byte")
  return f"{ni.PREFIX}_train"


def _rss_mib():
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _build(collection, workdir):
  from t5tune.data import cache  # pylint: disable=g-import-not-at-top
  t0 = time.perf_counter()
  name = _register(collection, workdir)
  register_s = time.perf_counter() - t0
  names = cache.select(mixture=name) if collection != "compositional" else [name]
  out = os.path.join(workdir, f"cache_{collection}")
  t0 = time.perf_counter()
  done = cache.run(names, out, splits=["train"], num_shards=2)
  import seqio  # pylint: disable=g-import-not-at-top
  examples = sum(seqio.TaskRegistry.get(n).num_input_examples("train") or 0 for n in names)
  return {"collection": collection, "tasks": len(names), "examples": examples,
          "register_s": register_s, "build_s": time.perf_counter() - t0,
          "written": sum(v == "written" for v in done.values()), "peak_rss_mib": _rss_mib()}


def _row(collection, workdir, cached, pack, hosts):
  import numpy as np  # pylint: disable=g-import-not-at-top
  import seqio  # pylint: disable=g-import-not-at-top
  from t5tune.data import pipeline  # pylint: disable=g-import-not-at-top
  t0 = time.perf_counter()
  name = _register(collection, workdir)
  register_s = time.perf_counter() - t0
  local = _BATCH_SIZE.value // hosts
  lengths = {"inputs": _INPUTS.value, "targets": _TARGETS.value}
  t0 = time.perf_counter()
  ds = pipeline.local_dataset(
      name, split="train", feature_lengths=lengths, local_batch_size=local, pack=pack, seed=0,
      shard=seqio.ShardInfo(0, hosts),
      cache_dir=os.path.join(workdir, f"cache_{collection}") if cached else "")
  it = ds.as_numpy_iterator()
  next(it)
  first_s = time.perf_counter() - t0
  examples = tokens = 0
  t0 = time.perf_counter()
  for _ in range(_BATCHES.value):
    b = next(it)
    seg = b.get("decoder_segment_ids")
    if seg is None:
      examples += int((b["decoder_loss_weights"].sum(axis=1) > 0).sum())
    else:
      examples += sum(len(set(row.tolist()) - {0}) for row in seg)
    tokens += int(np.count_nonzero(b["encoder_input_tokens"])
                  + np.count_nonzero(b["decoder_target_tokens"]))
  dt = time.perf_counter() - t0
  slots = _BATCHES.value * local * (_INPUTS.value + _TARGETS.value)
  return {"collection": collection, "cached": cached, "pack": pack, "hosts": hosts,
          "local_batch": local, "register_s": register_s, "first_batch_s": first_s,
          "examples_per_s": examples / dt, "tokens_per_s": tokens / dt,
          "slot_tokens_per_s": slots / dt, "batches_per_s": _BATCHES.value / dt,
          "peak_rss_mib": _rss_mib()}


def pod_needs(inputs_len, targets_len):
  """[{model, target, hosts, step_s, need}]: slot tokens/s one host must supply at MFU."""
  from t5tune import targets  # pylint: disable=g-import-not-at-top
  from t5tune.models import config as config_lib  # pylint: disable=g-import-not-at-top
  from t5tune.models import info  # pylint: disable=g-import-not-at-top
  out = []
  for preset, slice_name in POD:
    target = targets.parse(slice_name)
    per_seq = info.train_flops(config_lib.preset(preset), inputs_len, targets_len)
    flops_per_s = target.chips * target.chip.peak_tflops * 1e12 * MFU
    step_s = GLOBAL_BATCH * per_seq / flops_per_s
    need = GLOBAL_BATCH * (inputs_len + targets_len) / step_s / target.hosts
    out.append({"model": preset, "target": slice_name, "chips": target.chips,
                "hosts": target.hosts, "peak_tflops": target.chip.peak_tflops,
                "train_flops_per_seq": per_seq, "global_batch": GLOBAL_BATCH, "step_s": step_s,
                "need_slot_tokens_per_s_per_host": need})
  return out


def _load():
  try:
    return open("/proc/loadavg").read().split()[:3]
  except OSError:
    return []


def _child(script, args):
  load = _load()
  result = harness.run_side(script, args, timeout=_TIMEOUT.value)
  result["load_before"] = load
  return result


def main(argv):
  del argv
  workdir = _WORKDIR.value
  if _ROLE.value == "build":
    return harness.report(_build(_COLLECTION.value, workdir))
  if _ROLE.value == "row":
    return harness.report(_row(_COLLECTION.value, workdir, _CACHED.value, _PACK.value,
                               _HOSTS.value))
  workdir = workdir or tempfile.mkdtemp(prefix="t5tune_input_cache_")
  script = os.path.abspath(__file__)
  common = [f"--workdir={workdir}", f"--batches={_BATCHES.value}",
            f"--batch_size={_BATCH_SIZE.value}", f"--inputs_length={_INPUTS.value}",
            f"--targets_length={_TARGETS.value}", f"--ni_tasks={_NI_TASKS.value}",
            f"--ni_instances={_NI_INSTANCES.value}", f"--child_timeout={_TIMEOUT.value}"]
  import seqio  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  import apache_beam  # pylint: disable=g-import-not-at-top
  versions = (f"seqio {seqio.__version__}, tensorflow {tf.__version__},"
              f" apache-beam {apache_beam.__version__}, python {sys.version.split()[0]}")
  builds, rows = [], []
  for collection in _COLLECTIONS.value:
    builds.append(_child(script, ["--role=build", f"--collection={collection}", *common]))
    print("build", json.dumps(builds[-1]), flush=True)
    for cached in (False, True):
      for pack in (True, False):
        for hosts in (1, 2):
          rows.append(_child(script, [
              "--role=row", f"--collection={collection}", f"--cached={cached}",
              f"--pack={pack}", f"--hosts={hosts}", *common]))
          print("row", json.dumps(rows[-1]), flush=True)
  needs = pod_needs(_INPUTS.value, _TARGETS.value)
  date = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
  if _OUT.value:
    with open(_OUT.value, "a") as f:
      meta = {"date": date, "cpu": harness.cpu_model(), "cores": os.cpu_count(),
              "versions": versions, "command": " ".join(sys.argv)}
      for kind, items in (("build", builds), ("row", rows), ("need", needs)):
        for item in items:
          f.write(json.dumps({"kind": kind, **meta, **item}) + "\n")
  _print(date, versions, builds, rows, needs)


def _print(date, versions, builds, rows, needs):
  print(f"\n## Input throughput per host, cached vs uncached ({date})\n")
  print(f"- {harness.cpu_model()}, {os.cpu_count()} cores; {versions}")
  print(f"- lengths {_INPUTS.value}/{_TARGETS.value}, byte vocabulary, global batch"
        f" {_BATCH_SIZE.value} (a host reads / hosts), {_BATCHES.value} batches timed after the"
        " first; each row its own process (peak RSS is that process's)\n")
  print("| collection | tasks | examples | cache build s (DirectRunner) | build peak RSS MiB | load before |")
  print("|---|---|---|---|---|---|")
  for b in builds:
    print(f"| {b['collection']} | {b['tasks']} | {b['examples']} | {b['build_s']:.1f} |"
          f" {b['peak_rss_mib']:.0f} | {' '.join(b['load_before'])} |")
  print("\n| collection | cached | pack | hosts | first batch s | examples/s | tokens/s (non-pad)"
        " | slot tokens/s | peak RSS MiB | load before |")
  print("|---|---|---|---|---|---|---|---|---|---|")
  for r in rows:
    print(f"| {r['collection']} | {r['cached']} | {r['pack']} | {r['hosts']} |"
          f" {r['first_batch_s']:.1f} | {r['examples_per_s']:.0f} | {r['tokens_per_s']:.0f} |"
          f" {r['slot_tokens_per_s']:.0f} | {r['peak_rss_mib']:.0f} | {' '.join(r['load_before'])} |")
  print(f"\nNeeded per host at {MFU:.0%} MFU (analytic FLOPs, t5tune.models.info.train_flops;"
        " no TPU compile), packed 2-host rows against it:\n")
  print("| model | slice | chips | hosts | step s (global batch) | needed slot tokens/s/host |"
        " collection | uncached ratio | cached ratio |")
  print("|---|---|---|---|---|---|---|---|---|")
  for n in needs:
    for collection in _COLLECTIONS.value:
      have = {r["cached"]: r["slot_tokens_per_s"] for r in rows
              if r["collection"] == collection and r["pack"] and r["hosts"] == 2}
      ratio = {c: have[c] / n["need_slot_tokens_per_s_per_host"] if c in have else float("nan")
               for c in (False, True)}
      print(f"| {n['model']} | {n['target']} | {n['chips']} | {n['hosts']} |"
            f" {n['step_s']:.2f} ({n['global_batch']}) | {n['need_slot_tokens_per_s_per_host']:.0f} |"
            f" {collection} | {ratio[False]:.2f} | {ratio[True]:.2f} |")
  print("\nratio = supplied / needed: >= 1 keeps up (on this 2-core machine; a TPU host has far"
        " more cores)")


if __name__ == "__main__":
  app.run(main)
