"""Atomic writes: a temporary sibling, fsync, rename, so a reader sees the old file or the new one, never a part.

    atomic.write_text(path, text)
    atomic.write_json(path, obj, indent=1)
    atomic.write_bytes(path, data)
    with atomic.writing(path, suffix=".png") as tmp:   # a library writes the file itself
      fig.savefig(tmp)
    with atomic.writing_dir(path) as tmp:              # a whole directory
      write_files_into(tmp)
    atomic.check_parent(path)   # before the work: a file on the output's path is refused
    with atomic.output(out_dir):               # a command's outputs: a failure removes what it made
      run_the_command()

Every writer of t5tune goes through here. A failure (an exception, or the
process dying) before the rename leaves `path` byte-identical; an exception
also removes the temporary file. Temporary names are `.tmp-NAME-RANDOM`
(NAME the target's name), so concurrent writers never share one and a
cleanup can find them.
A write that fails for want of space (however the library that wrote says
it) raises the one `errors.DiskFullError`, naming the output and what to do.
The temporary file lies in the target's directory because a rename is atomic
only within one file system. `mkstemp`/`mkdtemp` create it private (0600 /
0700); before the rename it gets the mode any file the user creates gets
(0666 / 0777 less the process's umask), so a result is as readable as the
user's other files.

Top level (beside `jsonl_append`) because data, models, convert, train,
infer and the experiments all write files, and none may import the others.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from typing import Any, Iterator

from t5tune import errors


def _fsync_dir(directory: str) -> None:
  # Makes the rename itself durable; some file systems refuse to open a directory.
  try:
    fd = os.open(directory, os.O_RDONLY)
  except OSError:
    return
  try:
    os.fsync(fd)
  except OSError:
    pass
  finally:
    os.close(fd)


def umask() -> int:
  """The process's umask, read without changing it (another thread may be creating files)."""
  try:
    with open("/proc/self/status") as f:
      for line in f:
        if line.startswith("Umask:"):
          return int(line.split()[1], 8)
  except (OSError, ValueError):
    pass
  mask = os.umask(0o022)  # no /proc (macOS): read it by setting it, at once set back
  os.umask(mask)
  return mask


def _as_user_made(path: str, directory: bool = False) -> None:
  """Gives a temporary made private by mkstemp/mkdtemp the mode `open`/`mkdir` would have given."""
  os.chmod(path, (0o777 if directory else 0o666) & ~umask())


def check_parent(path: str | os.PathLike, fix: str = "choose an output inside a directory") -> None:
  """Refuses `path` now, before any work, when a file stands where its directories would be made
  (the nearest existing ancestor is not a directory): the writers' `os.makedirs` fails there."""
  parent = os.path.dirname(os.path.abspath(os.fspath(path)))
  while not os.path.exists(parent):
    parent = os.path.dirname(parent)
  if not os.path.isdir(parent):
    raise errors.OutputNotWritableError("the output's parent is a file", where=parent, fix=fix)


@contextlib.contextmanager
def writing(path: str | os.PathLike, suffix: str = "") -> Iterator[str]:
  """Yields a temporary sibling path; once the block succeeds it is fsynced and renamed to `path`.

  `suffix` ends the temporary name, for libraries that choose a format from
  the extension (matplotlib's `savefig`).
  """
  path = os.path.abspath(os.fspath(path))
  directory = os.path.dirname(path)
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(prefix=f".tmp-{os.path.basename(path)}-", suffix=suffix,
                             dir=directory)
  os.close(fd)
  try:
    _as_user_made(tmp)
    yield tmp
    _as_user_made(tmp)  # a library may have replaced it with a private file of its own
    with open(tmp, "rb+") as f:
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException as e:
    with contextlib.suppress(FileNotFoundError):
      os.remove(tmp)
    _raise_if_disk_full(e, path)
    raise
  _fsync_dir(directory)


def _raise_if_disk_full(error: BaseException, path: str) -> None:
  """A write that failed for want of space, whoever wrote (Python, safetensors, TensorFlow,
  matplotlib), is the one DiskFullError naming the output."""
  full = errors.disk_full(error, where=path)
  if full is not None and full is not error:
    raise full from error


@contextlib.contextmanager
def output(path: str | os.PathLike) -> Iterator[None]:
  """A command's output (a directory, or a file with siblings such as `FILE.producer.json`):
  if the block fails, what it created there is removed (the whole directory when it was
  new; else the files that were not there before), so a failed command leaves what was there
  before and nothing else; a full disk is the one DiskFullError naming the output."""
  path = os.path.abspath(os.fspath(path))
  existed = os.path.lexists(path)
  before = _files(path) if existed and os.path.isdir(path) else set()
  try:
    yield
  except BaseException as e:
    if not existed and os.path.isdir(path):
      shutil.rmtree(path, ignore_errors=True)
    elif not existed:
      with contextlib.suppress(FileNotFoundError):
        os.remove(path)
    elif os.path.isdir(path):
      for name in sorted(_files(path) - before, reverse=True):
        target = os.path.join(path, name)
        if os.path.isdir(target):
          shutil.rmtree(target, ignore_errors=True)
        else:
          with contextlib.suppress(FileNotFoundError):
            os.remove(target)
    _raise_if_disk_full(e, path)
    raise


def _files(directory: str) -> set[str]:
  """Every path below `directory`, relative to it (directories included)."""
  out = set()
  for root, dirs, names in os.walk(directory):
    for name in dirs + names:
      out.add(os.path.relpath(os.path.join(root, name), directory))
  return out


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
  with writing(path) as tmp, open(tmp, "wb") as f:
    f.write(data)


def write_text(path: str | os.PathLike, text: str) -> None:
  write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj: Any, **dump_kwargs: Any) -> None:
  """`json.dump(obj, **dump_kwargs)` into `path`, atomically (serialised before anything is written)."""
  write_text(path, json.dumps(obj, **dump_kwargs))


@contextlib.contextmanager
def writing_dir(path: str | os.PathLike, tag: str | None = None) -> Iterator[str]:
  """Yields a temporary sibling directory that replaces `path` once the block succeeds.

  The temporary directory is `.tmp-TAG-RANDOM` (TAG defaults to the target's name).
  A failed block removes the temporary directory and leaves `path` as it was.
  An existing `path` is moved aside before the rename and deleted only after
  it, so no moment leaves neither version on disk.
  """
  path = os.path.abspath(os.fspath(path))
  directory = os.path.dirname(path)
  os.makedirs(directory, exist_ok=True)
  name = tag or os.path.basename(path)
  tmp = tempfile.mkdtemp(prefix=f".tmp-{name}-", dir=directory)
  try:
    yield tmp
    # What libraries wrote inside (safetensors creates its files 0600) gets the user's modes too.
    for root, dirs, names in os.walk(tmp):
      for name in dirs:
        _as_user_made(os.path.join(root, name), directory=True)
      for name in names:
        if not os.path.islink(os.path.join(root, name)):
          _as_user_made(os.path.join(root, name))
    _as_user_made(tmp, directory=True)
  except BaseException as e:
    shutil.rmtree(tmp, ignore_errors=True)
    _raise_if_disk_full(e, path)
    raise
  old = None
  if os.path.lexists(path):
    old = tempfile.mkdtemp(prefix=f".old-{name}-", dir=directory)
    os.rmdir(old)
    os.rename(path, old)
  os.rename(tmp, path)
  _fsync_dir(directory)
  if old:
    shutil.rmtree(old, ignore_errors=True)
