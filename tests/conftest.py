"""Test set-up: 8 simulated CPU devices, quiet TensorFlow, no accelerator, one compilation cache per run."""
import atexit
import os
import shutil
import tempfile

# The umask most users have: files t5tune writes must get 0644 / 0755 under it (tests/cli.py's
# wrong_modes), inherited by every command the tests start.
os.umask(0o022)
# Must happen before jax is imported anywhere in the test process.
os.environ.setdefault("JAX_NUM_CPU_DEVICES", "8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

# JAX's persistent compilation cache, shared by the run's workers and every
# `t5tune` subprocess the tests start (they inherit the variables): the CLI
# tests compile the same tiny programs again and again, and a cache hit costs
# a file read instead of an XLA compile. The directory is new for each run
# (made by the controller before xdist starts its workers, removed at exit),
# so a run never reads programs compiled by an older tree.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ and not os.environ.get("PYTEST_XDIST_WORKER"):
  _cache = tempfile.mkdtemp(prefix="t5tune-test-jax-cache-")
  os.environ["JAX_COMPILATION_CACHE_DIR"] = _cache
  atexit.register(shutil.rmtree, _cache, ignore_errors=True)
# Every program, however quick to compile: a CLI run's small programs (orbax's per-shard slices
# at its first save, the optimizer's set-up) repeat in every run. A 4-step tiny CLI run with a warm
# cache: 4.9 s user with every program cached against 6.3 s with those over 0.2 s only.
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")

# XLA without most of its optimisation passes (jax's `jax_disable_most_optimizations`: LLVM at -O0,
# most HLO passes off), for the tests and every command they start: the suite's programs are tiny
# and run a few steps, so compiling is most of their time, and what the tests assert (tokens,
# losses against float64 references, shardings, files, exit codes) does not depend on how fast the
# code XLA emits runs. tests/models/test_scan.py alone: 60.5 s -> 43.2 s, XLA's compile time in
# it 37.5 s -> 22.6 s (jax.monitoring's backend_compile_duration, idle 2-core EPYC, 2026-12-08);
# the whole suite passed both ways. Benchmarks and users get XLA's defaults; the TPU compiler's
# programs in tests/train/test_tpu_targets.py are compiled with them too (its fixture).
os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")

import jax  # noqa: E402

jax.config.update("jax_num_cpu_devices", int(os.environ["JAX_NUM_CPU_DEVICES"]))


# The heaviest test modules (per-file seconds of a `--durations=0` run, 2026-12-04 19:25 UTC, three
# workers on two cores), started first: xdist's --dist loadfile hands out whole files in the order
# of the collection when it runs with --no-loadscope-reorder (the Makefile's `test` target; by
# default xdist orders files by their number of tests instead, which started the 120 s test_run.py
# 438 s into a 640 s run and left two workers idle for the last 60-85 s).
_HEAVY_FIRST = (
    "tests/train/test_continual.py",  # 183 s
    "tests/experiments/test_run.py",  # 137 s
    "tests/experiments/test_flan_readme.py",  # 102 s
    "tests/train/test_train_step.py",  # 67 s
    "tests/faults/test_fault_matrix.py",  # 66 s
    "tests/train/test_resume.py",  # 65 s
    "tests/infer/test_harness.py",  # 60 s
    "tests/models/test_scan.py",  # 59 s
    "tests/models/test_fast_paths.py",  # 57 s
    "tests/infer/test_evaluation.py",  # 52 s
    "tests/models/test_t5.py",  # 52 s
    "tests/data/test_pipeline.py",  # 51 s
    "tests/models/test_peft.py",  # 45 s
    "tests/serve/test_server.py",  # 45 s
    "tests/test_readme.py",  # 42 s
    "tests/infer/test_decoding.py",  # 40 s
    "tests/experiments/test_portable.py",  # 40 s
    "tests/data/test_flan2021.py",  # 34 s
    "tests/train/test_faults_and_configs.py",  # 32 s
    "tests/infer/test_evaluate_cli.py",  # 31 s
    "tests/infer/test_predict.py",  # 29 s
    "tests/quality/test_label_issues.py",  # 26 s
    "tests/train/test_multiprocess.py",  # 26 s
    "tests/experiments/test_quickstart_notebook.py",  # 25 s
    "tests/quality/test_generate.py",  # 24 s
    "tests/infer/test_ensemble.py",  # 23 s
    "tests/data/test_pretraining.py",  # 23 s
    "tests/models/test_hf_parity.py",  # 22 s
    "tests/test_imports.py",  # 22 s
    "tests/train/test_plan.py",  # 20 s
)


def pytest_collection_modifyitems(session, config, items):
  del session, config
  rank = {path: i for i, path in enumerate(_HEAVY_FIRST)}

  def key(item):
    path = item.nodeid.split("::", 1)[0]
    return rank.get(path, len(rank))

  items.sort(key=key)  # stable: the order inside a file and among the rest is kept
