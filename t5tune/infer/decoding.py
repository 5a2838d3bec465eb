"""Decoding on the model's KV cache: greedy, temperature / top-k / top-p sampling, beam search.

    out = decoding.decode(model, encoder_input_tokens,
                          decoding.DecodeOptions(method="beam", num_beams=4, max_decode_len=64))
    out.tokens   # int32 [B, max_decode_len], EOS kept, pad (0) after it
    out.scores   # float32 [B]

The whole decode (encoder, cache, every step) is one jitted, sharded function
(`t5tune.infer.batching`): the batch is split over the mesh's data axes, and
a `lax.while_loop` stops as soon as every sequence is finished.

One sampling loop. Greedy decoding and sampling are one loop,
`sample_steps(tokens_to_logits, state, rows, until, methods=...)` (t5x's
`tokens_to_logits` style: the loop sees only a step function and its cache).
Temperature, top-k, top-p, the penalties of `t5tune.infer.penalties`
(repetition, frequency, presence, a minimum length), the token limit and the
method are per-row arrays (`Rows`), so rows with different settings share one batch and one compiled
program (greedy = temperature 0), and the loop runs to a step `until` and
resumes from its state, so a caller can stop after a bounded number of steps
(the server streams and schedules this way). `decode` runs it in one call.

Methods. `METHODS` maps each name to a `Method`: a token rule of the sampling
loop (greedy, sample) or a search of its own (beam). `register(Method(...))`
adds one; `decode`, `t5tune.generate`, `predict`, `evaluate` and `serve`
(the request's `method` field) then run it.

Scores. Greedy and sampling report the sum of the model's log-probabilities
of the emitted tokens (EOS included), from the unmodified distribution (before
temperature, top-k, top-p and the penalties). Beam search reports the
length-normalised beam score used to rank the beams (penalties included, as
transformers scores them).

Seeds. Example i of an input samples with `row_key(seed, i) =
fold_in(key(seed), i)`, i its 0-based position in that input: the prompt's
index in `t5tune.generate`, line N - 1 of a `predict` file, the example's
index in `evaluate`, the flattened (prompt, choice) index in `serve`. The same
seed and prompt therefore sample the same text in every command, whatever the
batching; step t draws with `fold_in(row key, t)`. `top_k=1`, `top_p` near 0,
or `temperature=0` reduce to greedy decoding.

Beam search (`t5tune.infer.beam`) follows Hugging Face transformers' beam
search, so the same weights give the same sequences.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from t5tune import errors
from t5tune import ranges
from t5tune.infer import batching
from t5tune.infer import beam
from t5tune.infer import nucleus
from t5tune.infer import penalties
from t5tune.models import t5



@dataclasses.dataclass(frozen=True)
class Method:
  """A decoding method: a token rule of the sampling loop (`pick`), or a search of its own.

  `pick(logits_BV, rows, t) -> int32 [B]` chooses each row's next token at
  step t (`rows`: the per-row settings, `step_keys(rows, t)` their keys);
  `search(model, enc_tokens_BL, opts) -> {"tokens", "scores", ...}` runs a
  whole decode (beam search), served for each compiled beam width.
  """
  name: str
  pick: Callable | None = None
  search: Callable | None = None

  def __post_init__(self):
    if (self.pick is None) == (self.search is None):
      raise ValueError(f"method {self.name!r}: give exactly one of pick or search")


# Every decoding method by name; `register` adds one, and `decode`, `generate`,
# `predict`, `evaluate` and `serve` all find it here.
METHODS: dict[str, Method] = {}


def register(method: Method) -> Method:
  """Adds a decoding method (an existing name is refused)."""
  if method.name in METHODS:
    raise ValueError(f"decoding method {method.name!r} is already registered")
  METHODS[method.name] = method
  return method


def _ranged(default: Any, spec: str, dtype: str) -> Any:
  return dataclasses.field(default=default, metadata=ranges.meta(spec, dtype))


class OptionError(errors.UsageError):
  """A `DecodeOptions` value that is not allowed; `field` names the option (and a command's flag).

  A UsageError (so a ValueError too): wherever options enter (a harness task's generation
  arguments, an evaluation config, a library call) the command prints one line, exit 2.
  """

  def __init__(self, field: str, message: str):
    super().__init__(message)
    self.field = field


@dataclasses.dataclass(frozen=True)
class DecodeOptions:
  """How to decode; hashable, it is part of the compilation key."""
  # Each number's range, in the dtype the decoding loop holds it in (`Rows`), is declared here
  # once: `predict`'s flags, the server's request fields and library calls are checked against it.
  method: str = "greedy"
  max_decode_len: int = _ranged(64, "[1, inf)", "int32")
  # sample
  temperature: float = _ranged(1.0, "[0, inf)", "float32")  # 0 = greedy
  top_k: int = _ranged(0, "[0, inf)", "int32")  # 0 = no top-k filter
  top_p: float = _ranged(1.0, "[0, 1]", "float32")  # 1 = no nucleus filter; 0 = greedy
  # beam
  num_beams: int = _ranged(4, "[1, inf)", "int32")
  length_penalty: float = _ranged(1.0, "(-inf, inf)", "float32")
  length_penalty_style: str = "hf"
  # greedy, sample and other token rules of the sampling loop (t5tune.infer.penalties)
  repetition_penalty: float = _ranged(1.0, "(0, inf)", "float32")  # 1 = off
  frequency_penalty: float = _ranged(0.0, "[-2, 2]", "float32")
  presence_penalty: float = _ranged(0.0, "[-2, 2]", "float32")
  min_tokens: int = _ranged(0, "[0, inf)", "int32")  # no EOS before this many tokens
  no_repeat_ngram_size: int = _ranged(0, "[0, inf)", "int32")  # 0 = off

  def numbers(self) -> dict[str, Any]:
    """The options that declare a range, by name."""
    return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if "range" in f.metadata}

  def active_penalties(self) -> dict[str, Any]:
    """The settings of `t5tune.infer.penalties` that are not off."""
    return {k: getattr(self, k) for k, off in penalties.NEUTRAL.items() if getattr(self, k) != off}

  def __post_init__(self):
    if self.method not in METHODS:
      raise OptionError("method", f"decoding method {self.method!r}: expected one of"
                        f" {list(METHODS)}")
    for name, value in self.numbers().items():
      message = ranges.problem(name, value, ranges.of_field(DecodeOptions, name))
      if message:
        raise OptionError(name, message)
    if self.length_penalty_style not in beam.LENGTH_PENALTY_STYLES:
      raise OptionError("length_penalty_style",
                        f"length_penalty_style={self.length_penalty_style!r}: expected one"
                        f" of {beam.LENGTH_PENALTY_STYLES}")
    active = self.active_penalties()
    if METHODS[self.method].search not in (None, beam.search) and active:  # a registered search
      raise OptionError(next(iter(active)),
                        f"{', '.join(f'{k}={v}' for k, v in active.items())}"
                        f" {'is' if len(active) == 1 else 'are'} for greedy, sampling and beam"
                        f" search, not method={self.method!r}")


@flax.struct.dataclass
class DecodeOutput:
  """Host results. `beams`/`beam_scores` ([B, N, T] / [B, N], best first) only for beam search."""
  tokens: np.ndarray
  scores: np.ndarray
  beams: np.ndarray | None = None
  beam_scores: np.ndarray | None = None


# -- seeds ---------------------------------------------------------------------

def _as_key(seed_or_key: Any) -> jax.Array:
  if seed_or_key is None:
    seed_or_key = 0
  if isinstance(seed_or_key, (int, np.integer)):
    return jax.random.key(int(seed_or_key))
  key = jnp.asarray(seed_or_key) if not isinstance(seed_or_key, jax.Array) else seed_or_key
  if not jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
    key = jax.random.wrap_key_data(key.astype(jnp.uint32))
  return key


# A seed a user gives (predict's --seed, a request's seed, evaluate's seed).
SEED_RANGE = ranges.Interval.parse("[0, inf)", "int32")


def row_key(seed: Any, index: int) -> np.ndarray:
  """uint32 [2] key data of example `index` (its 0-based position in its input) under `seed`.

  `fold_in(key(seed), index)`: the one rule of every command (see the module
  docstring). `seed` is an int or a single key.
  """
  key = _as_key(seed)
  if key.ndim != 0:
    raise ValueError(f"row_key: expected a seed or one key, got keys of shape {key.shape}")
  return np.asarray(jax.random.key_data(jax.random.fold_in(key, int(index))))


def row_keys(rng: Any, batch: int, start: int = 0) -> np.ndarray:
  """uint32 [batch, 2] key data: rows start..start+batch-1 of a seed or key (`row_key`), or per-row keys."""
  key = _as_key(rng)
  if key.ndim == 0:
    return np.stack([row_key(key, start + i) for i in range(batch)])
  if key.shape != (batch,):
    raise ValueError(f"rng: expected one key or {batch} keys (one per row), got shape {key.shape}")
  return np.asarray(jax.random.key_data(key))


# -- the sampling loop -----------------------------------------------------------

@flax.struct.dataclass
class Rows:
  """Per-row settings of the sampling loop (device arrays [B]; see `rows_for`)."""
  temperature_B: jax.Array  # float32; 0 = greedy
  top_k_B: jax.Array  # int32; 0 = no top-k filter
  top_p_B: jax.Array  # float32; 1 = no nucleus filter
  keys_B2: jax.Array  # uint32 key data of each row (`row_key`); step t uses fold_in(key, t)
  max_len_B: jax.Array  # int32; a row is done after this many tokens
  method_B: jax.Array  # int32 index into the loop's `methods`
  cancel_B: jax.Array  # bool; a cancelled row is done before the next step
  repetition_penalty_B: jax.Array  # float32; 1 = off (t5tune.infer.penalties)
  frequency_penalty_B: jax.Array  # float32; 0 = off
  presence_penalty_B: jax.Array  # float32; 0 = off
  min_len_B: jax.Array  # int32; no EOS before this many tokens
  no_repeat_ngram_B: jax.Array  # int32; 0 = off


def rows_for(batch: int, t_max: int, *, temperature=0.0, top_k=0, top_p=1.0, keys=None,
             max_len=None, method=0, cancel=False, repetition_penalty=1.0, frequency_penalty=0.0,
             presence_penalty=0.0, min_tokens=0, no_repeat_ngram_size=0) -> Rows:
  """Host (numpy) `Rows` for a batch: scalars are broadcast, arrays taken per row."""
  full = lambda x, dtype: np.broadcast_to(np.asarray(x, dtype), (batch,)).copy()
  return Rows(temperature_B=full(temperature, np.float32), top_k_B=full(top_k, np.int32),
              top_p_B=full(top_p, np.float32),
              keys_B2=np.zeros((batch, 2), np.uint32) if keys is None else np.asarray(keys, np.uint32),
              max_len_B=full(t_max if max_len is None else max_len, np.int32),
              method_B=full(method, np.int32), cancel_B=full(cancel, bool),
              **penalties.row_arrays(batch, repetition_penalty=repetition_penalty,
                                     frequency_penalty=frequency_penalty,
                                     presence_penalty=presence_penalty, min_tokens=min_tokens,
                                     no_repeat_ngram_size=no_repeat_ngram_size))


def step_keys(rows: Rows, t: jax.Array) -> jax.Array:
  """Each row's key for step t: fold_in(row key, t), whatever the batch around it."""
  return jax.vmap(lambda k: jax.random.fold_in(k, t))(jax.random.wrap_key_data(rows.keys_B2))


def argmax(x: jax.Array) -> jax.Array:
  """`jnp.argmax(x, axis=-1)` (the first maximum; a NaN counts as the maximum), as int32.

  Written as a max and a min over the positions that hold it because XLA's CPU
  backend runs jnp.argmax's (value, index) pair reduction unvectorised: over a
  32k vocabulary for 16 rows it took 1.2 ms against 0.3 ms for this form,
  and a greedy step ~10% of its time (benchmarks/eval_throughput.py's rows).
  The max is the one log_softmax takes too, so XLA computes it once.
  """
  m = jnp.max(x, axis=-1, keepdims=True)
  hit = (x == m) | jnp.isnan(x)
  position = jax.lax.broadcasted_iota(jnp.int32, x.shape, x.ndim - 1)
  return jnp.min(jnp.where(hit, position, x.shape[-1]), axis=-1)


def _argmax(logits_BV, rows, t):
  del rows, t
  return argmax(logits_BV)


def categorical(keys_B: jax.Array, logits_BV: jax.Array) -> jax.Array:
  """Each row's `jax.random.categorical(key, logits)`: the same Gumbel noise, so the same tokens.

  Its `jnp.argmax` runs unvectorised on XLA's CPU backend (see `argmax`): for
  16 rows over 32k tokens the draw took 4.4-7.5 ms against 1.4 ms this way.
  """
  noise_BV = jax.vmap(lambda key: jax.random.gumbel(key, logits_BV.shape[1:]))(keys_B)
  return argmax(noise_BV + logits_BV)


def _sample(logits_BV, rows: Rows, t):
  """Temperature / top-k / top-p sampling per row; rows at temperature 0 take the argmax."""
  def draw():
    filtered = nucleus.filter_logits(logits_BV, rows.temperature_B, rows.top_k_B, rows.top_p_B)
    drawn_B = categorical(step_keys(rows, t), filtered)
    return jnp.where(rows.temperature_B > 0, drawn_B, argmax(logits_BV))
  greedy = lambda: argmax(logits_BV)
  return jax.lax.cond(jnp.any(rows.temperature_B > 0), draw, greedy).astype(jnp.int32)


@flax.struct.dataclass
class LoopState:
  """The sampling loop's carry, also its result; kept between chunks (`sample_steps`)."""
  t: jax.Array  # [] steps taken
  token_B: jax.Array  # the last token of each row
  cache: Any  # the decoder's cache (t5.DecodeCache for the model)
  done_B: jax.Array
  score_B: jax.Array  # summed log-probabilities of the emitted tokens (EOS included)
  tokens_BT: jax.Array  # emitted tokens, pad after a row is done
  logprobs_BT: jax.Array  # each emitted token's log-probability (0 after done)
  top_ids_BTK: jax.Array  # the K most likely tokens per step (K = 0: not recorded)
  top_logprobs_BTK: jax.Array


def start(model: t5.Transformer, enc_tokens_BL, t_max: int, top_width: int = 0) -> LoopState:
  """The loop's first state: encoder run, empty cache, nothing emitted."""
  cfg = model.config
  b = enc_tokens_BL.shape[0]
  cache = model.init_cache(model.encode(enc_tokens_BL), enc_tokens_BL, t_max)
  return LoopState(
      t=jnp.zeros((), jnp.int32), token_B=jnp.full((b,), cfg.decoder_start_token_id, jnp.int32),
      cache=cache, done_B=jnp.zeros((b,), bool), score_B=jnp.zeros((b,), jnp.float32),
      tokens_BT=jnp.full((b, t_max), cfg.pad_token_id, jnp.int32),
      logprobs_BT=jnp.zeros((b, t_max), jnp.float32),
      top_ids_BTK=jnp.zeros((b, t_max, top_width), jnp.int32),
      top_logprobs_BTK=jnp.zeros((b, t_max, top_width), jnp.float32))


def _pick(methods: Sequence["Method"], logits_BV, rows: Rows, t):
  if len(methods) == 1:
    return methods[0].pick(logits_BV, rows, t)
  nxt_B = jnp.zeros(logits_BV.shape[:1], jnp.int32)
  for i, method in enumerate(methods):
    use_B = rows.method_B == i
    # Only the methods some row asks for run.
    picked = jax.lax.cond(jnp.any(use_B), lambda m=method: m.pick(logits_BV, rows, t),
                          lambda: jnp.zeros_like(nxt_B))
    nxt_B = jnp.where(use_B, picked, nxt_B)
  return nxt_B


def sample_steps(tokens_to_logits: Callable, state: LoopState, rows: Rows, until, *,
                 methods: Sequence["Method"], eos_id: int, pad_id: int, start_id: int,
                 want_top: Any = False) -> LoopState:
  """Runs the loop until step `until` or until every row is done (t5x's `tokens_to_logits` style).

  `tokens_to_logits(token_B, cache) -> (logits_BV, cache)` is one decoder
  step; `methods` are the token rules rows choose from (`rows.method_B`); they
  pick from the logits after the rows' penalties (`t5tune.infer.penalties`;
  `start_id` is the decoder start token, which the repetition penalty counts).
  Call it again with a larger `until` to continue (the server streams and
  stops rows between chunks); the result does not depend on the chunking.
  """
  top_width = state.top_ids_BTK.shape[-1]

  def cond(s: LoopState):
    return (s.t < until) & ~jnp.all(s.done_B)

  def body(s: LoopState) -> LoopState:
    t, done_B = s.t, s.done_B
    logits_BV, cache = tokens_to_logits(s.token_B, s.cache)
    logp_BV = jax.nn.log_softmax(logits_BV, axis=-1)
    adjusted_BV = penalties.apply(logits_BV, s.tokens_BT, t, rows, start_id=start_id,
                                  eos_id=eos_id)
    nxt_B = _pick(methods, adjusted_BV, rows, t)
    token_logp_B = jnp.where(done_B, 0.0, jnp.take_along_axis(logp_BV, nxt_B[:, None], axis=-1)[:, 0])
    nxt_B = jnp.where(done_B, pad_id, nxt_B)
    put = lambda arr, x: jax.lax.dynamic_update_slice_in_dim(arr, x[:, None], t, axis=1)
    top_ids, top_logprobs = s.top_ids_BTK, s.top_logprobs_BTK
    if top_width:
      top_logp, top_idx = jax.lax.cond(
          want_top, lambda: tuple(jax.lax.top_k(logp_BV, top_width)),
          lambda: (jnp.zeros(logp_BV.shape[:1] + (top_width,), jnp.float32),
                   jnp.zeros(logp_BV.shape[:1] + (top_width,), jnp.int32)))
      top_ids, top_logprobs = put(top_ids, top_idx), put(top_logprobs, top_logp)
    return LoopState(
        t=t + 1, token_B=nxt_B, cache=cache,
        done_B=done_B | (nxt_B == eos_id) | (t + 1 >= rows.max_len_B),
        score_B=s.score_B + token_logp_B, tokens_BT=put(s.tokens_BT, nxt_B),
        logprobs_BT=put(s.logprobs_BT, token_logp_B), top_ids_BTK=top_ids,
        top_logprobs_BTK=top_logprobs)

  return jax.lax.while_loop(cond, body, state.replace(done_B=state.done_B | rows.cancel_B))


def _sampling_loop(model: t5.Transformer, enc_tokens_BL, key_data_B2, opts: DecodeOptions):
  cfg = model.config
  rows = rows_for(enc_tokens_BL.shape[0], opts.max_decode_len, temperature=opts.temperature,
                  top_k=opts.top_k, top_p=opts.top_p, **opts.active_penalties())
  rows = rows.replace(keys_B2=key_data_B2)
  state = start(model, enc_tokens_BL, opts.max_decode_len)
  out = sample_steps(model.decode_step, state, rows, opts.max_decode_len,
                     methods=(METHODS[opts.method],), eos_id=cfg.eos_token_id,
                     pad_id=cfg.pad_token_id, start_id=cfg.decoder_start_token_id)
  return {"tokens": out.tokens_BT, "scores": out.score_B}


register(Method("greedy", pick=_argmax))
register(Method("sample", pick=_sample))
register(Method("beam", search=beam.search))


def _decode_fn(model, enc_tokens_BL, key_data_B2, opts):
  method = METHODS[opts.method]
  if method.search is not None:
    return method.search(model, enc_tokens_BL, opts)
  return _sampling_loop(model, enc_tokens_BL, key_data_B2, opts)


def decode(model: t5.Transformer, encoder_input_tokens, options: DecodeOptions = DecodeOptions(),
           *, rng: Any = None) -> DecodeOutput:
  """Decodes a batch of encoder inputs (int [B, L], pad 0); see the module docstring.

  Args:
    model: the model; its parameters' mesh decides where the batch runs.
    encoder_input_tokens: int [B, L], EOS-terminated, right-padded with 0.
    options: the method and its settings.
    rng: for sampling: an int seed or a key (row i samples with `row_key(rng, i)`), or
      B keys (one per row); default 0.

  Returns:
    A `DecodeOutput`: tokens_BT (int32, pad 0 after EOS) and scores_B, plus the
    beams and their scores for beam search.

  Raises:
    ValueError: `encoder_input_tokens` is not two-dimensional.
  """
  tokens = np.asarray(encoder_input_tokens, np.int32)
  if tokens.ndim != 2:
    raise ValueError(f"encoder_input_tokens must be [batch, length], got shape {tokens.shape}")
  keys = row_keys(rng, tokens.shape[0])
  out = batching.run(_decode_fn, model, (tokens, keys), options)
  return DecodeOutput(tokens=out["tokens"], scores=out["scores"],
                      beams=out.get("beams"), beam_scores=out.get("beam_scores"))


def compile_decode(model: t5.Transformer, batch: int, input_len: int,
                   options: DecodeOptions = DecodeOptions()):
  """`decode`'s program for a [batch, input_len] input, compiled ahead of time (nothing runs)."""
  return batching.compile_only(_decode_fn, model, [((batch, input_len), np.int32),
                                                    ((batch, 2), np.uint32)], options)


def greedy_decode(model: t5.Transformer, encoder_input_tokens, max_decode_len: int) -> np.ndarray:
  """Greedy decoding: int32 [B, max_decode_len], EOS kept, pad (0) after it.

  The public `t5tune.greedy_decode`; the same sharded loop as
  `decode(..., DecodeOptions(method="greedy"))`, which also returns scores.

  Args:
    model: the model; its parameters' mesh decides where the batch runs.
    encoder_input_tokens: int enc_tokens_BL, EOS-terminated, right-padded with 0.
    max_decode_len: the number of decoder steps (T).

  Returns:
    int32 tokens_BT.

  Raises:
    ValueError: `encoder_input_tokens` is not two-dimensional.
  """
  options = DecodeOptions(method="greedy", max_decode_len=int(max_decode_len))
  return decode(model, encoder_input_tokens, options).tokens

