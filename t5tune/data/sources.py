"""Where raw instruction records come from: JSONL, CSV, TSV files, TFDS, Python functions.

Every source yields, per split, `(location, record)` pairs where `location`
names the record for error messages (`data/train.jsonl:17`,
`tfds:glue/mnli/train#3`, `my_fn[train]#5`) and `record` is a dict, or a
`BadRecord` when the raw line could not be parsed. What counts as a good
record (required fields, types) is decided by the task (`t5tune.data.tasks`),
which raises or, with `on_bad_record='skip'`, skips and counts.

    sources.jsonl({"train": "data/train-*.jsonl", "validation": "data/dev.jsonl"})
    sources.csv({"train": "a.csv"}); sources.tsv({"train": ["a.tsv", "b.tsv"]})
    sources.tfds("glue/rte:2.0.0", data_dir="~/tensorflow_datasets")  # offline
    sources.function({"train": list_of_dicts, "test": lambda: gen()})

A plain mapping `{split: path_or_glob}` passed as a task's `source=` is read
by file extension (`.jsonl`/`.json`, `.csv`, `.tsv`).
"""
from __future__ import annotations

import csv as csv_lib
import dataclasses
import glob
import json
import os
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

from t5tune import errors

Record = dict[str, Any]


@dataclasses.dataclass(frozen=True)
class BadRecord:
  """A raw record that could not be parsed; `reason` is the counter key."""
  reason: str
  message: str


class Source:
  """Base class: a set of splits, each an iterator of (location, record)."""

  def __init__(self, splits: Sequence[str]):
    self.splits = tuple(splits)

  def records(self, split: str) -> Iterator[tuple[str, Record | BadRecord]]:
    raise NotImplementedError

  def describe(self) -> str:
    return type(self).__name__


def _expand(patterns: str | Sequence[str], split: str) -> list[str]:
  if isinstance(patterns, (str, os.PathLike)):
    patterns = [patterns]
  files = []
  for pattern in patterns:
    matched = sorted(glob.glob(os.path.expanduser(str(pattern))))
    if not matched:
      raise errors.MissingInputError(
          f"split {split!r}: no file matches {str(pattern)!r}", where=f"cwd {os.getcwd()}",
          fix="check the task's source= path or glob (relative paths are from the cwd)")
    files.extend(matched)
  return files


class FileSource(Source):
  """JSONL, CSV or TSV files: one glob (or a list) per split, read in sorted order."""

  def __init__(self, files: Mapping[str, str | Sequence[str]], fmt: str):
    if fmt not in ("jsonl", "csv", "tsv"):
      raise errors.UsageError(f"file format {fmt!r} is not one of jsonl, csv, tsv")
    super().__init__(list(files))
    self.files = dict(files)
    self.fmt = fmt

  def describe(self) -> str:
    return f"{self.fmt} files {self.files}"

  def records(self, split):
    for path in _expand(self.files[split], split):
      try:
        if self.fmt == "jsonl":
          yield from _read_jsonl(path)
        else:
          yield from _read_delimited(path, "," if self.fmt == "csv" else "\t")
      except UnicodeDecodeError as e:
        raise errors.InputError(f"{path} is not UTF-8 ({e.reason} at byte {e.start} of a"
                                " block)", where=path, fix="save the file as UTF-8") from None


def _read_jsonl(path: str):
  # utf-8-sig: a byte-order mark (as some Windows editors write) is not part of line 1.
  with open(path, encoding="utf-8-sig") as f:
    for line_no, line in enumerate(f, start=1):
      location = f"{path}:{line_no}"
      if not line.strip():
        continue
      try:
        record = json.loads(line)
      except json.JSONDecodeError as e:
        yield location, BadRecord("bad_json", f"{location}: not valid JSON ({e.msg} at column {e.colno})")
        continue
      if not isinstance(record, dict):
        yield location, BadRecord(
            "bad_json", f"{location}: a JSON object is expected, got {type(record).__name__}")
        continue
      yield location, record


def _read_delimited(path: str, delimiter: str):
  with open(path, encoding="utf-8-sig", newline="") as f:
    quoting = csv_lib.QUOTE_MINIMAL if delimiter == "," else csv_lib.QUOTE_NONE
    reader = csv_lib.DictReader(f, delimiter=delimiter, quoting=quoting)
    try:
      for row in reader:
        location = f"{path}:{reader.line_num}"
        if None in row or any(v is None for v in row.values()):
          yield location, BadRecord(
              "bad_columns", f"{location}: {len(reader.fieldnames or [])} columns"
              f" expected ({reader.fieldnames}), the row has a different number")
          continue
        yield location, dict(row)
    except csv_lib.Error as e:
      location = f"{path}:{reader.line_num}"
      yield location, BadRecord("bad_csv", f"{location}: {e}")


def jsonl(files: Mapping[str, str | Sequence[str]]) -> FileSource:
  return FileSource(files, "jsonl")


def csv(files: Mapping[str, str | Sequence[str]]) -> FileSource:
  return FileSource(files, "csv")


def tsv(files: Mapping[str, str | Sequence[str]]) -> FileSource:
  return FileSource(files, "tsv")


def from_files(files: Mapping[str, str | Sequence[str]]) -> FileSource:
  """A FileSource whose format is read from the first file's extension."""
  first = next(iter(files.values()))
  first = first if isinstance(first, str) else first[0]
  ext = first.rsplit(".", 1)[-1].lower()
  fmt = {"jsonl": "jsonl", "json": "jsonl", "csv": "csv", "tsv": "tsv"}.get(ext)
  if fmt is None:
    raise errors.UsageError(
        f"cannot tell the format of {first!r} from its extension; use"
        f" t5tune.data.sources.jsonl/csv/tsv explicitly")
  return FileSource(files, fmt)


class FunctionSource(Source):
  """Records from Python: per split an iterable of dicts or a callable returning one."""

  def __init__(self, splits: Mapping[str, Iterable[Record] | Callable[[], Iterable[Record]]]):
    super().__init__(list(splits))
    self.fns = dict(splits)

  def records(self, split):
    fn = self.fns[split]
    items = fn() if callable(fn) else fn
    name = getattr(fn, "__name__", "records") if callable(fn) else "records"
    for i, record in enumerate(items):
      location = f"{name}[{split}]#{i}"
      if not isinstance(record, Mapping):
        yield location, BadRecord(
            "wrong_type", f"{location}: a dict is expected, got {type(record).__name__}")
        continue
      yield location, dict(record)


def function(splits) -> FunctionSource:
  return FunctionSource(splits)


class TfdsSource(Source):
  """A TFDS dataset read offline from `data_dir` through `seqio.TfdsDataSource`."""

  def __init__(self, name: str, data_dir: str | None = None,
               splits: Sequence[str] | Mapping[str, str] | None = None):
    import seqio  # pylint: disable=g-import-not-at-top
    self.name = name
    self.data_dir = data_dir  # None: TFDS's default ($TFDS_DATA_DIR, else ~/tensorflow_datasets)
    self.tfds_source = seqio.TfdsDataSource(
        tfds_name=name, tfds_data_dir=os.path.expanduser(data_dir) if data_dir else None,
        splits=splits)
    super().__init__(self.tfds_source.splits)

  def describe(self) -> str:
    return f"tfds {self.name}"

  def records(self, split):
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
    ds = self.tfds_source.get_dataset(split=split, shuffle=False)
    for i, ex in enumerate(tfds.as_numpy(ds)):
      yield f"tfds:{self.name}/{split}#{i}", {k: _to_python(v) for k, v in ex.items()}


def _to_python(value):
  if isinstance(value, bytes):
    return value.decode("utf-8")
  if hasattr(value, "tolist"):
    value = value.tolist()
  if isinstance(value, list):
    return [_to_python(v) for v in value]
  return value


def tfds(name: str, data_dir: str | None = None, splits=None) -> TfdsSource:
  return TfdsSource(name, data_dir=data_dir, splits=splits)


def as_source(spec) -> Source:
  """A Source from a Source, or a {split: files} mapping, or a {split: records} mapping."""
  if isinstance(spec, Source):
    return spec
  if isinstance(spec, Mapping):
    values = list(spec.values())
    if values and all(isinstance(v, (str, os.PathLike)) or (
        isinstance(v, (list, tuple)) and v and all(isinstance(x, str) for x in v))
                      for v in values):
      return from_files(spec)
    return FunctionSource(spec)
  raise errors.UsageError(
      f"source= must be a t5tune.data.sources.Source or a {{split: files}} /"
      f" {{split: records}} mapping, got {type(spec).__name__}")
