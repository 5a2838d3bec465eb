"""A decoding method registered in one place, for the server test (`--module=tests.serve.methods`).

`second_best`: every step takes the runner-up token. Importing this module is
all a server needs to serve it (`"method": "second_best"`).
"""
import jax

from t5tune.infer import decoding

NAME = "second_best"


def _second_best(logits_BV, rows, t):
  del rows, t
  return jax.lax.top_k(logits_BV, 2)[1][:, 1].astype("int32")


if NAME not in decoding.METHODS:
  decoding.register(decoding.Method(NAME, pick=_second_best))
