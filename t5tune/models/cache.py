"""The KV cache incremental decoding steps on (`Transformer.init_cache` / `decode_step` in t5.py).

Shape suffixes as in t5.py (B batch, H heads, L encoder length, K d_kv).
"""
from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp

Array = jax.Array


@flax.struct.dataclass
class DecodeCache:
  """State of incremental decoding; batch is axis 0 of every array but `index`.

  self_k/self_v: per decoder layer, [B, H, T_max, K] self-attention keys/values
  cross_k/cross_v: per decoder layer, [B, H, L, K] encoder keys/values (computed once)
  cross_mask: [B, L] which encoder positions may be attended
  index: [] the decoder position the next `decode_step` writes

  Keys and values are kept per layer, in the layout attention consumes: a
  step updates each layer's cache in place and reads it without a transpose;
  stacking layers into one array would copy the whole cache every step.
  Scanned layers (`stacked`) keep each of the four as one array
  [layers, B, ...] instead (batch is then axis 1), carried through the scan
  and written in place one position at a time.
  """

  self_k: tuple[Array, ...] | Array
  self_v: tuple[Array, ...] | Array
  cross_k: tuple[Array, ...] | Array
  cross_v: tuple[Array, ...] | Array
  cross_mask: Array
  index: Array
  stacked: bool = flax.struct.field(pytree_node=False, default=False)

  @property
  def max_decode_len(self) -> int:
    return (self.self_k if self.stacked else self.self_k[0]).shape[-2]

  def _map_rows(self, fn, cross: bool = True) -> "DecodeCache":
    """Applies `fn(array, batch_axis)` to every batch-indexed array."""
    if self.stacked:
      each = lambda x: fn(x, 1)
    else:
      each = lambda xs: tuple(fn(x, 0) for x in xs)
    new = dict(self_k=each(self.self_k), self_v=each(self.self_v))
    if cross:
      new.update(cross_k=each(self.cross_k), cross_v=each(self.cross_v),
                 cross_mask=fn(self.cross_mask, 0))
    return self.replace(**new)

  def repeat(self, n: int) -> "DecodeCache":
    """Each batch row repeated n times consecutively (row b -> rows b*n .. b*n+n-1), for beams."""
    return self._map_rows(lambda x, axis: jnp.repeat(x, n, axis=axis))

  def take(self, rows_B: Array, *, cross: bool = True) -> "DecodeCache":
    """Gathers batch rows (e.g. the surviving beams' parents), one gather per array.

    `cross=False` leaves the encoder's keys/values and mask as they are: right
    when rows are only reordered among copies of the same example (beams).
    """
    return self._map_rows(lambda x, axis: jnp.take(x, rows_B, axis=axis), cross=cross)
