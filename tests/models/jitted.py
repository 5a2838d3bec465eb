"""The model's forward pass, gradients and decoding steps under `nnx.jit`, for tests that compare outputs.

Called eagerly, an NNX model dispatches each of its ops as its own XLA program:
a tiny model's forward is ~150 programs of ~50 ms compile each on a 2-core
CPU, once per new input shape (570 in one packed-vs-unpacked test). Jitted, it
is one program per shape.
"""
from flax import nnx

forward = nnx.jit(lambda model, *args, **kwargs: model(*args, **kwargs))


def grad(loss_fn, **kwargs):
  """`nnx.grad(loss_fn, **kwargs)`, compiled as one program."""
  return nnx.jit(nnx.grad(loss_fn, **kwargs))


init_cache = nnx.jit(lambda model, enc, max_decode_len: model.init_cache(
    model.encode(enc), enc, max_decode_len=max_decode_len), static_argnums=2)

decode_step = nnx.jit(lambda model, token, cache: model.decode_step(token, cache))
