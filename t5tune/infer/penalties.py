"""Logit adjustments from each row's own tokens: repetition, frequency and presence penalties, a minimum length, no repeated n-grams.

The sampling loop (`decoding.sample_steps`) applies them to every step's
logits before a method picks the token, so before temperature, top-k and
top-p, each row with its own settings (`decoding.Rows`); beam search applies
them to each beam's log-probabilities, as transformers does, so they shape
the beams' scores:

* `repetition_penalty` r (transformers' `RepetitionPenaltyLogitsProcessor`,
  from CTRL): the logit x of every token already in the row's decoder sequence
  becomes x / r where x > 0 and x * r where it is not. The decoder sequence is
  what transformers counts for an encoder-decoder model: the decoder start
  token and the tokens emitted so far, not the prompt. 1 is off.
* `frequency_penalty` f and `presence_penalty` p (OpenAI's completions API):
  x - f * c - p * (c > 0), c the number of times the row has emitted the
  token. 0 is off; OpenAI's range is [-2, 2].
* `min_tokens` m (transformers' `min_new_tokens`): EOS cannot be emitted
  before m tokens have been. 0 is off.
* `no_repeat_ngram_size` n (transformers' `NoRepeatNGramLogitsProcessor`):
  a token that would complete an n-gram already in the decoder sequence
  (start token included) is banned. 0 is off.

In the sampling loop, scores and log-probabilities stay those of the model's
unmodified distribution, as they do under temperature and top-k / top-p.
"""
from __future__ import annotations

import types
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

# Each setting's "off" value, as `DecodeOptions` and the server's requests spell it.
NEUTRAL = {"repetition_penalty": 1.0, "frequency_penalty": 0.0, "presence_penalty": 0.0,
           "min_tokens": 0, "no_repeat_ngram_size": 0}
# Each setting's per-row array: its field name (on `decoding.Rows` too) and dtype.
_ARRAYS = {"repetition_penalty": ("repetition_penalty_B", np.float32),
           "frequency_penalty": ("frequency_penalty_B", np.float32),
           "presence_penalty": ("presence_penalty_B", np.float32),
           "min_tokens": ("min_len_B", np.int32),
           "no_repeat_ngram_size": ("no_repeat_ngram_B", np.int32)}


def row_arrays(batch: int, **settings: Any) -> dict[str, np.ndarray]:
  """Host arrays [batch] of the settings, by field name; a scalar is broadcast, a missing one is off."""
  unknown = set(settings) - set(_ARRAYS)
  if unknown:
    raise TypeError(f"unknown penalty settings {sorted(unknown)}; expected {list(_ARRAYS)}")
  return {field: np.broadcast_to(np.asarray(settings.get(name, NEUTRAL[name]), dtype),
                                 (batch,)).copy()
          for name, (field, dtype) in _ARRAYS.items()}


def per_row(batch: int, **settings: Any) -> types.SimpleNamespace:
  """The settings as the object `adjust` reads (beam search's; the sampling loop has `decoding.Rows`)."""
  return types.SimpleNamespace(**row_arrays(batch, **settings))


def active(rows: Any) -> jax.Array:
  """Whether any row of the batch asks for an adjustment (a bool scalar)."""
  return (jnp.any(rows.repetition_penalty_B != 1.0) | jnp.any(rows.frequency_penalty_B != 0.0)
          | jnp.any(rows.presence_penalty_B != 0.0) | jnp.any(rows.min_len_B > 0)
          | jnp.any(rows.no_repeat_ngram_B > 0))


def counts(tokens_BT: jax.Array, t: jax.Array, vocab: int) -> jax.Array:
  """int32 [B, V]: how many times each row emitted each token in its first `t` steps."""
  b, steps = tokens_BT.shape
  emitted_BT = jnp.broadcast_to((jnp.arange(steps) < t).astype(jnp.int32), (b, steps))
  return jnp.zeros((b, vocab), jnp.int32).at[jnp.arange(b)[:, None], tokens_BT].add(emitted_BT)


def repeated_ngrams(tokens_BT: jax.Array, t: jax.Array, n_B: jax.Array, *, start_id: int,
                    vocab: int) -> jax.Array:
  """bool [B, V]: the tokens that would complete an n_B-gram already in each row's sequence.

  The sequence is the start token and the first `t` emitted tokens; rows with
  n_B 0 ban nothing. An n-gram starting at position p matches when its first
  n - 1 tokens equal the sequence's last n - 1; its n-th token is banned.
  """
  b, steps = tokens_BT.shape
  seq_BS = jnp.concatenate([jnp.full((b, 1), start_id, tokens_BT.dtype), tokens_BT], axis=1)
  size = steps + 1
  cur = t + 1  # the sequence's length
  head_B = n_B - 1  # tokens an n-gram shares with the sequence's end
  p_1S = jnp.arange(size)[None, :]
  at = lambda idx: jnp.take_along_axis(seq_BS, jnp.clip(idx, 0, size - 1), axis=1)

  def compare(k, match_BS):
    tail_B1 = at((cur - head_B + k)[:, None])  # the sequence's (k+1)-th last-but-head token
    return match_BS & ((at(p_1S + k) == tail_B1) | (k >= head_B)[:, None])

  # An n-gram longer than the sequence bans nothing (live_BS below), so no row needs more than
  # `size` rounds, whatever n a request asks for.
  match_BS = jax.lax.fori_loop(0, jnp.minimum(jnp.max(head_B), size), compare,
                               jnp.ones((b, size), bool))
  # The whole n-gram lies in the sequence, and transformers bans nothing before cur + 1 >= n.
  live_BS = (p_1S + head_B[:, None] < cur) & (n_B[:, None] > 0) & (cur + 1 >= n_B)[:, None]
  banned_BS = at(p_1S + head_B[:, None])
  return jnp.zeros((b, vocab), bool).at[jnp.arange(b)[:, None], banned_BS].max(match_BS & live_BS)


def adjust(logits_BV: jax.Array, tokens_BT: jax.Array, t: jax.Array, rows: Any, *,
           start_id: int, eos_id: int) -> jax.Array:
  """The logits of step `t` with every row's penalties applied (see the module docstring).

  `tokens_BT` holds each row's emitted tokens at positions < t (what is after
  them is not read).
  """
  b, v = logits_BV.shape
  c_BV = counts(tokens_BT, t, v)
  vocab_1V = jnp.arange(v)[None, :]
  seen_BV = (c_BV > 0) | (vocab_1V == start_id)
  r_B1 = rows.repetition_penalty_B[:, None]
  x_BV = jnp.where(seen_BV, jnp.where(logits_BV > 0, logits_BV / r_B1, logits_BV * r_B1),
                   logits_BV)
  x_BV = (x_BV - rows.frequency_penalty_B[:, None] * c_BV.astype(x_BV.dtype)
          - rows.presence_penalty_B[:, None] * (c_BV > 0).astype(x_BV.dtype))
  too_early_BV = (vocab_1V == eos_id) & (t < rows.min_len_B)[:, None]
  banned_BV = too_early_BV | repeated_ngrams(tokens_BT, t, rows.no_repeat_ngram_B,
                                             start_id=start_id, vocab=v)
  return jnp.where(banned_BV, -jnp.inf, x_BV)


def apply(logits_BV: jax.Array, tokens_BT: jax.Array, t: jax.Array, rows: Any, *,
          start_id: int, eos_id: int) -> jax.Array:
  """`adjust` when some row asks for it; otherwise the logits as they are, at no cost."""
  return jax.lax.cond(
      active(rows),
      lambda x: adjust(x, tokens_BT, t, rows, start_id=start_id, eos_id=eos_id),
      lambda x: x, logits_BV)
