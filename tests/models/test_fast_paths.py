"""The CPU speed changes compute what the formulations they replaced computed.

The previous formulations are kept here as the reference: `Dense` as a 3-D
dot on [B, L, D], the cross-entropy via log-probabilities [B, T, V] with an
argmax accuracy, and the relative-position bias gathered per batch row
([B, H, T, S] from positions broadcast to every row) and added plainly. Loss must agree to 1e-6 relative and every
gradient to 1e-5 of its largest entry: the position-bias gradient is summed
in another order (a one-hot dot, not a scatter), so float32 rounding
differs; a mistake is off by O(1).
tests/models/test_hf_parity.py judges the same gradients against a float64
reference.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from t5tune.models import config as model_config
from t5tune.models import layers, t5
from t5tune.train import losses

B, L, T = 4, 12, 6


def _old_dense_call(self, x):
  x = x.astype(self.dtype)
  y = jnp.dot(x, self.kernel[...].astype(self.dtype))
  if self.lora_rank:
    low = jnp.dot(x, self.lora_a[...].astype(self.dtype))
    y = y + self.lora_scale * jnp.dot(low, self.lora_b[...].astype(self.dtype))
  return y


def _old_logits(self, y_BTD):
  cfg = self.config
  if cfg.scale_decoder_outputs:
    y_BTD = y_BTD * (cfg.d_model ** -0.5)
  if cfg.tie_word_embeddings:
    emb_VD = self.token_embedder.embedding[...].astype(jnp.dtype(cfg.dtype))
    return jnp.einsum("btd,vd->btv", y_BTD, emb_VD, preferred_element_type=jnp.float32)
  return self.lm_head(y_BTD).astype(jnp.float32)


def _old_cross_entropy(logits_BTV, targets_BT, weights_BT):
  logits = logits_BTV.astype(jnp.float32)
  weights = weights_BT.astype(jnp.float32)
  log_z_BT = jax.nn.logsumexp(logits, axis=-1)
  log_probs_BTV = logits - log_z_BT[..., None]
  target_lp_BT = jnp.take_along_axis(log_probs_BTV, targets_BT[..., None], axis=-1)[..., 0]
  loss = jnp.sum(-target_lp_BT * weights) / jnp.maximum(jnp.sum(weights), 1.0)
  correct = jnp.sum((jnp.argmax(logits, axis=-1) == targets_BT).astype(jnp.float32) * weights)
  return loss, correct


def _old_positions(tokens_BL, positions_BL):
  if positions_BL is not None:
    return positions_BL.astype(jnp.int32)
  b, l = tokens_BL.shape
  return jnp.broadcast_to(jnp.arange(l, dtype=jnp.int32), (b, l))


def _old_relpos_call(self, q_pos_BT, k_pos_BS):
  rel_BTS = k_pos_BS[:, None, :] - q_pos_BT[:, :, None]
  buckets = layers.relative_position_bucket(
      rel_BTS, bidirectional=self.bidirectional, num_buckets=self.num_buckets,
      max_distance=self.max_distance)
  bias_BTSH = jnp.take(self.embedding[...].astype(jnp.float32), buckets, axis=0)
  return jnp.transpose(bias_BTSH, (0, 3, 1, 2))


def _old_attend(self, q_BTD, k_BHSK, v_BHSK, bias_BHTS, mask_BHTS, rngs):
  if self.prefix_length:
    k_BHSK, v_BHSK, bias_BHTS, mask_BHTS = self._with_prefix(k_BHSK, v_BHSK, bias_BHTS, mask_BHTS)
  q_BTHK = self._split(self.q(q_BTD))
  scores = jnp.einsum("bthk,bhsk->bhts", q_BTHK, k_BHSK.astype(self.dtype),
                      preferred_element_type=jnp.float32) + bias_BHTS
  if mask_BHTS is not None:
    scores = jnp.where(mask_BHTS, scores, layers._NEG_INF)  # pylint: disable=protected-access
  probs = self.dropout(jax.nn.softmax(scores, axis=-1), deterministic=rngs is None, rngs=rngs)
  out_BTHK = jnp.einsum("bhts,bhsk->bthk", probs.astype(self.dtype), v_BHSK.astype(self.dtype))
  b, t = out_BTHK.shape[:2]
  return self.o(out_BTHK.reshape(b, t, self.num_heads * self.d_kv))


def _batch(vocab):
  rng = np.random.RandomState(0)
  enc = rng.randint(2, vocab, (B, L)).astype(np.int32)
  enc[1, 7:] = 0
  tgt = rng.randint(2, vocab, (B, T)).astype(np.int32)
  dec = np.concatenate([np.zeros((B, 1), np.int32), tgt[:, :-1]], axis=1)
  weights = np.ones((B, T), np.float32)
  weights[2, 4:] = 0
  return enc, dec, tgt, weights


def _loss_and_grads(model, batch, loss_fn):
  enc, dec, tgt, weights = batch

  @nnx.jit
  def run(m):
    def f(m):
      loss, correct = loss_fn(m(enc, dec), tgt, weights)
      return loss, correct
    (loss, correct), grads = nnx.value_and_grad(f, has_aux=True)(m)
    return loss, correct, grads

  loss, correct, grads = run(model)
  flat = {path: np.asarray(v[...]) for path, v in nnx.to_flat_state(grads)}
  return float(loss), float(correct), flat


def _new_cross_entropy(logits, targets, weights):
  loss, stats = losses.cross_entropy(logits, targets, weights)
  return loss, stats["correct"]


@pytest.mark.parametrize("preset_overrides", [
    {},  # T5 v1.1: gated GELU, untied head
    {"feed_forward_proj": "relu", "tie_word_embeddings": True, "lora_rank": 2,
     "adapter_dim": 8},  # T5 v1.0 tied head, with LoRA and adapters
    {"relative_attention_per_layer": True, "scan_layers": True},  # umT5-style tables, scanned
    {"prefix_length": 3},  # prefix tuning: learned keys and values before the real ones
], ids=["v1_1", "v1_0_peft", "per_layer_scanned", "prefix"])
def test_loss_and_gradients_equal_previous_formulation(monkeypatch, preset_overrides):
  cfg = model_config.preset("tiny", **preset_overrides)
  model = t5.build_model(cfg, seed=0)
  batch = _batch(cfg.vocab_size)
  new = _loss_and_grads(model, batch, _new_cross_entropy)
  monkeypatch.setattr(layers.Dense, "__call__", _old_dense_call)
  monkeypatch.setattr(t5.Transformer, "_logits", _old_logits)
  monkeypatch.setattr(t5, "_positions", _old_positions)
  monkeypatch.setattr(layers.RelativePositionBias, "__call__", _old_relpos_call)
  monkeypatch.setattr(layers.Attention, "attend", _old_attend)
  old = _loss_and_grads(model, batch, _old_cross_entropy)
  assert new[0] == pytest.approx(old[0], rel=1e-6, abs=0)
  assert new[1] == old[1]
  assert new[2].keys() == old[2].keys()
  for path, g_old in old[2].items():
    scale = float(np.max(np.abs(g_old))) or 1.0
    np.testing.assert_allclose(new[2][path], g_old, rtol=1e-5, atol=1e-5 * scale,
                               err_msg=str(path))


def test_max_based_accuracy_counts_what_argmax_counts():
  rng = np.random.RandomState(1)
  logits = rng.randn(3, 5, 40).astype(np.float32)
  targets = rng.randint(0, 40, (3, 5)).astype(np.int32)
  targets[0, :3] = np.argmax(logits[0, :3], axis=-1)  # some correct predictions
  weights = np.ones((3, 5), np.float32)
  _, stats = losses.cross_entropy(logits, targets, weights)
  assert float(stats["correct"]) == float(np.sum(np.argmax(logits, -1) == targets))
  assert float(stats["correct"]) >= 3
