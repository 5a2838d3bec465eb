"""Allowed ranges of numbers: declared beside a field's definition, checked where the value enters.

    dropout_rate: float = dataclasses.field(default=0.1, metadata=ranges.meta("[0, 1)"))
    ranges.check("config.optimizer.learning_rate", -1.0, "(0, inf)")
      -> UsageError: config.optimizer.learning_rate=-1.0 is out of range: allowed (0, inf)

The interval is written as a mathematician writes it (`[` and `]` closed,
`(` and `)` open, `inf` unbounded), so the declaration is also the message.
NaN lies in no interval. A value that the program holds in a fixed dtype
declares it (`meta("[0, inf)", dtype="int32")`): a value that dtype cannot
hold (2**31 as int32, 1e39 as float32, 2.5 as an integer) is out of range
too, refused where it enters instead of wrapping round inside an array.
"""
from __future__ import annotations

import dataclasses
import math
import re
from typing import Any, Mapping

from t5tune import errors

# The dtypes a range may declare: (integer?, largest magnitude it holds).
DTYPES = {"int32": (True, 2**31 - 1), "int64": (True, 2**63 - 1),
          "float32": (False, 3.4028234663852886e38), "float64": (False, 1.7976931348623157e308)}
_SPEC = re.compile(r"^\s*([\[(])\s*([-+0-9.e]+|-inf)\s*,\s*([-+0-9.e]+|inf)\s*([\])])\s*$")


@dataclasses.dataclass(frozen=True)
class Interval:
  """A parsed interval spec such as "[0, 1)" or "(0, inf)"."""
  text: str
  low: float
  high: float
  low_closed: bool
  high_closed: bool
  dtype: str | None = None  # a key of DTYPES: the values must also fit it

  @classmethod
  def parse(cls, text: str, dtype: str | None = None) -> "Interval":
    m = _SPEC.match(text)
    if not m:
      raise ValueError(f"bad interval spec {text!r}: write e.g. '[0, 1)' or '(0, inf)'")
    if dtype is not None and dtype not in DTYPES:
      raise ValueError(f"bad dtype {dtype!r} for a range: one of {list(DTYPES)}")
    return cls(text=text.strip(), low=float(m.group(2)), high=float(m.group(3)),
               low_closed=m.group(1) == "[", high_closed=m.group(4) == "]", dtype=dtype)

  @property
  def allowed(self) -> str:
    """The interval as the messages name it: "[0, inf)", or "[0, inf) as int32"."""
    return f"{self.text} as {self.dtype}" if self.dtype else self.text

  def __contains__(self, value: Any) -> bool:
    if isinstance(value, bool):  # True is no number a user meant
      return False
    try:
      v = float(value)
    except (TypeError, ValueError, OverflowError):
      return False
    if math.isnan(v):
      return False
    if self.dtype is not None:
      integer, largest = DTYPES[self.dtype]
      if integer and not (isinstance(value, int) or v.is_integer()):
        return False
      if abs(v) > largest or (integer and abs(int(v)) > largest):
        return False
    above = v >= self.low if self.low_closed else v > self.low
    below = v <= self.high if self.high_closed else v < self.high
    return above and below


def meta(spec: str, dtype: str | None = None) -> Mapping[str, Interval]:
  """Field metadata declaring the allowed interval (for `dataclasses.field(metadata=...)`)."""
  return {"range": Interval.parse(spec, dtype)}


def of_field(cls: Any, name: str) -> Interval:
  """The interval dataclass `cls` declares for its field `name` (see `meta`)."""
  return {f.name: f for f in dataclasses.fields(cls)}[name].metadata["range"]


def problem(key: str, value: Any, spec: str | Interval) -> str | None:
  """"KEY=VALUE is out of range: allowed INTERVAL" when `value` lies outside `spec`, else None."""
  interval = spec if isinstance(spec, Interval) else Interval.parse(spec)
  if value is None or value in interval:
    return None
  return f"{key}={value} is out of range: allowed {interval.allowed}"


def check(key: str, value: Any, spec: str | Interval) -> None:
  """A UsageError naming `key`, `value` and the allowed interval when `value` lies outside it."""
  message = problem(key, value, spec)
  if message is not None:
    interval = spec if isinstance(spec, Interval) else Interval.parse(spec)
    raise errors.UsageError(message, fix=f"give a value in {interval.allowed}")


def check_fields(obj: Any, prefix: str) -> None:
  """Checks every dataclass field of `obj` that declares a range (see `meta`)."""
  for field in dataclasses.fields(obj):
    interval = field.metadata.get("range")
    if interval is not None:
      check(f"{prefix}{field.name}", getattr(obj, field.name), interval)
