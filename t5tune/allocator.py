"""Runs the `t5tune` command under an allocator that keeps freed pages (one re-exec at start-up).

Why: with glibc's malloc, XLA's CPU runtime maps a large temporary buffer
afresh on every train step (about 245k page faults and ~0.5 s of system time
per step on t5_1_1_small at batch 8 of 128/32 tokens) because glibc hands big
blocks back to the kernel as soon as they are freed, and its tunables cannot
stop that for the threads XLA runs on (measured: `glibc.malloc.mmap_max=0`
and a huge `trim_threshold` leave the faults as they are). An allocator told
never to purge keeps those pages for the next step (2 faults per step).

Which one: mimalloc from the `cmeel-mimalloc` wheel, an install requirement
on Linux x86_64, so the README's two commands bring it (no `apt-get`); a
system jemalloc (`apt-get install libjemalloc2`) where the wheel is absent.
The allocator can only be swapped before the process starts (`LD_PRELOAD`),
so `t5tune` re-executes itself once with it preloaded.

    T5TUNE_ALLOCATOR=system     keep glibc malloc (no re-exec)
    T5TUNE_ALLOCATOR=mimalloc | jemalloc    that one only
    T5TUNE_ALLOCATOR=/path/lib.so           this library (jemalloc or mimalloc settings by name)
    --verbose / T5TUNE_VERBOSE=1            say which allocator the command runs with

The same for any Python process (the `make` targets and benchmarks do this):

    env $(python -m t5tune.allocator --env) python ...
"""
from __future__ import annotations

import glob
import os
import site
import sys
import sysconfig

# Each allocator's "never give freed pages back to the kernel" setting: the next
# train step reuses them without page faults; memory stays at the process's peak.
SETTINGS = {
    "mimalloc": {"MIMALLOC_PURGE_DELAY": "-1"},
    "jemalloc": {"MALLOC_CONF": "dirty_decay_ms:-1,muzzy_decay_ms:-1"},
}
_JEMALLOC = ("/usr/lib/*-linux-gnu/libjemalloc.so.2", "/usr/lib64/libjemalloc.so.2",
             "/usr/lib/libjemalloc.so.2", "/usr/local/lib/libjemalloc.so.2")
_MARK = "T5TUNE_ALLOCATOR_REEXEC"  # set in the re-executed process: never loop


def _site_dirs() -> list[str]:
  dirs = [sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]
  try:
    dirs += site.getsitepackages() + [site.getusersitepackages()]
  except AttributeError:  # some virtualenv layouts lack getsitepackages
    pass
  return list(dict.fromkeys(dirs))


def find(name: str) -> str | None:
  """The path of allocator `name`'s shared library, or None where it is not installed."""
  if name == "mimalloc":
    patterns = [os.path.join(d, "cmeel.prefix", "lib", "libmimalloc.so*") for d in _site_dirs()]
  elif name == "jemalloc":
    patterns = list(_JEMALLOC)
  else:
    raise ValueError(f"unknown allocator {name!r}")
  for pattern in patterns:
    found = sorted(glob.glob(pattern), key=len)  # libmimalloc.so before .so.3.4
    if found:
      return found[0]
  return None


def choose() -> tuple[str, str | None]:
  """(name, library path) of the allocator to run under; ("system", None) for glibc's."""
  choice = os.environ.get("T5TUNE_ALLOCATOR", "")
  if choice == "system":
    return "system", None
  if choice in SETTINGS:
    lib = find(choice)
    return (choice, lib) if lib else ("system", None)
  if choice:
    if not os.path.isfile(choice):
      return "system", None
    return ("jemalloc" if "jemalloc" in os.path.basename(choice) else "mimalloc"), choice
  for name in ("mimalloc", "jemalloc"):
    lib = find(name)
    if lib:
      return name, lib
  return "system", None


def environment() -> dict[str, str]:
  """The variables that run a new process under the chosen allocator ({} for glibc's)."""
  name, lib = choose()
  if lib is None or not sys.platform.startswith("linux"):
    return {}
  preload = os.environ.get("LD_PRELOAD", "")
  env = {"LD_PRELOAD": lib if not preload or lib in preload else f"{lib}:{preload}"}
  env.update({k: os.environ.get(k, v) for k, v in SETTINGS[name].items()})
  return env


def _verbose(argv) -> bool:
  return "--verbose" in argv or os.environ.get("T5TUNE_VERBOSE", "") not in ("", "0")


def _preloaded() -> str | None:
  preload = os.environ.get("LD_PRELOAD", "")
  return preload if any(n in preload for n in ("jemalloc", "mimalloc", "tcmalloc")) else None


def ensure(argv) -> None:
  """Re-executes this process under the chosen allocator unless it already runs under one.

  Returns (without re-executing) on non-Linux systems, when an allocator is
  already preloaded, when none is installed, or when T5TUNE_ALLOCATOR=system.
  """
  say = (lambda text: print(f"t5tune: {text}", file=sys.stderr)) if _verbose(argv) else (
      lambda text: None)
  if _preloaded():
    if not os.environ.get(_MARK):  # the re-executed process already said so
      say(f"allocator: preloaded ({_preloaded()})")
    return
  if os.environ.get(_MARK) or not sys.platform.startswith("linux"):
    say("allocator: system malloc")
    return
  env = environment()
  if not env:
    why = ("T5TUNE_ALLOCATOR=system" if os.environ.get("T5TUNE_ALLOCATOR") == "system"
           else "neither the cmeel-mimalloc wheel nor libjemalloc.so.2 is installed")
    say(f"allocator: system malloc ({why})")
    return
  name, lib = choose()
  settings = " ".join(f"{k}={env[k]}" for k in SETTINGS[name])
  say(f"allocator: {name} ({lib}, {settings}); re-executing with LD_PRELOAD"
      " (T5TUNE_ALLOCATOR=system turns this off)")
  sys.stderr.flush()
  sys.stdout.flush()
  # orig_argv is the command line as typed (interpreter, -m or script path, flags).
  os.execve(sys.executable, list(sys.orig_argv), {**os.environ, **env, _MARK: "1"})


if __name__ == "__main__":
  # `python -m t5tune.allocator --env`: NAME=VALUE words for `env` (nothing for glibc's).
  if sys.argv[1:] != ["--env"]:
    print("usage: python -m t5tune.allocator --env", file=sys.stderr)
    sys.exit(2)
  print(" ".join(f"{k}={v}" for k, v in environment().items()))
