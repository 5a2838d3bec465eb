"""The unrolled Threefry lowering t5tune registers on the CPU draws the same bits as jax's own."""
import json
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np

from t5tune import xla_cpu
from t5tune.models import layers  # noqa: F401  (importing the model code applies it)

_DRAW = """
import json, sys, jax, jax.numpy as jnp
k = jax.random.key(7)
out = {"bits": jax.jit(lambda k: jax.random.bits(k, (3, 5, 7), jnp.uint32))(k).tolist(),
       "keep": jax.jit(lambda k: jax.random.bernoulli(jax.random.fold_in(k, 3), 0.9, (257,)))(k)
               .tolist(),
       "modules": sorted(m for m in sys.modules if m.startswith("t5tune"))}
print(json.dumps(out))
"""


def _draws():
  k = jax.random.key(7)
  return {"bits": np.asarray(jax.jit(lambda k: jax.random.bits(k, (3, 5, 7), jnp.uint32))(k)),
          "keep": np.asarray(jax.jit(
              lambda k: jax.random.bernoulli(jax.random.fold_in(k, 3), 0.9, (257,)))(k))}


def test_unrolled_threefry_is_in_effect_and_draws_jaxs_bits():
  assert xla_cpu.applied()
  lowered = jax.jit(lambda k: jax.random.bits(k, (4, 4), jnp.uint32)).lower(jax.random.key(0))
  assert "stablehlo.while" not in lowered.as_text()  # the rolled lowering is a while loop
  env_free = subprocess.run([sys.executable, "-c", _DRAW], capture_output=True, text=True,
                            check=True, env={"PATH": "", "JAX_PLATFORMS": "cpu"})
  reference = json.loads(env_free.stdout.strip().splitlines()[-1])
  assert reference["modules"] == []  # the reference never imported t5tune
  ours = _draws()
  np.testing.assert_array_equal(ours["bits"], np.asarray(reference["bits"], np.uint32))
  np.testing.assert_array_equal(ours["keep"], np.asarray(reference["keep"]))
