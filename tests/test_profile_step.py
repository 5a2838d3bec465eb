"""benchmarks/profile_step.py's reading of compiled HLO: instructions, fused op names, categories."""
import os
import sys

import jax
import jax.numpy as jnp

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "benchmarks"))
import profile_step  # noqa: E402  pylint: disable=wrong-import-position


def _loss(a, b, y):
  return -jnp.sum(jax.nn.log_softmax(a @ b) * y)


def test_fused_instructions_carry_their_op_names_and_categories():
  x = jnp.ones((32, 32))
  hlo = jax.jit(jax.grad(_loss)).lower(x, x, x).compile().as_text()
  instructions = profile_step.hlo_instructions(hlo)
  categories = {name: profile_step.xla_category(*v) for name, v in instructions.items()}
  # The forward and the backward matrix multiplies, wherever XLA fused them.
  matmuls = [n for n, c in categories.items() if c == "matmul"]
  assert len(matmuls) >= 2, categories
  assert all("dot_general" in instructions[n][1] or instructions[n][0] == "dot" for n in matmuls)
  assert "cross-entropy" in categories.values()
  assert all(categories[n] == "other" for n, (op, _, _) in instructions.items() if op == "parameter")


def test_categories_of_names_from_both_profilers():
  assert profile_step.xla_category("fusion", "jit(step)/transpose(jvp(T5))/decoder/norm/mul") == "norm"
  assert profile_step.xla_category("fusion", "jit(step)/mul | jit(step)/sqrt") == "optimizer"
  # flax NNX adds no module names: the primitives and the shape say what an op is.
  assert profile_step.xla_category("fusion", "jvp()/rsqrt | jvp()/mul") == "norm"
  assert profile_step.xla_category("fusion", "jvp()/reduce_max | jvp()/exp") == "softmax"
  assert profile_step.xla_category("fusion", "jvp()/exp", "f32[8,128,32128]", 32128) == "cross-entropy"
  assert profile_step.xla_category("fusion", "jvp()/exp", "f32[8,128,512]", 32128) != "cross-entropy"
  assert profile_step.xla_category("copy", "jit(step)/jvp(T5)/attention/transpose") == "copy/layout"
  assert profile_step.torch_category("aten::addmm") == "matmul"
  assert profile_step.torch_category("aten::_softmax_backward_data") == "softmax"
  assert profile_step.torch_category("aten::nll_loss_forward") == "cross-entropy"
  assert profile_step.torch_category("aten::_foreach_mul_") == "optimizer"
  assert profile_step.torch_category("aten::copy_") == "copy/layout"
  assert profile_step.xla_category(
      "fusion", "jvp(jit(_bernoulli))/while/body/closed_call/add") == "dropout"
  assert profile_step.torch_category("aten::native_dropout") == "dropout"
  assert profile_step.torch_category("aten::bernoulli_") == "dropout"


def test_cells_carry_an_optional_dropout_rate():
  assert profile_step.train_step.parse_cell("t5_1_1_small:8:512:128") == {
      "model": "t5_1_1_small", "batch": 8, "inputs": 512, "targets": 128, "dropout": 0.0}
  assert profile_step.train_step.parse_cell("tiny:2:16:4:0.1")["dropout"] == 0.1
