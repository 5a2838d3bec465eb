"""Scoring: log-likelihood of given targets, and rank classification over answer options.

    s = scoring.score(model, encoder_input_tokens, target_tokens)
    s.sum, s.mean            # [B]: summed and per-token mean log-likelihood
    r = scoring.rank_classify(model, encoder_input_tokens, option_tokens)
    r.best, r.scores         # [B] index of the best option, [B, K] its log-likelihoods

Targets are EOS-terminated and right-padded with 0; the EOS token counts,
padding does not. Rank classification scores every option of an example as
a target for the same input (as seqio's rank-classification preprocessing and
FLAN's evaluation do) and predicts the one with the highest summed
log-likelihood (or per-token mean, `length_normalize=True`). The encoder runs
once per example, not once per option. Options that are all padding (examples
with fewer options than the widest one, or padding rows of a batch) score
-inf; a row without any option gets `best` 0.
"""
from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from t5tune.infer import batching
from t5tune.infer import decoding
from t5tune.models import t5


@flax.struct.dataclass
class Scores:
  """Host results of `score`."""
  sum: np.ndarray  # [B]
  mean: np.ndarray  # [B]
  num_tokens: np.ndarray  # [B]
  token_logprobs: np.ndarray  # [B, T], 0 at padding


@flax.struct.dataclass
class RankResult:
  """Host results of `rank_classify`."""
  best: np.ndarray  # [B] index of the chosen option
  scores: np.ndarray  # [B, K] summed log-likelihood per option (-inf for absent options)
  mean: np.ndarray  # [B, K] per-token mean log-likelihood


def _shift_right(targets_BT: jax.Array, start: int) -> jax.Array:
  return jnp.concatenate(
      [jnp.full(targets_BT.shape[:1] + (1,), start, targets_BT.dtype), targets_BT[:, :-1]], axis=1)


def _token_logprobs(model: t5.Transformer, enc_BLD, enc_tokens_BL, targets_BT,
                    enc_repeats: int = 1):
  cfg = model.config
  logits_BTV = model.decode(enc_BLD, enc_tokens_BL,
                            _shift_right(targets_BT, cfg.decoder_start_token_id),
                            enc_repeats=enc_repeats)
  logp_BTV = jax.nn.log_softmax(logits_BTV, axis=-1)
  tok_BT = jnp.take_along_axis(logp_BTV, targets_BT[..., None], axis=-1)[..., 0]
  return jnp.where(targets_BT != cfg.pad_token_id, tok_BT, 0.0)


def _score_fn(model, enc_tokens_BL, targets_BT, static):
  del static
  enc = model.encode(enc_tokens_BL)
  return _token_logprobs(model, enc, enc_tokens_BL, targets_BT)


def score(model: t5.Transformer, encoder_input_tokens, target_tokens) -> Scores:
  """Log-likelihood of `target_tokens` [B, T] given `encoder_input_tokens` [B, L]."""
  enc = np.asarray(encoder_input_tokens, np.int32)
  tgt = np.asarray(target_tokens, np.int32)
  if enc.ndim != 2 or tgt.ndim != 2 or enc.shape[0] != tgt.shape[0]:
    raise ValueError(f"expected encoder_input_tokens [B, L] and target_tokens [B, T] with the"
                     f" same B; got {enc.shape} and {tgt.shape}")
  tok = batching.run(_score_fn, model, (enc, tgt), None)
  n = (tgt != model.config.pad_token_id).sum(axis=1)
  total = tok.sum(axis=1)
  return Scores(sum=total, mean=total / np.maximum(n, 1), num_tokens=n, token_logprobs=tok)


def compile_score(model: t5.Transformer, batch: int, input_len: int, target_len: int):
  """`score`'s program for [batch, input_len] inputs and [batch, target_len] targets, compiled ahead of time."""
  return batching.compile_only(_score_fn, model, [((batch, input_len), np.int32),
                                                   ((batch, target_len), np.int32)], None)


def compile_rank(model: t5.Transformer, batch: int, input_len: int, options: int, option_len: int):
  """`rank_classify`'s program for [batch, options, option_len] options, compiled ahead of time."""
  return batching.compile_only(_rank_fn, model, [((batch, input_len), np.int32),
                                                  ((batch, options, option_len), np.int32)], None)


def _rank_fn(model, enc_tokens_BL, options_BKT, static):
  del static
  b, k, t = options_BKT.shape
  enc_BLD = model.encode(enc_tokens_BL)
  tok = _token_logprobs(model, enc_BLD, enc_tokens_BL, options_BKT.reshape(b * k, t),
                        enc_repeats=k)
  return tok.reshape(b, k, t).sum(axis=-1)


def rank_classify(model: t5.Transformer, encoder_input_tokens, option_tokens,
                  *, length_normalize: bool = False) -> RankResult:
  """Scores options [B, K, T] (EOS-terminated, 0-padded) for inputs [B, L]; picks the best."""
  enc = np.asarray(encoder_input_tokens, np.int32)
  opts = np.asarray(option_tokens, np.int32)
  if opts.ndim != 3 or enc.ndim != 2 or opts.shape[0] != enc.shape[0]:
    raise ValueError(f"expected encoder_input_tokens [B, L] and option_tokens [B, K, T] with"
                     f" the same B; got {enc.shape} and {opts.shape}")
  sums = batching.run(_rank_fn, model, (enc, opts), None)
  n = (opts != model.config.pad_token_id).sum(axis=-1)
  present = n > 0
  sums = np.where(present, sums, -np.inf)
  mean = np.where(present, sums / np.maximum(n, 1), -np.inf)
  best = np.argmax(mean if length_normalize else sums, axis=1)
  return RankResult(best=best, scores=sums, mean=mean)


@flax.struct.dataclass
class GreedyScores:
  """Host results of `score_greedy`."""
  sum: np.ndarray  # [B] (or [B, K]) summed log-likelihood of the target tokens
  greedy: np.ndarray  # bool, same shape: every target token is the model's argmax there


def _score_greedy_fn(model, enc_tokens_BL, targets_BKT, static):
  del static
  cfg = model.config
  b, k, t = targets_BKT.shape
  # The encoder (and each layer's cross-attention keys and values) runs once
  # per example; its K targets share it (as in _rank_fn).
  targets = targets_BKT.reshape(b * k, t)
  logits = model.decode(model.encode(enc_tokens_BL), enc_tokens_BL,
                        _shift_right(targets, cfg.decoder_start_token_id), enc_repeats=k)
  logp = jax.nn.log_softmax(logits, axis=-1)
  real = targets != cfg.pad_token_id
  tok = jnp.take_along_axis(logp, targets[..., None], axis=-1)[..., 0]
  greedy = jnp.all(jnp.where(real, decoding.argmax(logits) == targets, True), axis=1)
  return {"sum": jnp.where(real, tok, 0.0).sum(axis=1).reshape(b, k),
          "greedy": greedy.reshape(b, k)}


def score_greedy(model: t5.Transformer, encoder_input_tokens, target_tokens) -> GreedyScores:
  """Summed log-likelihood of targets (0-padded; no EOS is added) and whether greedy decoding
  would have produced them: what lm-evaluation-harness asks of a model.

  `target_tokens` is [B, T] (one target per input) or [B, K, T] (K targets sharing their
  input's encoder pass, e.g. a question's answer options); results are [B] or [B, K].
  """
  enc = np.asarray(encoder_input_tokens, np.int32)
  tgt = np.asarray(target_tokens, np.int32)
  out = batching.run(_score_greedy_fn, model, (enc, tgt if tgt.ndim == 3 else tgt[:, None]), None)
  if tgt.ndim == 2:
    return GreedyScores(sum=out["sum"][:, 0], greedy=out["greedy"][:, 0])
  return GreedyScores(sum=out["sum"], greedy=out["greedy"])
