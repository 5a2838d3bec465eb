"""The device side of the server: a fixed set of compiled shapes, and batched decoding and scoring on them.

Every device call has a shape from `Buckets`: a batch size, an input length
and a decode (or target) length, each from a short declared list. `warm_up`
compiles every combination before the server reports ready, so serving never
compiles (`compilations()` counts XLA compilations for /metrics and the tests).

Decoding is `t5tune.infer.decoding`'s one sampling loop, run here in chunks
(`sample_steps` up to a step `until`) so the host can stream each chunk's
tokens and stop rows whose client went away. Temperature, top-k, top-p, the
token limit and the method are per-row arrays, so requests with different
settings share one batch and one compiled program; every token-rule method in
`decoding.METHODS` when the Engine is built is in that program. Sampled rows
use `decoding.row_key`, so greedy rows equal `t5tune.generate` token for token
and sampled rows equal it with the same seed. Search methods (beam) and
scoring call `t5tune.infer` as they are. This module keeps only the shapes.
"""
from __future__ import annotations

import dataclasses
import functools
import threading
from typing import Callable, Sequence

import jax
import numpy as np
from flax import nnx

from t5tune import errors
from t5tune import sharding
from t5tune.infer import batching
from t5tune.infer import decoding
from t5tune.infer import penalties
from t5tune.infer import scoring
from t5tune.models import t5

TOP_LOGPROBS = 5  # OpenAI's completions API allows at most 5 alternatives per token
_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"
_compile_lock = threading.Lock()
_compile_count = [0]
_listening = [False]


def _on_duration(event: str, duration: float, **kwargs) -> None:
  del duration, kwargs
  if event == _COMPILE_EVENT:
    with _compile_lock:
      _compile_count[0] += 1


def compilations() -> int:
  """XLA compilations in this process since the first Engine was built (jax's monitoring events)."""
  return _compile_count[0]


@dataclasses.dataclass(frozen=True)
class Buckets:
  """The declared shapes: batch sizes, input lengths, decode/target lengths, beam widths."""
  # The defaults: 8 shapes, so that a small model on a CPU is ready in well under a minute
  # (every shape is compiled before serving); the largest values are the limits. Declare
  # more (e.g. batch 32, input 64/256) for throughput at load and less padding.
  batch_sizes: tuple[int, ...] = (1, 8)
  input_lengths: tuple[int, ...] = (128, 512)
  decode_lengths: tuple[int, ...] = (32, 128)
  beam_widths: tuple[int, ...] = ()

  def __post_init__(self):
    for name in ("batch_sizes", "input_lengths", "decode_lengths", "beam_widths"):
      values = tuple(int(v) for v in getattr(self, name))
      if any(v <= 0 for v in values) or len(set(values)) != len(values):
        raise errors.UsageError(f"{name}={list(values)} must be distinct positive integers",
                                where=f"--{name}")
      if not values and name != "beam_widths":
        raise errors.UsageError(f"{name} is empty", where=f"--{name}", fix="give at least one value")
      object.__setattr__(self, name, tuple(sorted(values)))

  @staticmethod
  def fit(values: Sequence[int], n: int) -> int | None:
    """The smallest declared value >= n, or None when n exceeds them all."""
    for v in values:
      if v >= n:
        return v
    return None

  @property
  def max_batch(self) -> int:
    return self.batch_sizes[-1]

  @property
  def max_input_len(self) -> int:
    return self.input_lengths[-1]

  @property
  def max_decode_len(self) -> int:
    return self.decode_lengths[-1]

  def shapes(self):
    return [(b, l, t) for b in self.batch_sizes for l in self.input_lengths
            for t in self.decode_lengths]


@dataclasses.dataclass
class DecodeRow:
  """One sequence to generate: EOS-terminated prompt ids and its sampling settings."""
  tokens: np.ndarray
  max_tokens: int
  temperature: float = 0.0  # 0: greedy
  top_k: int = 0
  top_p: float = 1.0
  key: np.ndarray | None = None  # uint32 [2] key data (`decoding.row_key`; sampling only)
  top_logprobs: bool = False
  method: str = "sample"  # a token-rule method of `decoding.METHODS`
  # t5tune.infer.penalties, each off by default
  repetition_penalty: float = 1.0
  frequency_penalty: float = 0.0
  presence_penalty: float = 0.0
  min_tokens: int = 0
  no_repeat_ngram_size: int = 0


@dataclasses.dataclass
class Progress:
  """Host view of a decode batch after a chunk: arrays [B, t] for the t steps so far."""
  t: int
  done: np.ndarray
  tokens: np.ndarray
  logprobs: np.ndarray
  top_ids: np.ndarray | None
  top_logprobs: np.ndarray | None


def _start(graphdef, state, enc_BL, t_max):
  return decoding.start(nnx.merge(graphdef, state), enc_BL, t_max, TOP_LOGPROBS)


def _steps(graphdef, methods, state, loop, rows, until, want_top):
  model = nnx.merge(graphdef, state)
  cfg = model.config
  return decoding.sample_steps(model.decode_step, loop, rows, until, methods=methods,
                               eos_id=cfg.eos_token_id, pad_id=cfg.pad_token_id,
                               start_id=cfg.decoder_start_token_id, want_top=want_top)


class Engine:
  """Runs decode, beam and score batches of declared shapes on the model's mesh."""

  def __init__(self, model: t5.Transformer, buckets: Buckets, *, length_penalty: float = 1.0):
    if not _listening[0]:
      jax.monitoring.register_event_duration_secs_listener(_on_duration)
      _listening[0] = True
    self.model = model
    self.config = model.config
    self.buckets = buckets
    self.length_penalty = float(length_penalty)
    self.mesh = batching.model_mesh(model)
    dp = sharding.data_parallel_size(self.mesh)
    bad = [b for b in buckets.batch_sizes if b % dp]
    if bad:
      raise errors.UsageError(
          f"batch sizes {bad} are not multiples of the mesh's data-parallel size {dp}",
          where="--batch_sizes", fix=f"use multiples of {dp} or a smaller --mesh_shape")
    self.graphdef, self.state = nnx.split(model)
    # The token rules rows may choose; fixed here, so one program serves them all.
    self.methods = tuple(m for m in decoding.METHODS.values() if m.pick is not None)
    self.searches = tuple(m.name for m in decoding.METHODS.values() if m.search is not None)
    self._start = jax.jit(functools.partial(_start, self.graphdef), static_argnums=(2,))
    # The loop state (cache included) is replaced every chunk: donate it.
    self._steps = jax.jit(functools.partial(_steps, self.graphdef, self.methods),
                          donate_argnums=(1,))

  def _put(self, x: np.ndarray) -> jax.Array:
    return jax.device_put(x, sharding.batch_sharding(self.mesh, x.ndim))

  def method_index(self, name: str) -> int:
    """The row index of a token-rule method; KeyError when it is not one."""
    for i, m in enumerate(self.methods):
      if m.name == name:
        return i
    raise KeyError(name)

  def decode(self, rows: Sequence[DecodeRow], batch: int, input_len: int, decode_len: int, *,
             chunk: int | None = None,
             on_chunk: Callable[[Progress], np.ndarray | None] | None = None) -> Progress:
    """Decodes `rows` in one batch of the given shape.

    After every `chunk` steps (all steps at once when None) `on_chunk` gets the
    progress and may return a bool [len(rows)] mask of rows to stop (their
    client left, or a stop sequence was met).
    """
    n = len(rows)
    enc = batching.stack_rows([r.tokens for r in rows], batch, input_len)
    keys = batching.stack_rows([np.zeros(2) if r.key is None else r.key for r in rows], batch, 2,
                               np.uint32)
    pad = lambda values, fill: list(values) + [fill] * (batch - n)
    cancel = np.asarray(pad([False] * n, True))  # padding rows are done before they start
    settings = decoding.rows_for(
        batch, decode_len, temperature=pad([r.temperature for r in rows], 0.0),
        top_k=pad([r.top_k for r in rows], 0), top_p=pad([r.top_p for r in rows], 1.0),
        keys=keys, max_len=pad([min(r.max_tokens, decode_len) for r in rows], decode_len),
        method=pad([self.method_index(r.method) for r in rows], 0),
        **{k: pad([getattr(r, k) for r in rows], off) for k, off in penalties.NEUTRAL.items()})
    want_top = np.bool_(any(r.top_logprobs for r in rows))
    step = decode_len if chunk is None else max(1, int(chunk))
    with sharding.use_mesh(self.mesh):
      loop = self._start(self.state, self._put(enc), decode_len)
      until = 0
      while True:
        until = min(decode_len, until + step)
        settings = jax.tree.map(self._put, settings.replace(cancel_B=cancel.copy()))
        loop = self._steps(self.state, loop, settings, np.int32(until), want_top)
        progress = self._progress(loop, n, want_top)
        stop = on_chunk(progress) if on_chunk is not None else None
        if stop is not None:
          cancel[:n] |= np.asarray(stop, bool)
        if progress.t >= decode_len or np.all(progress.done | cancel[:n]):
          return progress

  @staticmethod
  def _progress(loop: decoding.LoopState, n: int, want_top) -> Progress:
    t = int(loop.t)
    done, tokens, logprobs = jax.device_get((loop.done_B, loop.tokens_BT, loop.logprobs_BT))
    top = jax.device_get((loop.top_ids_BTK, loop.top_logprobs_BTK)) if want_top else (None, None)
    return Progress(t=t, done=done[:n], tokens=tokens[:n, :t], logprobs=logprobs[:n, :t],
                    top_ids=None if top[0] is None else top[0][:n, :t],
                    top_logprobs=None if top[1] is None else top[1][:n, :t])

  def search(self, method: str, prompts: Sequence[np.ndarray], batch: int, input_len: int,
             decode_len: int, num_beams: int) -> decoding.DecodeOutput:
    """A search method (beam search, `t5tune.infer.decoding`) on one batch; rows past len(prompts) are padding."""
    enc = batching.stack_rows(prompts, batch, input_len)
    opts = decoding.DecodeOptions(method=method, num_beams=num_beams, max_decode_len=decode_len,
                                  length_penalty=self.length_penalty)
    return batching.head(decoding.decode(self.model, enc, opts), len(prompts))

  def score(self, inputs: Sequence[np.ndarray], targets: Sequence[np.ndarray], batch: int,
            input_len: int, target_len: int) -> scoring.Scores:
    """Log-likelihoods (`t5tune.infer.scoring.score`) of one batch of (input, target) pairs."""
    enc = batching.stack_rows(inputs, batch, input_len)
    tgt = batching.stack_rows(targets, batch, target_len)
    return batching.head(scoring.score(self.model, enc, tgt), len(inputs))

  def compile_only(self) -> dict[tuple, object]:
    """Every declared shape's programs compiled ahead of time from shapes alone; nothing runs.

    The model may be abstract (`t5.abstract_model` on a TPU target's
    compile-only mesh): these are the programs `warm_up` compiles and serving
    runs, keyed ("start" | "steps" | "score" | method, batch, input, decode[, beams]).
    """
    def placed(shape, dtype, sh=None):
      return jax.ShapeDtypeStruct(shape, dtype,
                                  sharding=sh or sharding.batch_sharding(self.mesh, len(shape)))

    out = {}
    for b, l, t in self.buckets.shapes():
      enc = placed((b, l), np.int32)
      with sharding.use_mesh(self.mesh):
        start = self._start.lower(self.state, enc, t).compile()
        loop = jax.tree.map(lambda a, sh: placed(a.shape, a.dtype, sh),
                            jax.eval_shape(lambda st, e: _start(self.graphdef, st, e, t),
                                           self.state, enc), start.output_shardings)
        rows = jax.tree.map(lambda x: placed(x.shape, x.dtype), decoding.rows_for(b, t))
        out[("start", b, l, t)] = start
        out[("steps", b, l, t)] = self._steps.lower(self.state, loop, rows, np.int32(t),
                                                    np.bool_(True)).compile()
      out[("score", b, l, t)] = scoring.compile_score(self.model, b, l, t)
      for method in self.searches:
        for w in self.buckets.beam_widths:
          opts = decoding.DecodeOptions(method=method, num_beams=w, max_decode_len=t,
                                        length_penalty=self.length_penalty)
          out[(method, b, l, t, w)] = decoding.compile_decode(self.model, b, l, opts)
    return out

  def warm_up(self, log: Callable[[str], None] = lambda s: None) -> int:
    """Compiles every declared shape (decode, score, beam); returns the number of shapes."""
    eos = np.array([self.config.eos_token_id], np.int32)
    key = decoding.row_key(0, 0)  # the host-side key ops compile once too
    count = 0
    for b, l, t in self.buckets.shapes():
      row = DecodeRow(tokens=eos, max_tokens=1, temperature=1.0, top_k=2, top_p=0.5,
                      key=key, top_logprobs=True)
      self.decode([row], b, l, t)
      self.score([eos], [eos], b, l, t)
      for method in self.searches:
        for w in self.buckets.beam_widths:
          self.search(method, [eos], b, l, t, w)
      count += 1
      log(f"compiled shape batch={b} input={l} decode={t} ({count}/{len(self.buckets.shapes())})")
    return count
