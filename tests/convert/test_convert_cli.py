"""`t5tune convert` end to end: conversions in forks of a pre-imported process (tests/cli.py), a bad
input through a fresh `python -m t5tune` (its stderr as a user sees it)."""
import subprocess
import sys

import numpy as np

from t5tune.convert import loading
from tests import cli
from tests.models import hf_reference
from tests.models import jitted


def _t5tune(*args):
  return subprocess.run([sys.executable, "-m", "t5tune", *args], capture_output=True, text=True,
                        timeout=300)


def test_convert_both_ways_and_load(tmp_path):
  _, hf_dir = hf_reference.build_hf_t5(tmp_path / "hf", gated=True, num_decoder_layers=2)
  out = cli.run(["convert", "hf-to-t5tune", f"--input={hf_dir}", f"--output={tmp_path / 'ours'}"])
  assert out.returncode == 0, out.stderr
  assert "gated-gelu" in out.stdout
  back = cli.run(["convert", "t5tune-to-hf", f"--input={tmp_path / 'ours'}",
                  f"--output={tmp_path / 'back'}"])
  assert back.returncode == 0, back.stderr
  enc = np.random.RandomState(0).randint(2, 128, (2, 9)).astype(np.int32)
  a = np.asarray(jitted.forward(loading.load_model(hf_dir), enc, enc[:, :4]))
  b = np.asarray(jitted.forward(loading.load_model(str(tmp_path / "back")), enc, enc[:, :4]))
  np.testing.assert_array_equal(a, b)


def test_convert_bad_input_exits_nonzero_with_reason(tmp_path):
  (tmp_path / "empty").mkdir()
  out = _t5tune("convert", "hf-to-t5tune", f"--input={tmp_path / 'empty'}",
                f"--output={tmp_path / 'out'}")
  assert out.returncode != 0
  assert "no config.json" in out.stderr
  assert not (tmp_path / "out").exists()
  usage = _t5tune("convert", "sideways", "--input=a", "--output=b")
  assert usage.returncode != 0 and "hf-to-t5tune" in usage.stderr
