"""The portable flan_mini path: seqio packing and byte decoding in numpy; a run without TensorFlow."""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from configs.experiments import flan_mini as flan_mini_config
from experiments.flan_mini import portable

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# A setting of seconds: one run on one cluster; held out: nli (rank
# classification) and summarize (greedy decoding, ROUGE-L).
_OVERRIDES = {"held_out": ("nli", "summarize"), "runs": ("clusters_1",), "eval_examples": 2}


def _examples(rng, n, max_in, max_tgt):
  ids = lambda k: np.concatenate([rng.integers(3, 259, k - 1), [1]]).astype(np.int32)
  return ([ids(int(rng.integers(1, max_in + 1))) for _ in range(n)],
          [ids(int(rng.integers(1, max_tgt + 1))) for _ in range(n)])


def test_packing_matches_seqio_feature_converter():
  import seqio  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  lengths = {"inputs": 16, "targets": 8}
  inputs, targets = _examples(np.random.default_rng(0), 60, 16, 8)
  # One task through a buffer of one: the examples in order, as seqio sees them.
  stream = portable.MixtureStream([inputs], [targets], [1.0], [1], lengths, seed=0)
  ours = stream.features(stream.rows(40))

  def gen():
    for i in range(10 ** 6):
      yield {"inputs": inputs[i % 60], "targets": targets[i % 60]}
  ds = tf.data.Dataset.from_generator(gen, output_signature={
      "inputs": tf.TensorSpec([None], tf.int32), "targets": tf.TensorSpec([None], tf.int32)})
  ds = seqio.EncDecFeatureConverter(pack=True)(ds, task_feature_lengths=lengths)
  theirs = [ex for _, ex in zip(range(40), ds.as_numpy_iterator())]
  assert set(ours) == set(theirs[0])
  for key in ours:
    np.testing.assert_array_equal(ours[key], np.stack([ex[key] for ex in theirs]), err_msg=key)


def test_byte_decode_matches_seqio():
  import seqio  # pylint: disable=g-import-not-at-top
  vocab = seqio.ByteVocabulary()
  for text in ["plain", "Lumi: żółw — 猫", ""]:
    ids = vocab.encode(text)
    assert portable.byte_decode(ids) == vocab.decode(ids) == text
  ids = [3 + 0xC3, 5, 300, 2, 3 + ord("a")]  # a broken UTF-8 byte, an extra id, UNK
  assert portable.byte_decode(ids) == vocab.decode(ids)


def test_mixture_rates_and_exact_resume():
  rng = np.random.default_rng(1)
  data = [_examples(rng, n, 12, 6) for n in (30, 50, 20)]
  make = lambda: portable.MixtureStream([d[0] for d in data], [d[1] for d in data],
                                        [1.0, 2.0, 1.0], [25, 25, 25],
                                        {"inputs": 24, "targets": 12}, seed=3)
  stream = make()
  rows = stream.rows(400)
  counts = np.bincount([t for row in rows for t, _ in row], minlength=3)
  np.testing.assert_allclose(counts / counts.sum(), [0.25, 0.5, 0.25], atol=0.03)
  state = json.loads(json.dumps(stream.state()))
  after = stream.features(stream.rows(7))
  again = make()
  again.set_state(state)
  for key, value in again.features(again.rows(7)).items():
    np.testing.assert_array_equal(value, after[key])


def test_export_then_portable_run_without_tensorflow(tmp_path):
  from experiments.flan_mini import export  # pylint: disable=g-import-not-at-top
  config = flan_mini_config.get_config("test")
  for key, value in _OVERRIDES.items():
    config.flan_mini[key] = value
  manifest = export.export(config, str(tmp_path / "data"))
  # nli held out drops its FLAN-excluded neighbour paraphrase: reading comes first.
  assert manifest["runs"]["clusters_1"]["clusters"] == ["reading"]
  assert {e["method"] for e in manifest["evals"].values()} == {"rank_classification", "greedy"}

  flags = [f"--config.flan_mini.{k}={v!r}" for k, v in _OVERRIDES.items()]
  argv = ["portable", "--config=configs/experiments/flan_mini.py:test", *flags,
          f"--data={tmp_path / 'data'}", f"--workdir={tmp_path / 'runs'}"]
  script = textwrap.dedent(f"""
      import importlib.machinery, runpy, sys
      # What the GPU machine lacks.
      BLOCKED = {{"tensorflow", "seqio", "tensorflow_datasets", "clu"}}
      class Hiding(importlib.machinery.PathFinder):
        @classmethod
        def find_spec(cls, name, path=None, target=None):
          if name.split(".")[0] in BLOCKED:
            return None  # as if not installed
          return importlib.machinery.PathFinder.find_spec(name, path, target)
      sys.meta_path[:] = [Hiding if f is importlib.machinery.PathFinder else f
                          for f in sys.meta_path]
      sys.argv = {argv!r}
      try:
        runpy.run_module("experiments.flan_mini.portable", run_name="__main__")
      except SystemExit as e:
        assert not e.code, e.code
      leaked = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
      assert not leaked, leaked
      print("WITHOUT_TENSORFLOW_OK")
      """)
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=_ROOT)
  env.pop("XLA_FLAGS", None)
  proc = subprocess.run([sys.executable, "-c", script], cwd=_ROOT, env=env,
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
  assert "WITHOUT_TENSORFLOW_OK" in proc.stdout
  results = json.load(open(tmp_path / "runs" / "results.json"))
  run = results["groups"]["nli+summarize"]["runs"]["clusters_1"][0]
  assert run["steps"] == config.train.train.steps
  tasks = run["evals"]["held_out_zs"]["tasks"]
  assert tasks["nli_facts"]["method"] == "rank_classification"
  assert tasks["sum_news"]["method"] == "greedy" and "rougeL" in tasks["sum_news"]
  assert set(run["evals"]) == {"held_out_zs", "held_out_fs"}
  assert "| clusters_1 |" in open(tmp_path / "runs" / "results.md").read()
  assert os.path.exists(tmp_path / "runs" / "clusters_1" / "checkpoints")


def test_portable_refuses_a_config_that_was_not_exported():
  config = flan_mini_config.get_config("test")
  manifest = {"config": config.to_dict(), "runs": {"instructions": {}}}
  portable.check_config(config, manifest)
  config.flan_mini.eval_examples = 99
  with pytest.raises(ValueError, match="eval_examples=99"):
    portable.check_config(config, manifest)
