"""T5X checkpoint import: every format x layout t5x writes, against transformers' PyTorch T5/UMT5."""
import os
import subprocess
import sys

import numpy as np
import pytest
from flax import nnx

from t5tune import errors
from t5tune.convert import loading
from t5tune.convert import t5x
from t5tune.infer import decoding
from tests import cli
from tests.convert import t5x_fixtures as fx

ENC = np.random.RandomState(0).randint(2, fx.V, (2, 11)).astype(np.int32)
DEC = np.concatenate([np.zeros((2, 1), np.int32), ENC[:, :6]], axis=1)

GIN = """
from __gin__ import dynamic_registration
import t5x.examples.t5.network as network
ACTIVATION_DTYPE = 'float32'
network.T5Config.mlp_activations = {acts}
network.T5Config.dtype = %ACTIVATION_DTYPE
network.T5Config.emb_dim = 32
network.T5Config.dropout_rate = 0.0
models.EncoderDecoderModel.module = @network.Transformer()
"""

CASES = {
    # name: (layout, format, how the activation is given)
    "t5-msgpack-gin": (fx.Spec(gated=True), "msgpack", "gin"),
    "t5v1.0-tensorstore-flag": (fx.Spec(gated=False, tied=True), "tensorstore", "flag"),
    "umt5-scanned-orbax-rungin": (fx.Spec(scanned=True, per_layer=True, three_d=True, n_dec=2),
                                  "orbax", "run-gin"),
    "scalable-unscanned-tensorstore": (fx.Spec(per_layer=True, three_d=True), "tensorstore", "flag"),
}


def _gin(path, gated):
  with open(path, "w") as f:
    f.write(GIN.format(acts="('gelu', 'linear')" if gated else "('relu',)"))
  return str(path)


@pytest.mark.parametrize("case", sorted(CASES))
def test_import_matches_hf_logits(tmp_path, case):
  spec, fmt, how = CASES[case]
  target, layers = fx.build_target(spec, seed=len(case))
  step_dir = fx.write(str(tmp_path / "run" / "checkpoint_100"), target, fmt)
  config, overrides = None, {}
  if how == "gin":
    config = _gin(tmp_path / "model.gin", spec.gated)
  elif how == "run-gin":
    _gin(tmp_path / "run" / "config.gin", spec.gated)  # found beside checkpoint_100
  else:
    overrides["feed_forward_proj"] = "gated-gelu" if spec.gated else "relu"
  imported = t5x.t5x_to_t5tune(step_dir, str(tmp_path / "out"), config, **overrides)

  assert imported.format == {"msgpack": "msgpack", "tensorstore": "msgpack+tensorstore",
                             "orbax": "orbax"}[fmt]
  assert imported.step == 100
  assert (imported.layout.scanned, imported.layout.per_layer_relpos) == (spec.scanned,
                                                                         spec.per_layer)
  cfg = imported.config
  assert (cfg.d_model, cfg.num_heads, cfg.d_kv, cfg.d_ff, cfg.vocab_size) == (
      fx.D, fx.H, fx.K, fx.F, fx.V)
  assert (cfg.num_encoder_layers, cfg.num_decoder_layers) == (spec.n_enc, spec.n_dec)
  assert cfg.tie_word_embeddings == spec.tied and cfg.is_gated == spec.gated
  assert cfg.relative_attention_per_layer == spec.per_layer
  assert any(n.endswith("v_row") for n in imported.dropped_state)

  model = loading.load_model(str(tmp_path / "out"), dropout_rate=0.0)
  ours = np.asarray(nnx.jit(lambda m, e, d: m(e, d))(model, ENC, DEC))
  ref = fx.hf_logits(fx.hf_model(spec, target, layers), ENC, DEC)
  assert np.abs(ref).max() > 1.0  # a real signal, not near-zero logits
  np.testing.assert_allclose(ours, ref, atol=2e-4, rtol=2e-4)
  if spec.per_layer:
    # KV-cache decoding applies each layer's own table too: greedy tokens are
    # the argmax of the reference's teacher-forced logits on those tokens.
    tokens = np.asarray(decoding.greedy_decode(model, ENC, 5))
    forced = np.concatenate([np.zeros((2, 1), np.int32), tokens[:, :-1]], axis=1)
    ref_next = fx.hf_logits(fx.hf_model(spec, target, layers), ENC, forced).argmax(-1)
    live = np.cumsum(tokens == 1, axis=1) - (tokens == 1) == 0  # up to and including EOS
    np.testing.assert_array_equal(tokens[live], ref_next[live])


def test_cli_converts_and_bad_inputs_are_one_line(tmp_path):
  spec = fx.Spec(gated=True, n_dec=2)
  target, _ = fx.build_target(spec)
  step_dir = fx.write(str(tmp_path / "run" / "checkpoint_7"), target, "msgpack", step=7)

  # No activation anywhere: the error names it and how to give it; nothing is written. (A fresh
  # process: its stderr is what a user sees, import-time library output included.)
  out = subprocess.run([sys.executable, "-m", "t5tune", "convert", "t5x-to-t5tune",
                        f"--input={step_dir}", f"--output={tmp_path / 'x'}"],
                       capture_output=True, text=True, timeout=300)
  assert out.returncode != 0
  lines = out.stderr.strip().splitlines()
  assert len(lines) == 1 and "activation" in lines[0] and "--feed_forward_proj" in lines[0], lines
  assert not (tmp_path / "x").exists()
  ok = cli.run(["convert", "t5x-to-t5tune", f"--input={tmp_path / 'run'}/checkpoint_7",
                f"--output={tmp_path / 'x'}", "--feed_forward_proj=gated-gelu"])
  assert ok.returncode == 0, ok.stderr
  assert "msgpack checkpoint (step 7" in ok.stdout and "optimizer state not imported" in ok.stdout
  assert loading.read_config(str(tmp_path / "x")).num_decoder_layers == 2


def _expect(exc_text, fn):
  with pytest.raises(errors.T5tuneError) as e:
    fn()
  assert exc_text in str(e.value), str(e.value)
  assert "\n" not in str(e.value)


def test_existing_output_refused_unless_overwrite(tmp_path):
  """The same rule as hf-to-t5tune: an existing model dir is replaced only with overwrite."""
  from t5tune.convert import model_dir
  spec = fx.Spec(gated=True)
  out = str(tmp_path / "out")
  first = fx.write(str(tmp_path / "a" / "checkpoint_1"), fx.build_target(spec, seed=1)[0], "msgpack")
  second = fx.write(str(tmp_path / "b" / "checkpoint_2"), fx.build_target(spec, seed=2)[0], "msgpack")
  t5x.t5x_to_t5tune(first, out, feed_forward_proj="gated-gelu")
  old = model_dir.fingerprint(out)
  _expect("the output exists", lambda: t5x.t5x_to_t5tune(second, out, feed_forward_proj="gated-gelu"))
  assert model_dir.fingerprint(out) == old
  t5x.t5x_to_t5tune(second, out, overwrite=True, feed_forward_proj="gated-gelu")
  assert model_dir.fingerprint(out) != old and model_dir.verify_checksums(out)
  assert not [n for n in os.listdir(tmp_path) if n.startswith(".")]  # no temporary left


def test_bad_inputs_name_what_to_fix(tmp_path):
  spec = fx.Spec(gated=True, n_dec=2)
  target, _ = fx.build_target(spec)
  run = tmp_path / "run"
  step_dir = fx.write(str(run / "checkpoint_7"), target, "msgpack", step=7)
  imp = lambda path, *a, **k: t5x.import_checkpoint(str(path), *a, **k)
  # The run directory instead of one step: points at the step to pass.
  _expect("checkpoint_7", lambda: imp(run))
  _expect("no such T5X checkpoint", lambda: imp(tmp_path / "nope"))
  # A preset of another size: names the field and both values.
  _expect("vocab_size=32128 but the checkpoint has 128", lambda: imp(step_dir, "flan_t5_base"))
  _expect("Unknown model preset", lambda: imp(step_dir, "flan_t5_bas"))
  # gin contradicting the arrays.
  gin = tmp_path / "bad.gin"
  gin.write_text("network.T5Config.emb_dim = 64\nnetwork.T5Config.mlp_activations = ('relu',)\n")
  _expect("emb_dim=64", lambda: imp(step_dir, str(gin)))
  gin.write_text("network.T5Config.mlp_activations = ('relu',)\n")
  _expect("MLP is gated (wi_0/wi_1)", lambda: imp(step_dir, str(gin)))
  # Not msgpack, and a TensorFlow checkpoint index.
  bad = tmp_path / "garbage"
  bad.mkdir()
  (bad / "checkpoint").write_bytes(b"\xc1\xc1 not msgpack")
  _expect("msgpack", lambda: imp(bad))
  (bad / "checkpoint").write_bytes(b"model_checkpoint_path: \"model.ckpt-1\"")
  _expect("TensorFlow", lambda: imp(bad))
  # A TensorStore array directory that was not copied.
  ts_dir = fx.write(str(tmp_path / "ts" / "checkpoint_1"), target, "tensorstore")
  import shutil
  shutil.rmtree(os.path.join(ts_dir, "target.encoder.layers_1.mlp.wo.kernel"))
  _expect("target.encoder.layers_1.mlp.wo.kernel", lambda: imp(ts_dir, feed_forward_proj="gated-gelu"))
  # A missing layer.
  del target["encoder"]["layers_0"]
  gap = fx.write(str(tmp_path / "gap" / "checkpoint_1"), target, "msgpack")
  _expect("encoder/layers_0 is missing", lambda: imp(gap, feed_forward_proj="gated-gelu"))
