"""The allocator t5tune preloads: found from the wheel, re-executed into, and it keeps freed pages."""
import os
import subprocess
import sys

import pytest

from t5tune import allocator

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LINUX_X86 = sys.platform.startswith("linux") and os.uname().machine == "x86_64"

# A 64 MiB array made and freed 20 times on a worker thread (XLA's step
# temporaries live on its threads): prints the minor page faults per round.
_CHURN = """
import resource, threading, numpy as np
np._core.multiarray._set_madvise_hugepage(False)  # 4-KiB pages, as XLA's buffers get
def churn():
  for _ in range(20):
    a = np.ones(16 << 20, np.float32); a.sum(); del a
churn()  # warm-up: the first round faults its pages in under every allocator
r0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
t = threading.Thread(target=churn); t.start(); t.join()
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - r0) / 20)
"""

_MAPS = ("import sys; from t5tune import allocator; allocator.ensure(sys.argv);"
         " maps = open('/proc/self/maps').read();"
         " print('mimalloc' if 'libmimalloc' in maps else 'jemalloc' if 'libjemalloc' in maps"
         " else 'system')")


def _env(**extra):
  env = {k: v for k, v in os.environ.items()
         if k not in ("LD_PRELOAD", "T5TUNE_ALLOCATOR", "T5TUNE_ALLOCATOR_REEXEC")}
  return dict(env, PYTHONPATH=REPO, **extra)


@pytest.mark.skipif(not LINUX_X86, reason="the cmeel-mimalloc wheel is a requirement on Linux x86_64 only")
def test_the_wheel_is_found_and_the_command_reexecutes_into_it():
  name, lib = allocator.choose()
  assert name == "mimalloc" and os.path.isfile(lib)  # installed by setup.py, no apt-get
  env = allocator.environment()
  assert env["LD_PRELOAD"].startswith(lib) and env["MIMALLOC_PURGE_DELAY"] == "-1"
  ran = subprocess.run([sys.executable, "-c", _MAPS], env=_env(), capture_output=True, text=True,
                       timeout=60)
  assert ran.stdout.split() == ["mimalloc"], ran.stderr
  off = subprocess.run([sys.executable, "-c", _MAPS], env=_env(T5TUNE_ALLOCATOR="system"),
                       capture_output=True, text=True, timeout=60)
  assert off.stdout.split() == ["system"], off.stderr
  # A library named by path that does not exist: glibc's malloc, no failed exec.
  gone = subprocess.run([sys.executable, "-c", _MAPS], env=_env(T5TUNE_ALLOCATOR="/no/such.so"),
                        capture_output=True, text=True, timeout=60)
  assert gone.returncode == 0 and gone.stdout.split() == ["system"], gone.stderr


@pytest.mark.skipif(not LINUX_X86, reason="the cmeel-mimalloc wheel is a requirement on Linux x86_64 only")
def test_freed_pages_are_kept_for_the_next_round():
  def faults(env):
    ran = subprocess.run([sys.executable, "-c", _CHURN], env=env, capture_output=True, text=True,
                         timeout=120)
    assert ran.returncode == 0, ran.stderr
    return float(ran.stdout)
  glibc = faults(_env())
  kept = faults(_env(**allocator.environment()))
  # glibc maps the 64 MiB afresh each round (16k 4-KiB pages); the preloaded allocator reuses them.
  assert glibc > 4000, glibc
  assert kept < glibc / 20, (kept, glibc)


def test_env_words_for_make():
  out = subprocess.run([sys.executable, "-m", "t5tune.allocator", "--env"], env=_env(),
                       capture_output=True, text=True, timeout=60, cwd=REPO)
  assert out.returncode == 0
  words = dict(w.split("=", 1) for w in out.stdout.split())
  assert words == allocator.environment()
  bad = subprocess.run([sys.executable, "-m", "t5tune.allocator"], env=_env(), capture_output=True,
                       text=True, timeout=60, cwd=REPO)
  assert bad.returncode == 2 and bad.stdout == ""
