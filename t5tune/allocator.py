"""Runs the `t5tune` command under jemalloc when it is installed (one re-exec at start-up).

Why: with glibc's malloc, XLA's CPU runtime maps a large temporary buffer
afresh on every train step (about 355 MB and 100k page faults per step on a
t5_1_1_small-sized model, ~170 ms of system time) because glibc hands big
blocks back to the kernel as soon as they are freed. jemalloc with page decay
turned off keeps those pages for the next step. The allocator can only be
swapped before the process starts (`LD_PRELOAD`), so `t5tune` re-executes
itself once with jemalloc preloaded when it finds the library and it is not
already loaded.

    T5TUNE_ALLOCATOR=system   keep glibc malloc (no re-exec)
    T5TUNE_ALLOCATOR=/path/libjemalloc.so.2   use this library
    --verbose / T5TUNE_VERBOSE=1   say which allocator the command runs with

The same by hand, for any Python process (`make` targets do this):

    LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2 \\
    MALLOC_CONF=dirty_decay_ms:-1,muzzy_decay_ms:-1 python ...

(`apt-get install libjemalloc2` on Debian/Ubuntu.)
"""
from __future__ import annotations

import glob
import os
import sys

# Keep freed pages instead of returning them to the kernel: the next train
# step reuses them without page faults. Memory stays at the process's peak.
MALLOC_CONF = "dirty_decay_ms:-1,muzzy_decay_ms:-1"
_SEARCH = ("/usr/lib/*-linux-gnu/libjemalloc.so.2", "/usr/lib64/libjemalloc.so.2",
           "/usr/lib/libjemalloc.so.2", "/usr/local/lib/libjemalloc.so.2")
_MARK = "T5TUNE_ALLOCATOR_REEXEC"  # set in the re-executed process: never loop


def find_jemalloc() -> str | None:
  """The path of an installed jemalloc shared library, or None."""
  choice = os.environ.get("T5TUNE_ALLOCATOR", "")
  if choice == "system":
    return None
  if choice:
    return choice if os.path.isfile(choice) else None
  for pattern in _SEARCH:
    found = sorted(glob.glob(pattern))
    if found:
      return found[0]
  return None


def _verbose(argv) -> bool:
  return "--verbose" in argv or os.environ.get("T5TUNE_VERBOSE", "") not in ("", "0")


def ensure_jemalloc(argv) -> None:
  """Re-executes this process with jemalloc preloaded if it is installed and not loaded yet.

  Returns (without re-executing) on non-Linux systems, when jemalloc is
  already preloaded, when none is found, or when T5TUNE_ALLOCATOR=system.
  """
  preload = os.environ.get("LD_PRELOAD", "")
  say = (lambda text: print(f"t5tune: {text}", file=sys.stderr)) if _verbose(argv) else (
      lambda text: None)
  if "jemalloc" in preload or "tcmalloc" in preload:
    if not os.environ.get(_MARK):  # the re-executed process already said so
      say(f"allocator: preloaded ({preload})")
    return
  if os.environ.get(_MARK) or not sys.platform.startswith("linux"):
    say("allocator: system malloc")
    return
  lib = find_jemalloc()
  if lib is None:
    why = ("T5TUNE_ALLOCATOR=system" if os.environ.get("T5TUNE_ALLOCATOR") == "system"
           else "no libjemalloc.so.2 found; `apt-get install libjemalloc2` makes training faster")
    say(f"allocator: system malloc ({why})")
    return
  env = dict(os.environ)
  env["LD_PRELOAD"] = f"{lib}:{preload}" if preload else lib
  env.setdefault("MALLOC_CONF", MALLOC_CONF)
  env[_MARK] = "1"
  say(f"allocator: jemalloc ({lib}, MALLOC_CONF={env['MALLOC_CONF']}); re-executing with"
      " LD_PRELOAD (T5TUNE_ALLOCATOR=system turns this off)")
  sys.stderr.flush()
  sys.stdout.flush()
  # orig_argv is the command line as typed (interpreter, -m or script path, flags).
  os.execve(sys.executable, list(sys.orig_argv), env)
