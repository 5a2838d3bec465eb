"""Beam search on the model's KV cache, as Hugging Face transformers' (v5) beam search.

It follows transformers' beam search with `early_stopping=False`, so the same
weights give the same sequences:

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

Penalties (`t5tune.infer.penalties`) apply to every beam's log-probabilities,
as transformers applies its logits processors there, so they shape the scores.
`decoding` registers `search` as the method "beam".
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from t5tune.infer import penalties
from t5tune.models import t5

LENGTH_PENALTY_STYLES = ("hf", "t5x")
_NEG = -1.0e9  # HF's initial score of the beams that do not exist yet


def _normalizer(length, opts):
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


def search(model: t5.Transformer, enc_tokens_BL, opts) -> dict[str, jax.Array]:
  """Beam search of `opts` (a `decoding.DecodeOptions`): {"tokens", "scores", "beams", "beam_scores"}."""
  cfg = model.config
  b, n, t_max = enc_tokens_BL.shape[0], opts.num_beams, opts.max_decode_len
  k2 = 2 * n  # HF keeps (1 + number of EOS ids) * num_beams candidates
  enc = model.encode(enc_tokens_BL)
  cache = model.init_cache(enc, enc_tokens_BL, t_max).repeat(n)
  batch_offset_B1 = (jnp.arange(b, dtype=jnp.int32) * n)[:, None]
  positions_T = jnp.arange(t_max)
  first_n_K = jnp.arange(k2) < n
  # transformers' beam search applies its logits processors to the log-probabilities, so
  # the penalties shape the beams' scores too; only compiled in when some penalty is on.
  active = opts.active_penalties()
  penalty_rows = penalties.per_row(b * n, **active) if active else None

  def take(x, idx):  # x [B, M, ...], idx [B, K] -> [B, K, ...]
    return jnp.take_along_axis(x, idx.reshape(idx.shape + (1,) * (x.ndim - 2)), axis=1)

  def cond(s: _BeamState):
    return (s.t < t_max) & jnp.any(s.open_B)

  def body(s: _BeamState) -> _BeamState:
    t = s.t
    logits, cache = model.decode_step(s.token_BN.reshape(-1), s.cache)
    v = logits.shape[-1]
    logp = jax.nn.log_softmax(logits, axis=-1)
    if penalty_rows is not None:
      logp = penalties.adjust(logp, s.run_seq_BNT.reshape(b * n, t_max), t, penalty_rows,
                              start_id=cfg.decoder_start_token_id, eos_id=cfg.eos_token_id)
    logp_BNV = logp.reshape(b, n, v) + s.run_score_BN[:, :, None]
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
