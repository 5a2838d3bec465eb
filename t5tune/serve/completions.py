"""From validated requests to batcher rows, and from finished rows to OpenAI-shaped results.

`Service` holds what every request needs (engine, batcher, vocabulary,
template, limits). A completion request becomes one row per (prompt, choice)
in OpenAI's order (choice index = prompt index * n + j), decoded by the
request's `method` (any the engine serves: every method in
`t5tune.infer.decoding.METHODS` when the server started). Row i's key is
`decoding.row_key(seed, i)`, the key `t5tune.generate(rng=seed)` gives its
input i, so a seed reproduces both. Stop sequences are cut on the text, on the host.
"""
from __future__ import annotations

import dataclasses
import os
import threading
from typing import Any, Sequence

import numpy as np

from t5tune.data import templates as templates_lib
from t5tune.infer import api
from t5tune.infer import decoding
from t5tune.infer import penalties
from t5tune.serve import batcher as batcher_lib
from t5tune.serve import engine as engine_lib
from t5tune.serve import metrics as metrics_lib
from t5tune.serve import protocol


@dataclasses.dataclass
class Limits:
  max_n: int = 8
  max_body_bytes: int = 1 << 20
  request_timeout_s: float = 60.0


@dataclasses.dataclass
class Service:
  """Everything the endpoints share. `ready` is set once every bucket is compiled."""
  engine: engine_lib.Engine
  batcher: batcher_lib.Batcher
  vocabulary: Any
  model_name: str
  metrics: metrics_lib.Metrics
  limits: Limits
  template: str | templates_lib.Template | None = None  # a string, or a registered template
  options_style: templates_lib.OptionsStyle | None = None  # a registered template's task's
  api_key: str | None = None
  ready: threading.Event = dataclasses.field(default_factory=threading.Event)
  draining: threading.Event = dataclasses.field(default_factory=threading.Event)
  startup_error: str | None = None

  @property
  def buckets(self) -> engine_lib.Buckets:
    return self.engine.buckets

  # -- inputs --------------------------------------------------------------

  def render(self, prompt: protocol.Prompt) -> list[str]:
    """The prompt texts of a request (fields rendered with the server's --template)."""
    items = prompt if isinstance(prompt, list) else [prompt]
    if not items:
      raise protocol.ApiError(400, "prompt is an empty list", param="prompt")
    texts = []
    for i, item in enumerate(items):
      where = f"prompt[{i}]" if isinstance(prompt, list) else "prompt"
      if isinstance(item, str):
        texts.append(item)
        continue
      if self.template is None:
        raise protocol.ApiError(400, f"{where} is an object of fields, but the server has no"
                                " --template to render it; send the prompt text", param=where)
      texts.append(self._render_fields(item, where))
    return texts

  def _render_fields(self, fields: dict, where: str) -> str:
    if isinstance(self.template, templates_lib.Template):
      fmt = self.template.inputs  # a registered template: its targets are not the prompt
    else:
      fmt = self.template.replace("\\n", "\n").replace("\\t", "\t")
    needed = [f for f in templates_lib.placeholders(fmt) if f != templates_lib.OPTIONS_PLACEHOLDER]
    if templates_lib.OPTIONS_PLACEHOLDER in templates_lib.placeholders(fmt):
      needed.append(templates_lib.OPTIONS_FIELD)
    missing = [f for f in needed if f not in fields]
    if missing:
      raise protocol.ApiError(400, f"{where} lacks field {missing[0]!r} that the server's template"
                              f" {fmt!r} needs", param=f"{where}.{missing[0]}")
    options = fields.get(templates_lib.OPTIONS_FIELD, [])
    if not (isinstance(options, list) and all(isinstance(o, str) for o in options)):
      raise protocol.ApiError(400, f"{where}.options must be a list of strings",
                              param=f"{where}.options")
    template = templates_lib.Template("serve", fmt, "")
    return templates_lib.render(template, fields,
                                 self.options_style or templates_lib.OptionsStyle())[0]

  def encode(self, texts: Sequence[str], *, limit: int, limit_name: str, param: str,
             truncate: bool) -> list[np.ndarray]:
    """EOS-terminated ids per text; too long is a 400 naming the limit, unless truncating."""
    eos = self.vocabulary.eos_id
    out = []
    for i, text in enumerate(texts):
      ids = list(self.vocabulary.encode(text))
      if len(ids) + 1 > limit:
        if not truncate:
          raise protocol.ApiError(
              400, f"{param}[{i}] is {len(ids) + 1} tokens (EOS included); the limit is"
              f" {limit_name}={limit}: shorten it, or send \"truncate\": true",
              param=param)
        ids = ids[:limit - 1]
      out.append(np.asarray(ids + [eos], np.int32))
    return out

  def check_model(self, name: str | None) -> None:
    if name not in (None, "", self.model_name):
      raise protocol.ApiError(404, f"model {name!r} is not served here; this server serves"
                              f" {self.model_name!r}", param="model", kind="model_not_found")

  # -- completions -----------------------------------------------------------

  def completion_works(self, req: protocol.CompletionRequest, prompt_ids: list[np.ndarray]
                       ) -> list[batcher_lib.Work]:
    """Rows of a completion request, in choice order; raises ApiError for a bad combination."""
    b = self.buckets
    if req.max_tokens > b.max_decode_len:
      raise protocol.ApiError(400, f"max_tokens={req.max_tokens} is over the limit"
                              f" max_tokens={b.max_decode_len} (the largest compiled decode"
                              " length)", param="max_tokens")
    if req.n > self.limits.max_n:
      raise protocol.ApiError(400, f"n={req.n} is over the limit max_n={self.limits.max_n}",
                              param="n")
    method = self.method_of(req)
    rows = len(prompt_ids) * (1 if method in self.engine.searches else req.n)
    if rows > self.batcher.max_queue:
      raise protocol.ApiError(400, f"the request has {rows} rows (prompts x n); the limit is"
                              f" max_queue={self.batcher.max_queue}", param="prompt")
    out_len = engine_lib.Buckets.fit(b.decode_lengths, req.max_tokens)
    works = []
    if method in self.engine.searches:
      if req.num_beams not in b.beam_widths:
        raise protocol.ApiError(400, f"num_beams={req.num_beams} is not served; compiled beam"
                                f" widths: {list(b.beam_widths) or 'none'} (--beam_widths)",
                                param="num_beams")
      if req.length_penalty not in (None, self.engine.length_penalty):
        raise protocol.ApiError(400, f"length_penalty={req.length_penalty} differs from the"
                                f" server's {self.engine.length_penalty} (--length_penalty)",
                                param="length_penalty")
      if req.stream:
        raise protocol.ApiError(400, f"stream is not supported with method={method!r}",
                                param="stream")
      if req.logprobs is not None:
        raise protocol.ApiError(400, f"logprobs is not supported with method={method!r} (a"
                                " search scores whole sequences); greedy and sampled rows"
                                " return it", param="logprobs")
      for name, off in penalties.NEUTRAL.items():
        if getattr(req, name) != off:
          raise protocol.ApiError(400, f"{name} is not supported with method={method!r} here"
                                  " (the server's search programs are compiled without"
                                  " penalties; greedy and sampled rows take it)", param=name)
      if req.n > req.num_beams:
        raise protocol.ApiError(400, f"n={req.n} is more than num_beams={req.num_beams}",
                                param="n")
      for ids in prompt_ids:
        works.append(batcher_lib.Work("beam", self._input_bucket(ids), out_len, ids,
                                      num_beams=req.num_beams, method=method))
      return works
    if req.num_beams > 1:
      raise protocol.ApiError(400, f"num_beams={req.num_beams} needs a search method (one of"
                              f" {list(self.engine.searches)}); method={method!r} is not one",
                              param="num_beams")
    seed = req.seed if req.seed is not None else int.from_bytes(os.urandom(4), "little") >> 1
    for i, ids in enumerate(prompt_ids):
      for j in range(req.n):
        row = engine_lib.DecodeRow(
            tokens=ids, max_tokens=req.max_tokens, temperature=req.temperature,
            top_k=req.top_k, top_p=req.top_p, key=decoding.row_key(seed, i * req.n + j),
            top_logprobs=bool(req.logprobs), method=method,
            **{name: getattr(req, name) for name in penalties.NEUTRAL})
        works.append(batcher_lib.Work("decode", self._input_bucket(ids), out_len, row))
    return works

  def method_of(self, req: protocol.CompletionRequest) -> str:
    """The request's decoding method; a 400 naming the served ones when it is not served."""
    if req.method is None:
      return "beam" if req.num_beams > 1 else "sample"
    served = [m.name for m in self.engine.methods] + list(self.engine.searches)
    if req.method not in served:
      raise protocol.ApiError(400, f"method={req.method!r} is not served; methods: {served}"
                              " (a method registered in t5tune.infer.decoding before the server"
                              " starts, e.g. by --module, is served)", param="method")
    return req.method

  def _input_bucket(self, ids: np.ndarray) -> int:
    return engine_lib.Buckets.fit(self.buckets.input_lengths, len(ids))

  def text_of(self, tokens: np.ndarray, stops: Sequence[str],
              max_tokens: int | None = None) -> tuple[str, str, int]:
    """(text, finish_reason, completion tokens) of one row's generated ids.

    A row without EOS generated `max_tokens` tokens (pad ids included: a model
    may emit id 0 as a token), or fewer if its batch stopped earlier.
    """
    ids = [int(t) for t in tokens]
    eos = self.vocabulary.eos_id
    ended = eos in ids
    n_tokens = ids.index(eos) + 1 if ended else min(len(ids), max_tokens or len(ids))
    text = api.decode_tokens(self.vocabulary, np.asarray(ids, np.int32))
    cut = cut_at_stop(text, stops)
    if cut is not None:
      return text[:cut], "stop", n_tokens
    return text, "stop" if ended else "length", n_tokens

  def logprobs_of(self, progress: engine_lib.Progress, row: int, n_top: int) -> dict:
    """OpenAI's legacy `logprobs` object for one row (tokens up to, not including, EOS).

    `top_logprobs` maps each alternative's text to its log-probability. Two
    token ids can decode to one text (a byte vocabulary's partial UTF-8
    bytes, SentencePiece's pieces with and without the word marker): such an
    alternative is keyed "token_id:N" instead (vLLM's spelling), so no entry
    is lost and a text key never shows another token's value than the chosen
    token's under the chosen text. `token_ids` gives the chosen ids beside
    `tokens`.
    """
    ids = [int(t) for t in progress.tokens[row]]
    eos = self.vocabulary.eos_id
    n = ids.index(eos) if eos in ids else sum(1 for t in ids if t != 0)
    piece = lambda i: self.vocabulary.decode([i])
    tokens = [piece(i) for i in ids[:n]]
    offsets, pos = [], 0
    for tok in tokens:
      offsets.append(pos)
      pos += len(tok)
    top = None
    if n_top and progress.top_ids is not None:
      top = [_top_entries(ids[s], [int(i) for i in progress.top_ids[row, s, :n_top]],
                          progress.top_logprobs[row, s, :n_top], piece) for s in range(n)]
    return {"tokens": tokens, "token_logprobs": [float(x) for x in progress.logprobs[row, :n]],
            "top_logprobs": top, "text_offset": offsets, "token_ids": ids[:n]}


def _top_entries(chosen: int, top_ids: list[int], top_logprobs, piece) -> dict[str, float]:
  """One step's alternatives keyed by text, or by "token_id:N" where another id (an alternative
  or the chosen token) has the same text."""
  ids_of_text: dict[str, set[int]] = {}
  for i in {chosen, *top_ids}:
    ids_of_text.setdefault(piece(i), set()).add(i)
  return {(piece(i) if len(ids_of_text[piece(i)]) == 1 else f"token_id:{i}"): float(lp)
          for i, lp in zip(top_ids, top_logprobs)}


def cut_at_stop(text: str, stops: Sequence[str]) -> int | None:
  """Index of the earliest stop sequence in text, or None."""
  hits = [i for i in (text.find(s) for s in stops) if i >= 0]
  return min(hits) if hits else None


class StreamText:
  """Incremental text of one streamed choice: emits only what can no longer change.

  Decoding a longer prefix of ids may rewrite the end of the text (a partial
  UTF-8 byte sequence, a SentencePiece word boundary) and a stop sequence may
  still be completing, so the last `holdback` characters wait for the next chunk.
  """

  def __init__(self, service: Service, stops: Sequence[str]):
    self.service, self.stops = service, list(stops)
    self.holdback = max((len(s) for s in self.stops), default=1) - 1
    self.emitted = ""
    self.stopped = False

  def update(self, tokens: np.ndarray) -> str:
    if self.stopped:
      return ""
    text, _, _ = self.service.text_of(tokens, [])
    cut = cut_at_stop(text, self.stops)
    if cut is not None:
      self.stopped = True
      text = text[:cut]
    else:
      text = text[:max(0, len(text) - self.holdback)]
      text = text.rstrip("\ufffd")
    return self._advance(text)

  def finish(self, text: str) -> str:
    self.stopped = True
    return self._advance(text)

  def _advance(self, text: str) -> str:
    if not text.startswith(self.emitted) or len(text) <= len(self.emitted):
      return ""
    delta = text[len(self.emitted):]
    self.emitted = text
    return delta
