"""Record cleaning: field checks, empty/invalid removal, exact and normalised dedup, counted.

Every record that does not reach the task is counted under a reason in a
`collections.Counter` (`bad_json`, `missing_field`, `wrong_type`,
`empty_field`, `empty_options`, `invalid`, `duplicate_exact`,
`duplicate_normalized`, `duplicate_near`, `too_long_inputs`,
`too_long_targets`), so the
quality report and the log can say where the data went.

Deduplication keys on all the task's fields (instruction, input, output for
instruction data): `exact` compares them as written; `normalized` also drops
records equal after lower-casing, removing punctuation and collapsing
whitespace; `near` (or `near:0.85`, a threshold) also drops records whose
character-shingle Jaccard similarity to a kept one reaches the threshold
(default 0.8).

Near duplicates are found with MinHash/LSH (`datasketch`, the maintained
library for it) over character shingles: `Index`, `find_pairs` and
`near_dedup`. Every LSH candidate is checked with the exact Jaccard
similarity of the two shingle sets, so a reported pair is never an LSH false
positive and its similarity is exact; the index is built at a lower
threshold than the one asked for (`_LSH_SLACK`), trading more exact checks
for recall at the threshold itself. Shingles are character 5-grams of the
normalised text: robust to small edits in short instructions, where word
shingles would leave too few to compare. A record's text is its fields (all
but `options`, which many records share) joined by newlines.
"""
from __future__ import annotations

import collections
import dataclasses
import re
import string
from typing import Any, Callable, Hashable, Iterable, Mapping, Sequence

from t5tune import errors
from t5tune.data import sources
from t5tune.data import templates as templates_lib

DEDUP_MODES = (None, "exact", "normalized", "near")
BAD_RECORD_MODES = ("raise", "skip")

NEAR_THRESHOLD = 0.8
NEAR_NUM_PERM = 128
SHINGLE_CHARS = 5
NEAR_REASON = "duplicate_near"
# The LSH index is built at threshold * _LSH_SLACK: at the asked threshold its
# candidate probability is then close to 1 (see the module docstring).
_LSH_SLACK = 0.75
_PUNCT = re.compile("[" + re.escape(string.punctuation) + "]")
_SPACE = re.compile(r"\s+")


class BadRecordError(errors.InputError):
  """A malformed record, named by file and line (or source and index): the user's data to fix."""


def normalize(text: str) -> str:
  """Case, whitespace and punctuation-insensitive form of a text."""
  return _SPACE.sub(" ", _PUNCT.sub(" ", text.lower())).strip()


def extract(location: str, raw: Mapping[str, Any],
            fields: Mapping[str, str | Callable[[Mapping[str, Any]], Any]]
            ) -> tuple[dict[str, Any] | None, str | None, str | None]:
  """Maps a raw record to the task's fields: (record, None, None) or (None, reason, message)."""
  record = {}
  for name, key in fields.items():
    if callable(key):
      try:
        value = key(raw)
      except (KeyError, IndexError, TypeError, ValueError) as e:
        return None, "missing_field", f"{location}: field {name!r}: {type(e).__name__}: {e}"
    else:
      if key not in raw or raw[key] is None:
        return None, "missing_field", (
            f"{location}: required field {key!r}" +
            (f" (for {name!r})" if key != name else "") +
            f" is missing; the record has {sorted(raw)}")
      value = raw[key]
    if name == templates_lib.OPTIONS_FIELD:
      if isinstance(value, str) and "|||" in value:
        value = value.split("|||")
      if not isinstance(value, (list, tuple)) or not all(
          isinstance(o, (str, int, float)) and not isinstance(o, bool) for o in value):
        return None, "wrong_type", (
            f"{location}: field {name!r} must be a list of strings (or a"
            f" '|||'-separated string), got {_describe(value)}")
      value = [str(o) for o in value]
    elif isinstance(value, (str, int, float)) and not isinstance(value, bool):
      value = str(value)
    elif isinstance(value, bool):
      value = str(value).lower()
    else:
      return None, "wrong_type", (
          f"{location}: field {name!r} must be a string or number, got"
          f" {type(value).__name__}")
    record[name] = value
  return record, None, None


def _describe(value) -> str:
  """What a wrong-typed field holds, as the user wrote it (a plain string is shown)."""
  if isinstance(value, str):
    return f"the string {value[:40]!r} (no '|||' separator)"
  return type(value).__name__


def read_records(source: sources.Source, split: str,
                 fields: Mapping[str, Any], on_bad_record: str,
                 counts: collections.Counter,
                 validate_fn: Callable[[Mapping[str, Any]], str | None] | None = None,
                 ) -> list[dict[str, Any]]:
  """Reads, checks and cleans one split; removals are added to `counts`."""
  if on_bad_record not in BAD_RECORD_MODES:
    raise errors.UsageError(f"on_bad_record={on_bad_record!r} must be one of {BAD_RECORD_MODES}")
  out = []
  for location, raw in source.records(split):
    counts["read"] += 1
    if isinstance(raw, sources.BadRecord):
      reason, message, record = raw.reason, raw.message, None
    else:
      record, reason, message = extract(location, raw, fields)
    if record is not None:
      reason, message = _invalid(location, record, validate_fn)
    if reason is not None:
      if on_bad_record == "raise" and reason not in ("empty_field", "empty_options", "invalid"):
        raise BadRecordError(
            message + "; fix the record or register the task with on_bad_record='skip'")
      counts[reason] += 1
      continue
    out.append(record)
  return out


def _invalid(location, record, validate_fn):
  for name, value in record.items():
    if name == templates_lib.OPTIONS_FIELD:
      if not value:
        return "empty_options", f"{location}: the options list is empty"
    elif not value.strip():
      return "empty_field", f"{location}: field {name!r} is empty"
  if validate_fn is not None:
    problem = validate_fn(record)
    if problem:
      return "invalid", f"{location}: {problem}"
  return None, None


def check_dedup(mode: str | None) -> float | None:
  """Validates a dedup mode; returns the near-duplicate threshold it asks for (or None)."""
  if isinstance(mode, str) and mode.startswith("near:"):
    try:
      threshold = float(mode[len("near:"):])
    except ValueError:
      threshold = -1.0
    if 0.0 < threshold <= 1.0:
      return threshold
  elif mode in DEDUP_MODES:
    return NEAR_THRESHOLD if mode == "near" else None
  raise errors.UsageError(f"dedup={mode!r} must be one of {DEDUP_MODES} or 'near:T' with 0 < T <= 1")


def dedup(records: Iterable[dict[str, Any]], mode: str | None,
          counts: collections.Counter) -> list[dict[str, Any]]:
  """Drops repeated records (first one kept), counting exact, normalised and near repeats."""
  near = check_dedup(mode)
  if mode is None:
    return list(records)
  seen_exact, seen_norm, out = set(), set(), []
  for record in records:
    key = content_key(record)
    if key in seen_exact:
      counts["duplicate_exact"] += 1
      continue
    seen_exact.add(key)
    if mode != "exact":
      norm = tuple(normalize(_text(v)) for _, v in sorted(record.items()))
      if norm in seen_norm:
        counts["duplicate_normalized"] += 1
        continue
      seen_norm.add(norm)
    out.append(record)
  if near is not None:
    out = near_dedup(out, near, counts)
  return out


def _text(value) -> str:
  return "\x1e".join(value) if isinstance(value, list) else value


def content_key(record: Mapping[str, Any]) -> str:
  """A stable identity for a record: a hash of its fields (used to seed templates)."""
  parts = [f"{k}={_text(v)}" for k, v in sorted(record.items())]
  return format(templates_lib.stable_hash(*parts), "016x")


def length_filter(examples: Sequence[dict[str, Any]], count_tokens: Callable[[str], int],
                  max_input_tokens: int | None, max_target_tokens: int | None,
                  counts: collections.Counter) -> list[dict[str, Any]]:
  """Drops rendered examples whose inputs or targets are longer than the limits, counted."""
  if max_input_tokens is None and max_target_tokens is None:
    return list(examples)
  out = []
  for ex in examples:
    if max_input_tokens is not None and count_tokens(ex["inputs"]) > max_input_tokens:
      counts["too_long_inputs"] += 1
    elif max_target_tokens is not None and count_tokens(ex["targets"]) > max_target_tokens:
      counts["too_long_targets"] += 1
    else:
      out.append(ex)
  return out


def record_text(record: Mapping[str, Any]) -> str:
  """The text a record is compared by: its fields but `options`, in field order."""
  return "\n".join(str(v) for k, v in record.items() if k != templates_lib.OPTIONS_FIELD)


def shingles(text: str, n: int = SHINGLE_CHARS) -> set[bytes]:
  """Character n-grams of the normalised text (the whole text when shorter)."""
  norm = normalize(text)
  if len(norm) <= n:
    return {norm.encode("utf-8")}
  return {norm[i:i + n].encode("utf-8") for i in range(len(norm) - n + 1)}


def jaccard(a: set, b: set) -> float:
  return len(a & b) / len(a | b) if (a or b) else 1.0


@dataclasses.dataclass(frozen=True)
class Pair:
  """Two near-duplicate items (keys as given) and their exact shingle Jaccard similarity."""
  first: Hashable
  second: Hashable
  similarity: float


def check_threshold(threshold: float) -> None:
  """A near-duplicate (Jaccard) threshold must be in (0, 1]."""
  if not 0.0 < threshold <= 1.0:
    raise errors.UsageError(f"near-duplicate threshold {threshold} is not in (0, 1]",
                            where="--threshold", fix="pass e.g. 0.8")


class Index:
  """An LSH index of shingle sets; `add` returns the earlier items similar to the new one."""

  def __init__(self, threshold: float = NEAR_THRESHOLD, num_perm: int = NEAR_NUM_PERM,
               seed: int = 1):
    import datasketch  # pylint: disable=g-import-not-at-top
    check_threshold(threshold)
    self.threshold = threshold
    self.num_perm = num_perm
    self.seed = seed
    self._datasketch = datasketch
    self._lsh = datasketch.MinHashLSH(threshold=max(0.05, threshold * _LSH_SLACK),
                                      num_perm=num_perm)
    self._shingles: dict[int, set[bytes]] = {}
    self._keys: list[Hashable] = []

  def similar(self, text: str) -> list[tuple[Hashable, float]]:
    """(key, similarity) of indexed items with similarity >= threshold, most similar first."""
    sh, mh = self._prepare(text)
    return self._matches(sh, mh)

  def _prepare(self, text):
    sh = shingles(text)
    mh = self._datasketch.MinHash(num_perm=self.num_perm, seed=self.seed)
    mh.update_batch(sorted(sh))
    return sh, mh

  def _matches(self, sh, mh):
    out = []
    for i in self._lsh.query(mh):
      sim = jaccard(sh, self._shingles[i])
      if sim >= self.threshold:
        out.append((self._keys[i], sim))
    return sorted(out, key=lambda x: -x[1])

  def add(self, key: Hashable, text: str, *, insert: bool = True) -> list[tuple[Hashable, float]]:
    """Matches `text` against the index, then (if `insert`) indexes it under `key`."""
    sh, mh = self._prepare(text)
    found = self._matches(sh, mh)
    if insert:
      i = len(self._keys)
      self._keys.append(key)
      self._shingles[i] = sh
      self._lsh.insert(i, mh)
    return found


def find_pairs(items: Iterable[tuple[Hashable, str]], threshold: float = NEAR_THRESHOLD,
               num_perm: int = NEAR_NUM_PERM) -> list[Pair]:
  """Every pair of items whose shingle Jaccard similarity is >= threshold (earlier item first)."""
  index = Index(threshold, num_perm)
  pairs = []
  for key, text in items:
    pairs.extend(Pair(other, key, sim) for other, sim in index.add(key, text))
  return pairs


def near_dedup(records: Sequence[dict[str, Any]], threshold: float,
               counts: collections.Counter) -> list[dict[str, Any]]:
  """Drops each record that is a near-duplicate of an earlier kept one, counted as `duplicate_near`."""
  index = Index(threshold)
  out = []
  for record in records:
    text = record_text(record)
    if index.similar(text):
      counts[NEAR_REASON] += 1
      continue
    index.add(len(out), text)
    out.append(record)
  return out
