"""Decoding on the model's KV cache: greedy, temperature / top-k / top-p sampling, beam search.

    out = decoding.decode(model, encoder_input_tokens,
                          decoding.DecodeOptions(method="beam", num_beams=4, max_decode_len=64))
    out.tokens   # int32 [B, max_decode_len], EOS kept, pad (0) after it
    out.scores   # float32 [B]

The whole loop (encoder, cache, every step) is one jitted, sharded function
(`t5tune.infer.batching`): the batch is split over the mesh's data axes, and
a `lax.while_loop` stops as soon as every sequence is finished.

Scores. Greedy and sampling report the sum of the model's log-probabilities
of the emitted tokens (EOS included), from the unmodified distribution (before
temperature, top-k and top-p). Beam search reports the length-normalised beam
score used to rank the beams.

Sampling. Each row has its own key; step t draws with `fold_in(row_key, t)`,
so a given key gives the same tokens whatever the batch composition. A single
key is split into one per row. `top_k=1`, `top_p` near 0, or `temperature=0`
reduce to greedy decoding.

Beam search follows Hugging Face transformers' (v5) beam search with
`early_stopping=False`, so the same weights give the same sequences:

* each step keeps the 2 * num_beams best continuations (over all beams and
  tokens, by summed log-probability); those among the first num_beams that
  end in EOS (or reach max_decode_len) become finished hypotheses, the best
  num_beams that do not end continue;
* a finished hypothesis of L generated tokens (EOS included) scores
  `sum_logprob / L ** length_penalty` (`length_penalty_style="hf"`); the best
  num_beams finished ones are kept;
* a row stops collecting hypotheses once it has num_beams of them and the
  best running beam, normalised at its current length, no longer beats the
  worst of them (HF's heuristic for `early_stopping=False`);
* at max_decode_len every surviving candidate is finished as it stands.

t5x normalises instead by the brevity penalty `((5 + L) / 6) ** alpha`
(Wu et al. 2016; t5x's default alpha is 0.6): `length_penalty_style="t5x"`
uses that formula inside the same procedure. t5x's own beam search also
differs in how it decides to stop, so its outputs are not reproduced exactly.
"""
from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from t5tune.infer import batching
from t5tune.models import t5

METHODS = ("greedy", "sample", "beam")
LENGTH_PENALTY_STYLES = ("hf", "t5x")
_NEG = -1.0e9  # HF's initial score of the beams that do not exist yet


@dataclasses.dataclass(frozen=True)
class DecodeOptions:
  """How to decode; hashable, it is part of the compilation key."""
  method: str = "greedy"
  max_decode_len: int = 64
  # sample
  temperature: float = 1.0
  top_k: int = 0  # 0 = no top-k filter
  top_p: float = 1.0  # 1 = no nucleus filter
  # beam
  num_beams: int = 4
  length_penalty: float = 1.0
  length_penalty_style: str = "hf"

  def __post_init__(self):
    if self.method not in METHODS:
      raise ValueError(f"decoding method {self.method!r}: expected one of {METHODS}")
    if self.max_decode_len <= 0:
      raise ValueError(f"max_decode_len={self.max_decode_len} must be positive")
    if self.temperature < 0:
      raise ValueError(f"temperature={self.temperature} must be >= 0 (0 means greedy)")
    if self.top_k < 0:
      raise ValueError(f"top_k={self.top_k} must be >= 0 (0 means no top-k filter)")
    if not 0.0 <= self.top_p <= 1.0:
      raise ValueError(f"top_p={self.top_p} must be in [0, 1]")
    if self.num_beams < 1:
      raise ValueError(f"num_beams={self.num_beams} must be >= 1")
    if self.length_penalty_style not in LENGTH_PENALTY_STYLES:
      raise ValueError(f"length_penalty_style={self.length_penalty_style!r}: expected one"
                       f" of {LENGTH_PENALTY_STYLES}")


@flax.struct.dataclass
class DecodeOutput:
  """Host results. `beams`/`beam_scores` ([B, N, T] / [B, N], best first) only for beam search."""
  tokens: np.ndarray
  scores: np.ndarray
  beams: np.ndarray | None = None
  beam_scores: np.ndarray | None = None


def filter_logits(logits_BV: jax.Array, temperature: float, top_k: int, top_p: float) -> jax.Array:
  """Temperature-scaled logits with everything outside the top-k / top-p set at -inf."""
  logits_BV = logits_BV / temperature
  if top_k > 0:
    kth_B1 = jax.lax.top_k(logits_BV, min(top_k, logits_BV.shape[-1]))[0][:, -1:]
    logits_BV = jnp.where(logits_BV < kth_B1, -jnp.inf, logits_BV)
  if top_p < 1.0:
    sorted_BV = jnp.sort(logits_BV, axis=-1)[:, ::-1]
    probs_BV = jax.nn.softmax(sorted_BV, axis=-1)
    # Keep a token while the probability mass before it is below top_p; the
    # most likely token is always kept, so top_p -> 0 is greedy.
    before_BV = jnp.cumsum(probs_BV, axis=-1) - probs_BV
    keep_BV = (before_BV < top_p).at[:, 0].set(True)
    threshold_B1 = jnp.min(jnp.where(keep_BV, sorted_BV, jnp.inf), axis=-1, keepdims=True)
    logits_BV = jnp.where(logits_BV < threshold_B1, -jnp.inf, logits_BV)
  return logits_BV


def _greedy_or_sample(model: t5.Transformer, enc_tokens_BL, key_data_B2, opts: DecodeOptions):
  cfg = model.config
  b = enc_tokens_BL.shape[0]
  t_max = opts.max_decode_len
  enc = model.encode(enc_tokens_BL)
  cache = model.init_cache(enc, enc_tokens_BL, t_max)
  greedy = opts.method == "greedy" or opts.temperature == 0.0
  keys_B = jax.random.wrap_key_data(key_data_B2)

  def cond(carry):
    t, _, _, done, _, _ = carry
    return (t < t_max) & ~jnp.all(done)

  def body(carry):
    t, token_B, cache, done_B, score_B, out_BT = carry
    logits_BV, cache = model.decode_step(token_B, cache)
    logp_BV = jax.nn.log_softmax(logits_BV, axis=-1)
    if greedy:
      nxt_B = jnp.argmax(logits_BV, axis=-1)
    else:
      filtered = filter_logits(logits_BV, opts.temperature, opts.top_k, opts.top_p)
      step_keys = jax.vmap(lambda k: jax.random.fold_in(k, t))(keys_B)
      nxt_B = jax.vmap(jax.random.categorical)(step_keys, filtered)
    nxt_B = nxt_B.astype(jnp.int32)
    token_logp_B = jnp.take_along_axis(logp_BV, nxt_B[:, None], axis=-1)[:, 0]
    score_B = score_B + jnp.where(done_B, 0.0, token_logp_B)
    nxt_B = jnp.where(done_B, cfg.pad_token_id, nxt_B)
    out_BT = jax.lax.dynamic_update_slice_in_dim(out_BT, nxt_B[:, None], t, axis=1)
    done_B = done_B | (nxt_B == cfg.eos_token_id)
    return t + 1, nxt_B, cache, done_B, score_B, out_BT

  init = (jnp.zeros((), jnp.int32), jnp.full((b,), cfg.decoder_start_token_id, jnp.int32),
          cache, jnp.zeros((b,), bool), jnp.zeros((b,), jnp.float32),
          jnp.full((b, t_max), cfg.pad_token_id, jnp.int32))
  *_, score_B, out_BT = jax.lax.while_loop(cond, body, init)
  return {"tokens": out_BT, "scores": score_B}


def _normalizer(length, opts: DecodeOptions):
  length = jnp.asarray(length, jnp.float32)
  if opts.length_penalty_style == "t5x":
    return ((5.0 + length) / 6.0) ** opts.length_penalty
  return length ** opts.length_penalty


class _BeamState(NamedTuple):
  """The beam-search loop's carry (a pytree, so `lax.while_loop` can carry it)."""
  t: jax.Array  # [] the decoder position of this step
  token_BN: jax.Array  # the last token of each running beam
  cache: t5.DecodeCache  # batch rows b * N + beam
  run_seq_BNT: jax.Array  # running beams' tokens so far
  run_score_BN: jax.Array  # their summed log-probabilities
  fin_seq_BNT: jax.Array  # the best finished hypotheses
  fin_score_BN: jax.Array  # their length-normalised scores (-inf where absent)
  fin_flag_BN: jax.Array  # which finished slots hold a hypothesis
  open_B: jax.Array  # rows still collecting hypotheses


def _beam(model: t5.Transformer, enc_tokens_BL, opts: DecodeOptions):
  cfg = model.config
  b, n, t_max = enc_tokens_BL.shape[0], opts.num_beams, opts.max_decode_len
  k2 = 2 * n  # HF keeps (1 + number of EOS ids) * num_beams candidates
  enc = model.encode(enc_tokens_BL)
  cache = model.init_cache(enc, enc_tokens_BL, t_max).repeat(n)
  batch_offset_B1 = (jnp.arange(b, dtype=jnp.int32) * n)[:, None]
  positions_T = jnp.arange(t_max)
  first_n_K = jnp.arange(k2) < n

  def take(x, idx):  # x [B, M, ...], idx [B, K] -> [B, K, ...]
    return jnp.take_along_axis(x, idx.reshape(idx.shape + (1,) * (x.ndim - 2)), axis=1)

  def cond(s: _BeamState):
    return (s.t < t_max) & jnp.any(s.open_B)

  def body(s: _BeamState) -> _BeamState:
    t = s.t
    logits, cache = model.decode_step(s.token_BN.reshape(-1), s.cache)
    v = logits.shape[-1]
    logp_BNV = jax.nn.log_softmax(logits, axis=-1).reshape(b, n, v) + s.run_score_BN[:, :, None]
    top_score_BK, top_idx_BK = jax.lax.top_k(logp_BNV.reshape(b, n * v), k2)
    parent_BK = top_idx_BK // v
    token_BK = (top_idx_BK % v).astype(jnp.int32)
    cand_seq_BKT = jnp.where(positions_T == t, token_BK[:, :, None],
                             take(s.run_seq_BNT, parent_BK))
    ends_BK = (token_BK == cfg.eos_token_id) | (t == t_max - 1)

    # The best num_beams candidates that did not end keep running.
    run_score_BN, keep_BN = jax.lax.top_k(jnp.where(ends_BK, -jnp.inf, top_score_BK), n)
    run_seq_BNT = take(cand_seq_BKT, keep_BN)
    token_BN = take(token_BK, keep_BN)
    # One gather per layer's self-attention cache; a row's beams share its
    # encoder keys/values, so those stay.
    cache = cache.take((take(parent_BK, keep_BN) + batch_offset_B1).reshape(-1), cross=False)

    # Candidates among the first num_beams that ended join the finished set.
    new_BK = ends_BK & first_n_K[None] & s.open_B[:, None]
    cand_score_BK = jnp.where(new_BK, top_score_BK / _normalizer(t + 1, opts), -jnp.inf)
    merged_score = jnp.concatenate([s.fin_score_BN, cand_score_BK], axis=1)
    merged_seq = jnp.concatenate([s.fin_seq_BNT, cand_seq_BKT], axis=1)
    merged_flag = jnp.concatenate([s.fin_flag_BN, new_BK], axis=1)
    fin_score_BN, sel_BN = jax.lax.top_k(merged_score, n)
    fin_seq_BNT = take(merged_seq, sel_BN)
    fin_flag_BN = take(merged_flag, sel_BN)

    # Stop collecting once the best running beam cannot beat the worst finished one.
    best_running_B = run_score_BN[:, 0] / _normalizer(t + 1, opts)
    full_B = jnp.all(fin_flag_BN, axis=1)
    open_B = s.open_B & (~full_B | (best_running_B > jnp.min(fin_score_BN, axis=1)))
    return _BeamState(t=t + 1, token_BN=token_BN, cache=cache, run_seq_BNT=run_seq_BNT,
                      run_score_BN=run_score_BN, fin_seq_BNT=fin_seq_BNT,
                      fin_score_BN=fin_score_BN, fin_flag_BN=fin_flag_BN, open_B=open_B)

  seq0 = jnp.full((b, n, t_max), cfg.pad_token_id, jnp.int32)
  init = _BeamState(
      t=jnp.zeros((), jnp.int32),
      token_BN=jnp.full((b, n), cfg.decoder_start_token_id, jnp.int32),
      cache=cache,
      run_seq_BNT=seq0,
      # Only the first beam exists at the start; the others score HF's -1e9.
      run_score_BN=jnp.concatenate(
          [jnp.zeros((b, 1), jnp.float32), jnp.full((b, n - 1), _NEG, jnp.float32)], axis=1),
      fin_seq_BNT=seq0,
      fin_score_BN=jnp.full((b, n), -jnp.inf, jnp.float32),
      fin_flag_BN=jnp.zeros((b, n), bool),
      open_B=jnp.ones((b,), bool))
  out = jax.lax.while_loop(cond, body, init)
  return {"tokens": out.fin_seq_BNT[:, 0], "scores": out.fin_score_BN[:, 0],
          "beams": out.fin_seq_BNT, "beam_scores": out.fin_score_BN}


def _decode_fn(model, enc_tokens_BL, key_data_B2, opts):
  if opts.method == "beam":
    return _beam(model, enc_tokens_BL, opts)
  return _greedy_or_sample(model, enc_tokens_BL, key_data_B2, opts)


def row_keys(rng: Any, batch: int) -> np.ndarray:
  """uint32 [batch, 2] key data: one key per row from a key, a seed, or per-row keys."""
  if rng is None:
    rng = 0
  if isinstance(rng, (int, np.integer)):
    rng = jax.random.key(int(rng))
  rng = jnp.asarray(rng) if not isinstance(rng, jax.Array) else rng
  if not jnp.issubdtype(rng.dtype, jax.dtypes.prng_key):
    rng = jax.random.wrap_key_data(rng.astype(jnp.uint32))
  if rng.ndim == 0:
    rng = jax.random.split(rng, batch)
  if rng.shape != (batch,):
    raise ValueError(f"rng: expected one key or {batch} keys (one per row), got shape {rng.shape}")
  return np.asarray(jax.random.key_data(rng))


def decode(model: t5.Transformer, encoder_input_tokens, options: DecodeOptions = DecodeOptions(),
           *, rng: Any = None) -> DecodeOutput:
  """Decodes a batch of encoder inputs (int [B, L], pad 0); see the module docstring.

  Args:
    model: the model; its parameters' mesh decides where the batch runs.
    encoder_input_tokens: int [B, L], EOS-terminated, right-padded with 0.
    options: the method and its settings.
    rng: for sampling: a key, an int seed, or B keys (one per row); default 0.
  """
  tokens = np.asarray(encoder_input_tokens, np.int32)
  if tokens.ndim != 2:
    raise ValueError(f"encoder_input_tokens must be [batch, length], got shape {tokens.shape}")
  keys = row_keys(rng if options.method == "sample" else 0, tokens.shape[0])
  out = batching.run(_decode_fn, model, (tokens, keys), options)
  return DecodeOutput(tokens=out["tokens"], scores=out["scores"],
                      beams=out.get("beams"), beam_scores=out.get("beam_scores"))


def greedy_decode(model: t5.Transformer, encoder_input_tokens, max_decode_len: int) -> np.ndarray:
  """Greedy decoding: int32 [B, max_decode_len], EOS kept, pad (0) after it.

  The public `t5tune.greedy_decode`; the same sharded loop as
  `decode(..., DecodeOptions(method="greedy"))`, which also returns scores.
  """
  options = DecodeOptions(method="greedy", max_decode_len=int(max_decode_len))
  return decode(model, encoder_input_tokens, options).tokens
