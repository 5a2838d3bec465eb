"""Model size and cost: parameter counts per component (from abstract shapes) and FLOPs."""
from __future__ import annotations

import collections
import math

from flax import nnx

from t5tune.models import family
from t5tune.models import paths


def parameter_counts(config) -> dict[str, int]:
  """Parameters per component of a model of any family, from `nnx.eval_shape`: nothing is allocated."""
  model = family.abstract_model(config)
  counts: dict[str, int] = collections.OrderedDict()
  for path, var in nnx.to_flat_state(nnx.state(model, nnx.Param)):
    in_layer = paths.parse(path)
    if in_layer is not None:
      # all layers of a stack together, e.g. decoder/layers/cross_attention
      key = f"{in_layer.stack}/{paths.LAYERS}/{in_layer.rest[0]}"
    elif path[0] in paths.STACKS:
      key = f"{path[0]}/{path[1]}"
    else:
      key = path[0]
    counts[key] = counts.get(key, 0) + math.prod(var.shape)
  counts["total"] = sum(v for k, v in counts.items())
  return counts


def _stack_dims(config, stack: str) -> tuple[int, int, int, int, int]:
  """(width, query heads x head size, key/value heads x head size, MLP weights, layers) of a stack."""
  if hasattr(config, "stack"):  # per-stack shapes (T5Gemma: grouped-query attention)
    s = config.stack(stack)
    return (s.d_model, s.num_heads * s.head_dim, s.num_kv_heads * s.head_dim,
            s.d_model * s.d_ff * 3, len(s.layer_types))
  inner = config.num_heads * config.d_kv
  mlp = config.d_model * config.d_ff * (3 if config.is_gated else 2)
  return config.d_model, inner, inner, mlp, paths.num_layers(config, stack)


def describe(config) -> str:
  """One line naming the architecture's shape, for `t5tune info`."""
  if hasattr(config, "stack"):
    parts = []
    for stack in paths.STACKS:
      s = config.stack(stack)
      local = s.layer_types.count("sliding_attention")
      parts.append(f"{stack} d_model={s.d_model}, d_ff={s.d_ff}, heads={s.num_heads}"
                   f"x{s.head_dim} (kv {s.num_kv_heads}), layers={len(s.layer_types)}"
                   f" ({local} local)")
    return (f"{of_family(config)}: " + "; ".join(parts)
            + f", vocab={config.vocab_size}, tied={config.tie_word_embeddings}")
  return (f"{config.feed_forward_proj} FFN, d_model={config.d_model}, d_ff={config.d_ff},"
          f" heads={config.num_heads}x{config.d_kv}, layers={config.num_encoder_layers}"
          f"+{config.num_decoder_layers}, vocab={config.vocab_size},"
          f" tied={config.tie_word_embeddings}")


def of_family(config) -> str:
  return family.of(config).name


def encoder_flops(config, inputs_len: int) -> float:
  """Matmul FLOPs of the encoder over one input of `inputs_len` tokens (as `forward_flops`)."""
  d, q, kv, mlp, n = _stack_dims(config, "encoder")
  L = inputs_len
  return float(n * L * (2 * (2 * d * q + 2 * d * kv + mlp) + 4 * L * q))


def forward_flops(config, inputs_len: int, targets_len: int) -> float:
  """Matmul FLOPs of one forward pass over one (inputs, targets) example, for a model of any family.

  Counts 2 FLOPs per multiply-add of every projection, the attention score and
  weighted-sum products (full, unmasked T x T for the causal decoder and for
  sliding-window layers, as MFU conventions do), and the output projection.
  Norms, softmax, positions and soft-capping are negligible and left out.
  """
  d_enc = _stack_dims(config, "encoder")[0]
  d, q, kv, mlp, n = _stack_dims(config, "decoder")
  L, T = inputs_len, targets_len
  enc = encoder_flops(config, L)
  dec_per_token = (2 * (2 * d * q + 2 * d * kv + 2 * d * q + mlp)  # self q,k,v,o + cross q,o + mlp
                   + 4 * T * q + 4 * L * q)                       # self and cross attention
  cross_kv = 2 * (2 * d_enc * kv) * L                             # cross k,v of the encoder output
  dec = n * (T * dec_per_token + cross_kv)
  head = 2 * d * config.vocab_size * T
  return float(enc + dec + head)


def train_flops(config, inputs_len: int, targets_len: int) -> float:
  """Forward plus backward (twice the forward) FLOPs of one training example."""
  return 3.0 * forward_flops(config, inputs_len, targets_len)


def human(n: float) -> str:
  for unit, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
    if abs(n) >= scale:
      return f"{n / scale:.3g}{unit}"
  return f"{n:g}"
