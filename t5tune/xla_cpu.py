"""XLA CPU settings t5tune applies when its model code is imported: the unrolled Threefry lowering.

Why: jax lowers its Threefry random-bit generator on the CPU as a *rolled*
loop (5 iterations of 4 rounds, to keep compile time down), so every random
bit array is written and re-read five times through a `while` loop. Dropout
draws one bit per attention probability and per hidden activation: on
t5_1_1_small at batch 8 of 512/128 tokens with dropout 0.1, that loop was
about 0.9 s of a 6.2 s train step (`benchmarks/profile_step.py --dropout=0.1`).
jax's own unrolled lowering (the one it uses on GPUs and TPUs) is one fused
elementwise loop: the same bits, ~8x faster on a [8, 6, 512, 512] mask,
and it compiles no slower there.

The bits are identical (tests/models/test_xla_cpu.py compares them with a
process that never imports t5tune), so seeds, resumes and checkpoints are
unaffected. jax exposes no option for this, so t5tune re-registers jax's
unrolled rule for the CPU platform; where a jax version lacks the private
names this uses, nothing changes (`applied()` says False).

    T5TUNE_ROLLED_THREEFRY=1   keep jax's rolled CPU lowering
"""
from __future__ import annotations

import os

_STATE = {"applied": False}


def unroll_threefry() -> bool:
  """Registers jax's unrolled Threefry lowering for the CPU (once); True if it is in effect."""
  if _STATE["applied"] or os.environ.get("T5TUNE_ROLLED_THREEFRY") == "1":
    return _STATE["applied"]
  try:
    from jax._src.interpreters import mlir
    from jax._src.random import threefry2x32
    rule = threefry2x32._threefry2x32_lowering_rule  # pylint: disable=protected-access
    mlir.register_lowering(threefry2x32.threefry2x32_p, rule, platform="cpu")
  except (ImportError, AttributeError):  # another jax layout: keep its default
    return False
  _STATE["applied"] = True
  return True


def applied() -> bool:
  return _STATE["applied"]
