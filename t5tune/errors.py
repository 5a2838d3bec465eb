"""Typed errors of t5tune's library API, printed by the CLI as one line.

Every error a user can fix carries *what* is wrong, *where* (a file:line, a
flag, a config key) and *how to fix it*. The command line prints

    t5tune <command>: error: <what> (<where>); <fix>

on stderr and exits with `exit_code` (2 for usage: flags, config keys, input
files the user must change; 1 for runtime faults), without a traceback unless
`--verbose` or T5TUNE_VERBOSE=1 asks for one. Library callers catch the class.

The classes also derive from the builtin they refine (ValueError,
FileNotFoundError, ...) so that code written against the builtins keeps working.
"""
from __future__ import annotations

import difflib
import errno
import os
import re
from typing import Iterable


class T5tuneError(Exception):
  """Base class: a fault the user can act on, described in one line."""

  exit_code = 1

  def __init__(self, what: str, *, where: str | None = None, fix: str | None = None):
    super().__init__(what)
    self.what = what
    self.where = where
    self.fix = fix

  def __str__(self) -> str:
    text = self.what
    if self.where:
      text += f" ({self.where})"
    if self.fix:
      text += f"; {self.fix}"
    return text


class UsageError(T5tuneError, ValueError):
  """A bad flag, argument or config key/value: the command line is to change."""

  exit_code = 2


class InputError(T5tuneError, ValueError):
  """An input file or record is unusable (missing, unreadable, wrong type, bad record)."""

  exit_code = 2


class MissingInputError(T5tuneError, FileNotFoundError):
  """A file the user named (a source glob, a vocabulary, a weight shard) is not there."""

  exit_code = 2


class OutputExistsError(T5tuneError, FileExistsError):
  """An output exists and would be replaced; pass --overwrite (same kind only)."""

  exit_code = 2


class OutputNotWritableError(T5tuneError, OSError):
  """An output location cannot be written (its parent is a file, missing, read-only)."""

  exit_code = 2


class DiskFullError(T5tuneError, OSError):
  """A write failed for want of space (no space left, quota exceeded, file size limit)."""

  exit_code = 2


# errno values that mean "no room to write", as Python's OSError, TensorStore's messages
# (`[os_error_code='28']`, through orbax) and TensorFlow's (the strerror text: the data
# iterator's tf.train.Checkpoint) report them.
OUT_OF_SPACE = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
_OS_CODE = re.compile(r"os_error_code='?(\d+)")


def out_of_space(error: BaseException | None) -> int | None:
  """The errno if `error` (or an exception it was raised from) is a write out of space, else None."""
  seen = set()
  while error is not None and id(error) not in seen:
    seen.add(id(error))
    if isinstance(error, OSError) and error.errno in OUT_OF_SPACE:
      return error.errno
    text = str(error)
    for match in _OS_CODE.finditer(text):
      if int(match.group(1)) in OUT_OF_SPACE:
        return int(match.group(1))
    for code in sorted(OUT_OF_SPACE):
      if os.strerror(code) in text:
        return code
    error = error.__cause__ or error.__context__
  return None


RERUN = "free space there (or write elsewhere) and rerun the same command"


def disk_full(error: BaseException, where: str | None = None,
              fix: str = RERUN) -> DiskFullError | None:
  """`error` as the one DiskFullError if it is a write out of space (Python's, safetensors',
  TensorFlow's or TensorStore's wording), else None. `where` defaults to the OSError's file."""
  if isinstance(error, DiskFullError):
    return error
  code = out_of_space(error)
  if code is None:
    return None
  where = where or getattr(error, "filename", None)
  return DiskFullError(f"the disk is full: {os.strerror(code)}", where=where, fix=fix)


class CheckpointError(T5tuneError, ValueError):
  """A checkpoint or model directory is corrupt, incomplete or from another config."""


class ConversionError(CheckpointError):
  """Weights could not be converted: not a T5, a key or shape that does not match."""


class TrainingFault(T5tuneError, FloatingPointError):
  """Training diverged or stalled (NaN/inf loss, zero gradients, exploding loss)."""


def did_you_mean(name: str, choices: Iterable[str], n: int = 1) -> str:
  """" Did you mean 'x'?" (or "x' or 'y'") for the closest of `choices`, or "" if none is close.

  The one place that phrases a suggestion, so that a misspelt command, preset,
  config key or task reads the same everywhere.
  """
  close = difflib.get_close_matches(str(name), [str(c) for c in choices], n=n)
  if not close:
    return ""
  return " Did you mean " + " or ".join(repr(c) for c in close) + "?"
