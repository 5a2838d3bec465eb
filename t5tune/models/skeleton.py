"""What every family's encoder-decoder module shares: the training forward pass composed of `encode` and `decode`.

A family's module (`t5.Transformer`, `t5gemma.Transformer`) subclasses
`EncoderDecoder` and defines `encode`, `decode`, `init_cache` and
`decode_step` (the contract is `family.EncoderDecoder`).
"""
from __future__ import annotations

from flax import nnx


class EncoderDecoder(nnx.Module):

  @staticmethod
  def _rngs(dropout_rng):
    return None if dropout_rng is None else nnx.Rngs(dropout=dropout_rng)

  def __call__(self, encoder_input_tokens, decoder_input_tokens, encoder_segment_ids=None,
               decoder_segment_ids=None, encoder_positions=None, decoder_positions=None,
               dropout_rng=None):
    """Float32 logits [B, T, V]: the decoder over the encoder's output, one dropout stream for both."""
    rngs = self._rngs(dropout_rng)
    enc = self.encode(encoder_input_tokens, encoder_segment_ids, encoder_positions, rngs=rngs)
    return self.decode(enc, encoder_input_tokens, decoder_input_tokens,
                       encoder_segment_ids=encoder_segment_ids,
                       decoder_segment_ids=decoder_segment_ids,
                       decoder_positions=decoder_positions, rngs=rngs)
