"""Allowed ranges of numbers: declared beside a field's definition, checked where the value enters.

    dropout_rate: float = dataclasses.field(default=0.1, metadata=ranges.meta("[0, 1)"))
    ranges.check("config.optimizer.learning_rate", -1.0, "(0, inf)")
      -> UsageError: config.optimizer.learning_rate=-1.0 is out of range: allowed (0, inf)

The interval is written as a mathematician writes it (`[` and `]` closed,
`(` and `)` open, `inf` unbounded), so the declaration is also the message.
"""
from __future__ import annotations

import dataclasses
import math
import re
from typing import Any, Mapping

from t5tune import errors

_SPEC = re.compile(r"^\s*([\[(])\s*([-+0-9.e]+|-inf)\s*,\s*([-+0-9.e]+|inf)\s*([\])])\s*$")


@dataclasses.dataclass(frozen=True)
class Interval:
  """A parsed interval spec such as "[0, 1)" or "(0, inf)"."""
  text: str
  low: float
  high: float
  low_closed: bool
  high_closed: bool

  @classmethod
  def parse(cls, text: str) -> "Interval":
    m = _SPEC.match(text)
    if not m:
      raise ValueError(f"bad interval spec {text!r}: write e.g. '[0, 1)' or '(0, inf)'")
    return cls(text=text.strip(), low=float(m.group(2)), high=float(m.group(3)),
               low_closed=m.group(1) == "[", high_closed=m.group(4) == "]")

  def __contains__(self, value: Any) -> bool:
    try:
      v = float(value)
    except (TypeError, ValueError):
      return False
    if math.isnan(v):
      return False
    above = v >= self.low if self.low_closed else v > self.low
    below = v <= self.high if self.high_closed else v < self.high
    return above and below


def meta(spec: str) -> Mapping[str, Interval]:
  """Field metadata declaring the allowed interval (for `dataclasses.field(metadata=...)`)."""
  return {"range": Interval.parse(spec)}


def check(key: str, value: Any, spec: str | Interval) -> None:
  """A UsageError naming `key`, `value` and the allowed interval when `value` lies outside it."""
  interval = spec if isinstance(spec, Interval) else Interval.parse(spec)
  if value is None or value in interval:
    return
  raise errors.UsageError(f"{key}={value} is out of range: allowed {interval.text}",
                          fix=f"give a value in {interval.text}")


def check_fields(obj: Any, prefix: str) -> None:
  """Checks every dataclass field of `obj` that declares a range (see `meta`)."""
  for field in dataclasses.fields(obj):
    interval = field.metadata.get("range")
    if interval is not None:
      check(f"{prefix}{field.name}", getattr(obj, field.name), interval)
