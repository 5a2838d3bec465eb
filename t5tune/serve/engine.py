"""The device side of the server: a fixed set of compiled shapes, and batched decoding and scoring on them.

Every device call has a shape from `Buckets`: a batch size, an input length
and a decode (or target) length, each from a short declared list. `warm_up`
compiles every combination before the server reports ready, so serving never
compiles (`compilations()` counts XLA compilations for /metrics and the tests).

Decoding here differs from `t5tune.infer.decoding.decode` in two ways that a
server needs, and otherwise follows it (same model calls, same sampling rule,
so greedy rows equal `t5tune.generate` token for token and sampled rows equal
`t5tune.generate(method="sample")` with the same key):

* temperature, top-k, top-p and the token limit are per-row arrays, not
  compile-time constants, so requests with different settings share one batch
  and one compiled program;
* the loop runs in chunks (`until` is an argument, not a constant), so the
  host can stream each chunk's tokens and stop rows whose client went away.

Beam search and scoring call `t5tune.infer` as they are.
"""
from __future__ import annotations

import dataclasses
import functools
import threading
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from t5tune import errors
from t5tune import sharding
from t5tune.infer import batching
from t5tune.infer import decoding
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
  batch_sizes: tuple[int, ...] = (1, 8, 32)
  input_lengths: tuple[int, ...] = (64, 128, 256, 512)
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
  key: np.ndarray | None = None  # uint32 [2] key data (sampling only)
  top_logprobs: bool = False


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
  model = nnx.merge(graphdef, state)
  cfg = model.config
  b = enc_BL.shape[0]
  enc_BLD = model.encode(enc_BL)
  return {
      "cache": model.init_cache(enc_BLD, enc_BL, t_max),
      "t": jnp.zeros((), jnp.int32),
      "token": jnp.full((b,), cfg.decoder_start_token_id, jnp.int32),
      "done": jnp.zeros((b,), bool),
      "tokens": jnp.full((b, t_max), cfg.pad_token_id, jnp.int32),
      "logprobs": jnp.zeros((b, t_max), jnp.float32),
      "top_ids": jnp.zeros((b, t_max, TOP_LOGPROBS), jnp.int32),
      "top_logprobs": jnp.zeros((b, t_max, TOP_LOGPROBS), jnp.float32),
  }


def _filter_rows(logits_BV, temperature_B, top_k_B, top_p_B):
  """`decoding.filter_logits` with one temperature / top-k / top-p per row (0 / 1 switch a filter off)."""
  v = logits_BV.shape[-1]
  logits_BV = logits_BV / jnp.where(temperature_B > 0, temperature_B, 1.0)[:, None]
  sorted_BV = jnp.sort(logits_BV, axis=-1)[:, ::-1]
  k_B = jnp.where(top_k_B > 0, jnp.minimum(top_k_B, v), v)
  kth_B1 = jnp.take_along_axis(sorted_BV, (k_B - 1)[:, None], axis=-1)
  logits_BV = jnp.where(logits_BV < kth_B1, -jnp.inf, logits_BV)
  sorted_BV = jnp.where(sorted_BV < kth_B1, -jnp.inf, sorted_BV)
  probs_BV = jax.nn.softmax(sorted_BV, axis=-1)
  before_BV = jnp.cumsum(probs_BV, axis=-1) - probs_BV
  keep_BV = ((before_BV < top_p_B[:, None]) | (top_p_B >= 1.0)[:, None]).at[:, 0].set(True)
  threshold_B1 = jnp.min(jnp.where(keep_BV, sorted_BV, jnp.inf), axis=-1, keepdims=True)
  return jnp.where(logits_BV < threshold_B1, -jnp.inf, logits_BV)


def _steps(graphdef, state, ds, params, until):
  """Decodes until step `until` or until every row is done; `params` holds per-row settings."""
  model = nnx.merge(graphdef, state)
  cfg = model.config
  keys_B = jax.random.wrap_key_data(params["keys"])
  sampled_B = params["temperature"] > 0
  any_sampled = jnp.any(sampled_B)

  def cond(c):
    return (c["t"] < until) & ~jnp.all(c["done"])

  def body(c):
    t, done_B = c["t"], c["done"]
    logits_BV, cache = model.decode_step(c["token"], c["cache"])
    logp_BV = jax.nn.log_softmax(logits_BV, axis=-1)

    def sample():
      filtered = _filter_rows(logits_BV, params["temperature"], params["top_k"], params["top_p"])
      step_keys = jax.vmap(lambda k: jax.random.fold_in(k, t))(keys_B)
      drawn_B = jax.vmap(jax.random.categorical)(step_keys, filtered)
      return jnp.where(sampled_B, drawn_B, jnp.argmax(logits_BV, axis=-1)).astype(jnp.int32)

    nxt_B = jax.lax.cond(any_sampled, sample,
                         lambda: jnp.argmax(logits_BV, axis=-1).astype(jnp.int32))
    token_logp_B = jnp.take_along_axis(logp_BV, nxt_B[:, None], axis=-1)[:, 0]
    nxt_B = jnp.where(done_B, cfg.pad_token_id, nxt_B)
    top_logp, top_ids = jax.lax.cond(
        params["want_top"], lambda: tuple(jax.lax.top_k(logp_BV, TOP_LOGPROBS)),
        lambda: (jnp.zeros(logp_BV.shape[:1] + (TOP_LOGPROBS,), jnp.float32),
                 jnp.zeros(logp_BV.shape[:1] + (TOP_LOGPROBS,), jnp.int32)))
    put = lambda arr, x: jax.lax.dynamic_update_slice_in_dim(arr, x[:, None], t, axis=1)
    done_B = done_B | (nxt_B == cfg.eos_token_id) | (t + 1 >= params["max_len"])
    return dict(c, t=t + 1, token=nxt_B, cache=cache, done=done_B,
                tokens=put(c["tokens"], nxt_B),
                logprobs=put(c["logprobs"], jnp.where(c["done"], 0.0, token_logp_B)),
                top_ids=put(c["top_ids"], top_ids), top_logprobs=put(c["top_logprobs"], top_logp))

  ds = dict(ds, done=ds["done"] | params["cancel"])
  return jax.lax.while_loop(cond, body, ds)


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
    self._start = jax.jit(functools.partial(_start, self.graphdef), static_argnums=(2,))
    # The decode state (cache included) is replaced every chunk: donate it.
    self._steps = jax.jit(functools.partial(_steps, self.graphdef), donate_argnums=(1,))

  def _put(self, x: np.ndarray) -> jax.Array:
    return jax.device_put(x, sharding.batch_sharding(self.mesh, x.ndim))

  def row_key(self, seed: int, index: int) -> np.ndarray:
    """Key data of row `index` for `seed`: the key `t5tune.generate(rng=seed)` gives its input `index`."""
    base = decoding.row_keys(int(seed), 1)[0]
    key = jax.random.fold_in(jax.random.wrap_key_data(base), int(index))
    return np.asarray(jax.random.key_data(key))

  def decode(self, rows: Sequence[DecodeRow], batch: int, input_len: int, decode_len: int, *,
             chunk: int | None = None,
             on_chunk: Callable[[Progress], np.ndarray | None] | None = None) -> Progress:
    """Decodes `rows` in one batch of the given shape.

    After every `chunk` steps (all steps at once when None) `on_chunk` gets the
    progress and may return a bool [len(rows)] mask of rows to stop (their
    client left, or a stop sequence was met).
    """
    n = len(rows)
    enc = np.zeros((batch, input_len), np.int32)
    temperature = np.zeros(batch, np.float32)
    top_k = np.zeros(batch, np.int32)
    top_p = np.ones(batch, np.float32)
    keys = np.zeros((batch, 2), np.uint32)
    max_len = np.full(batch, decode_len, np.int32)
    cancel = np.ones(batch, bool)  # padding rows are done before they start
    for i, row in enumerate(rows):
      enc[i, :len(row.tokens)] = row.tokens
      temperature[i], top_k[i], top_p[i] = row.temperature, row.top_k, row.top_p
      if row.key is not None:
        keys[i] = row.key
      max_len[i] = min(row.max_tokens, decode_len)
      cancel[i] = False
    params = {"temperature": temperature, "top_k": top_k, "top_p": top_p, "keys": keys,
              "max_len": max_len}
    params = {k: self._put(v) for k, v in params.items()}
    params["want_top"] = np.bool_(any(r.top_logprobs for r in rows))
    step = decode_len if chunk is None else max(1, int(chunk))
    with sharding.use_mesh(self.mesh):
      ds = self._start(self.state, self._put(enc), decode_len)
      until = 0
      while True:
        until = min(decode_len, until + step)
        params["cancel"] = self._put(cancel)
        ds = self._steps(self.state, ds, params, np.int32(until))
        progress = self._progress(ds, n, params["want_top"])
        stop = on_chunk(progress) if on_chunk is not None else None
        if stop is not None:
          cancel[:n] |= np.asarray(stop, bool)
        if progress.t >= decode_len or np.all(progress.done | cancel[:n]):
          return progress

  @staticmethod
  def _progress(ds, n: int, want_top) -> Progress:
    t = int(ds["t"])
    host = jax.device_get({k: ds[k] for k in ("done", "tokens", "logprobs")})
    top = jax.device_get((ds["top_ids"], ds["top_logprobs"])) if want_top else (None, None)
    return Progress(t=t, done=host["done"][:n], tokens=host["tokens"][:n, :t],
                    logprobs=host["logprobs"][:n, :t],
                    top_ids=None if top[0] is None else top[0][:n, :t],
                    top_logprobs=None if top[1] is None else top[1][:n, :t])

  def beam(self, prompts: Sequence[np.ndarray], batch: int, input_len: int, decode_len: int,
           num_beams: int) -> decoding.DecodeOutput:
    """Beam search (`t5tune.infer.decoding`) on one batch; rows past len(prompts) are padding."""
    enc = np.zeros((batch, input_len), np.int32)
    for i, p in enumerate(prompts):
      enc[i, :len(p)] = p
    opts = decoding.DecodeOptions(method="beam", num_beams=num_beams, max_decode_len=decode_len,
                                  length_penalty=self.length_penalty)
    out = decoding.decode(self.model, enc, opts)
    return jax.tree.map(lambda x: x[:len(prompts)], out)

  def score(self, inputs: Sequence[np.ndarray], targets: Sequence[np.ndarray], batch: int,
            input_len: int, target_len: int) -> scoring.Scores:
    """Log-likelihoods (`t5tune.infer.scoring.score`) of one batch of (input, target) pairs."""
    enc = np.zeros((batch, input_len), np.int32)
    tgt = np.zeros((batch, target_len), np.int32)
    for i, (x, y) in enumerate(zip(inputs, targets)):
      enc[i, :len(x)] = x
      tgt[i, :len(y)] = y
    out = scoring.score(self.model, enc, tgt)
    return jax.tree.map(lambda x: x[:len(inputs)], out)

  def warm_up(self, log: Callable[[str], None] = lambda s: None) -> int:
    """Compiles every declared shape (decode, score, beam); returns the number of shapes."""
    eos = np.array([self.config.eos_token_id], np.int32)
    self.row_key(0, 0)  # the host-side key ops compile once too
    count = 0
    for b, l, t in self.buckets.shapes():
      row = DecodeRow(tokens=eos, max_tokens=1, temperature=1.0, top_k=2, top_p=0.5,
                      key=self.row_key(0, 0), top_logprobs=True)
      self.decode([row], b, l, t)
      self.score([eos], [eos], b, l, t)
      for w in self.buckets.beam_widths:
        self.beam([eos], b, l, t, w)
      count += 1
      log(f"compiled shape batch={b} input={l} decode={t} ({count}/{len(self.buckets.shapes())})")
    return count
