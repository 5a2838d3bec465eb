"""Model size and cost: parameter counts per component (from abstract shapes) and FLOPs."""
from __future__ import annotations

import collections
import math

from flax import nnx

from t5tune.models import paths
from t5tune.models import t5
from t5tune.models.config import T5Config


def parameter_counts(config: T5Config) -> dict[str, int]:
  """Parameters per component, from `nnx.eval_shape`: nothing is allocated."""
  model = t5.abstract_model(config)
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


def encoder_flops(config: T5Config, inputs_len: int) -> float:
  """Matmul FLOPs of the encoder over one input of `inputs_len` tokens (as `forward_flops`)."""
  d, inner = config.d_model, config.num_heads * config.d_kv
  mlp = d * config.d_ff * (3 if config.is_gated else 2)
  L = inputs_len
  return float(config.num_encoder_layers * L * (2 * (4 * d * inner + mlp) + 4 * L * inner))


def forward_flops(config: T5Config, inputs_len: int, targets_len: int) -> float:
  """Matmul FLOPs of one forward pass over one (inputs, targets) example.

  Counts 2 FLOPs per multiply-add of every projection, the attention score and
  weighted-sum products (full, unmasked T x T for the causal decoder, as MFU
  conventions do), and the output projection. Norms, softmax and the position
  bias are negligible and left out.
  """
  d, inner, f, v = config.d_model, config.num_heads * config.d_kv, config.d_ff, config.vocab_size
  mlp = d * f * (3 if config.is_gated else 2)
  attn_proj = 4 * d * inner
  L, T = inputs_len, targets_len
  enc = encoder_flops(config, L)
  dec_per_token = (2 * (attn_proj + 2 * d * inner + mlp)  # self q,k,v,o + cross q,o + mlp
                   + 4 * T * inner + 4 * L * inner)      # self and cross attention
  cross_kv = 2 * (2 * d * inner) * L                    # cross k,v of the encoder output
  dec = config.num_decoder_layers * (T * dec_per_token + cross_kv)
  head = 2 * d * v * T
  return float(enc + dec + head)


def train_flops(config: T5Config, inputs_len: int, targets_len: int) -> float:
  """Forward plus backward (twice the forward) FLOPs of one training example."""
  return 3.0 * forward_flops(config, inputs_len, targets_len)


def human(n: float) -> str:
  for unit, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
    if abs(n) >= scale:
      return f"{n / scale:.3g}{unit}"
  return f"{n:g}"
