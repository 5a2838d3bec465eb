"""Request bodies and their validation: the OpenAI completions fields t5tune honours, and /v1/score.

pydantic checks types strictly (a string where a number belongs is refused,
not coerced) and refuses unknown fields; `ApiError` turns the first problem
into a 400 whose message names the field. OpenAI fields that a seq2seq model
cannot honour are accepted only at their neutral value, so a client that
sends the default still works and one that relies on them is told.
"""
from __future__ import annotations

from typing import Any, Union

import pydantic

from t5tune import ranges
from t5tune.infer import decoding
from t5tune.infer import penalties

MAX_STOP = 4  # OpenAI's limit on stop sequences


class ApiError(Exception):
  """An error response: HTTP status, message, the offending field, OpenAI error type."""

  def __init__(self, status: int, message: str, *, param: str | None = None,
               kind: str = "invalid_request_error", headers: dict | None = None):
    super().__init__(message)
    self.status, self.message, self.param, self.kind = status, message, param, kind
    self.headers = headers or {}

  def body(self) -> dict:
    return {"error": {"message": self.message, "type": self.kind, "param": self.param,
                      "code": self.status}}


Fields = dict[str, Any]
Prompt = Union[str, Fields, list[Union[str, Fields]]]


class _Strict(pydantic.BaseModel):
  model_config = pydantic.ConfigDict(extra="forbid", strict=True)


class StreamOptions(_Strict):
  include_usage: bool = False


class CompletionRequest(_Strict):
  """POST /v1/completions (OpenAI's fields, plus method, top_k, num_beams, length_penalty,
  repetition_penalty, min_tokens, no_repeat_ngram_size, truncate)."""
  model: str | None = None
  prompt: Prompt
  # The decoding settings' ranges (dtype included) are DecodeOptions' (`check_ranges`).
  max_tokens: int = 16
  temperature: float = 1.0
  top_p: float = 1.0
  top_k: int = 0
  n: int = pydantic.Field(1, ge=1)
  stop: Union[str, list[str], None] = None
  seed: int | None = None
  stream: bool = False
  stream_options: StreamOptions | None = None
  logprobs: int | None = pydantic.Field(None, ge=0, le=5)
  num_beams: int = 1
  # A name in t5tune.infer.decoding.METHODS; default: "beam" when num_beams > 1,
  # else "sample" (temperature 0 is greedy).
  method: str | None = None
  length_penalty: float | None = None
  truncate: bool = False
  user: str | None = None  # accepted for compatibility; not used
  # t5tune.infer.penalties: OpenAI's two, and vLLM's names for transformers' two.
  frequency_penalty: float = 0.0
  presence_penalty: float = 0.0
  repetition_penalty: float = 1.0
  min_tokens: int = 0
  no_repeat_ngram_size: int = 0  # transformers'; not in vLLM
  # OpenAI fields without a seq2seq meaning here: only their neutral values.
  echo: bool = False
  best_of: int | None = None
  logit_bias: dict[str, float] | None = None
  suffix: str | None = None

  def check_ranges(self) -> None:
    """A 400 naming the first decoding setting outside the range DecodeOptions declares for it,
    in the dtype the decoding loop holds it in (NaN, 2**31 as int32 and 1e39 as float32 are
    outside): judged here, before the request's rows join a batch that one bad row would fail."""
    for name, option in _OPTION_OF.items():
      value = getattr(self, name)
      if name == "length_penalty" and value is None:
        continue
      message = ranges.problem(name, value, ranges.of_field(decoding.DecodeOptions, option))
      if message:
        raise ApiError(400, message, param=name)
    message = ranges.problem("seed", self.seed, decoding.SEED_RANGE)
    if message:
      raise ApiError(400, message, param="seed")

  def check_unsupported(self) -> None:
    neutral = {"echo": False, "suffix": None}
    for name, value in neutral.items():
      if getattr(self, name) != value:
        raise ApiError(400, f"{name}={getattr(self, name)!r} is not supported by t5tune serve",
                       param=name)
    if self.logit_bias:
      raise ApiError(400, "logit_bias is not supported by t5tune serve", param="logit_bias")
    if self.best_of not in (None, self.n):
      raise ApiError(400, f"best_of={self.best_of} is not supported (only best_of == n)",
                     param="best_of")

  def stops(self) -> list[str]:
    stops = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
    if len(stops) > MAX_STOP:
      raise ApiError(400, f"stop has {len(stops)} sequences; at most {MAX_STOP}", param="stop")
    if any(not s for s in stops):
      raise ApiError(400, "stop sequences must be non-empty strings", param="stop")
    return stops


# Request fields that are DecodeOptions fields (max_tokens is its max_decode_len).
_OPTION_OF = {"max_tokens": "max_decode_len", "temperature": "temperature", "top_p": "top_p",
              "top_k": "top_k", "num_beams": "num_beams", "length_penalty": "length_penalty",
              **{name: name for name in penalties.NEUTRAL}}


class ScoreRequest(_Strict):
  """POST /v1/score: log-likelihood of each candidate given each prompt (rank classification)."""
  model: str | None = None
  prompt: Prompt
  candidates: Union[list[str], list[list[str]]]
  truncate: bool = False


def parse(model_cls: type[pydantic.BaseModel], body: bytes):
  """The validated request, or ApiError(400) naming the first bad field."""
  try:
    return model_cls.model_validate_json(body)
  except pydantic.ValidationError as e:
    raise ApiError(400, describe(e.errors()[0]), param=_field(e.errors()[0])) from None


def _field(err: dict) -> str | None:
  # Union members add their type name to the location; keep only the field path.
  parts = [str(p) for p in err.get("loc", ()) if isinstance(p, int) or "[" not in str(p)
           and p not in ("str", "int", "float", "bool", "list", "dict", "function-after")]
  return ".".join(parts) or None


def describe(err: dict) -> str:
  field = _field(err)
  kind = err.get("type", "")
  if kind == "json_invalid":
    return f"the request body is not valid JSON ({err.get('ctx', {}).get('error', err['msg'])})"
  if kind == "extra_forbidden":
    return f"unknown field {field!r}"
  if kind == "missing":
    return f"missing required field {field!r}"
  if kind == "model_type":
    return "the request body must be a JSON object"
  return f"{field}: {err['msg']}" if field else err["msg"]
