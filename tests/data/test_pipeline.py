"""Input pipeline: packing, host shards, determinism across processes, exact resume."""
import hashlib
import os
import subprocess
import sys

import numpy as np
import pytest
import seqio

from t5tune import sharding
from t5tune.data import pipeline
import t5tune.demo_tasks  # noqa: F401  (registers the t5tune_demo_* tasks)

LENGTHS = {"inputs": 128, "targets": 64}
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _iterator(**overrides):
  kwargs = dict(split="train", feature_lengths=LENGTHS, batch_size=8, pack=True, seed=3,
                mesh=sharding.make_mesh((-1, 1, 1)))
  kwargs.update(overrides)
  return pipeline.make_iterator("t5tune_demo_mix", **kwargs)


def test_batches_are_global_arrays_on_the_data_axes():
  batch = next(_iterator(mesh=sharding.make_mesh((4, 2, 1))))
  assert set(batch) == {
      "encoder_input_tokens", "decoder_target_tokens", "decoder_input_tokens",
      "decoder_loss_weights", "encoder_segment_ids", "encoder_positions",
      "decoder_segment_ids", "decoder_positions"}
  tokens = batch["encoder_input_tokens"]
  assert tokens.shape == (8, 128)
  assert tokens.sharding.spec == sharding.batch_sharding(sharding.make_mesh((4, 2, 1))).spec
  assert len(tokens.addressable_shards) == 8


def test_batch_size_must_divide_the_data_parallel_size():
  with pytest.raises(ValueError, match=r"batch_size=6 .*data-parallel size \(8"):
    _iterator(batch_size=6)


def test_packing_round_trip_keeps_every_example():
  task = seqio.get_mixture_or_task("t5tune_demo_reverse")
  lengths = {"inputs": 256, "targets": 64}
  originals = sorted(
      (tuple(ex["inputs"]), tuple(ex["targets"]))
      for ex in task.get_dataset(lengths, split="train", shuffle=False).as_numpy_iterator())
  packed = seqio.EncDecFeatureConverter(pack=True)(
      task.get_dataset(lengths, split="train", shuffle=False), lengths)
  unpacked = []
  for ex in packed.as_numpy_iterator():
    for seg in sorted(set(ex["encoder_segment_ids"]) - {0}):
      inputs = ex["encoder_input_tokens"][ex["encoder_segment_ids"] == seg]
      targets = ex["decoder_target_tokens"][ex["decoder_segment_ids"] == seg]
      assert ex["encoder_positions"][ex["encoder_segment_ids"] == seg][0] == 0
      unpacked.append((tuple(inputs), tuple(targets)))
  assert len(unpacked) == len(originals) == 47
  assert sorted(unpacked) == originals


def _rows(shard, num_shards):
  ds = pipeline.local_dataset(
      "t5tune_demo_sentiment", split="train", feature_lengths=LENGTHS, local_batch_size=1,
      pack=False, seed=5, shard=seqio.ShardInfo(shard, num_shards), num_epochs=1)
  return [ex["encoder_input_tokens"][0].tobytes() + ex["decoder_target_tokens"][0].tobytes()
          for ex in ds.as_numpy_iterator()]


def test_two_hosts_shards_are_disjoint_and_cover_the_data():
  everything = _rows(0, 1)
  host0, host1 = _rows(0, 2), _rows(1, 2)
  assert not set(host0) & set(host1)
  assert sorted(host0 + host1) == sorted(everything)
  assert len(everything) == len(set(everything)) == 243


def test_resumed_iterator_gives_exactly_the_remaining_batches(tmp_path):
  uninterrupted = _iterator()
  want = [np.asarray(next(uninterrupted)["encoder_input_tokens"]) for _ in range(6)]
  first = _iterator()
  for _ in range(2):
    next(first)
  first.save(tmp_path)
  resumed = _iterator()
  resumed.restore(tmp_path)
  assert resumed.step == 2
  got = [np.asarray(next(resumed)["encoder_input_tokens"]) for _ in range(4)]
  for w, g in zip(want[2:], got):
    np.testing.assert_array_equal(w, g)


def test_changed_batch_size_or_seed_on_resume_is_reported(tmp_path):
  it = _iterator()
  next(it)
  it.save(tmp_path)
  with pytest.raises(ValueError, match="batch_size: saved 8, now 16"):
    _iterator(batch_size=16).restore(tmp_path)
  with pytest.raises(ValueError, match="seed: saved 3, now 4"):
    _iterator(seed=4).restore(tmp_path)


_CHILD = """
import hashlib, numpy as np
import t5tune.demo_tasks
from t5tune import sharding
from t5tune.data import pipeline
it = pipeline.make_iterator("t5tune_demo_mix", split="train", feature_lengths={lengths},
                            batch_size=8, pack=True, seed=11, mesh=sharding.make_mesh((-1, 1, 1)))
h = hashlib.sha256()
for _ in range(4):
  for k, v in sorted(next(it).items()):
    h.update(k.encode()); h.update(np.asarray(v).tobytes())
print("DIGEST", h.hexdigest())
"""


def test_same_seed_gives_the_same_batches_in_two_processes():
  env = dict(os.environ, JAX_NUM_CPU_DEVICES="8", JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3",
             PYTHONHASHSEED="random")
  code = _CHILD.format(lengths=LENGTHS)
  procs = [subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
           for _ in range(2)]
  digests = []
  for p in procs:
    out, err = p.communicate(timeout=300)
    assert p.returncode == 0, err[-3000:]
    digests.append([l for l in out.splitlines() if l.startswith("DIGEST")][0])
  assert digests[0] == digests[1]


def test_truncation_is_measured_and_logged_once_per_split_and_lengths(caplog):
  # The trainer builds a new evaluation iterator at every evaluation: the same warning must not
  # come back each time, while other lengths (or another split) are measured and said afresh.
  short = {"inputs": 16, "targets": 4}

  def warnings():
    return [r.getMessage() for r in caplog.records if "truncating" in r.getMessage()]

  with caplog.at_level("WARNING"):
    first = _iterator(split="validation", feature_lengths=short, pack=False)
    said = warnings()
    assert said and all(" (validation): truncating " in line and "at 16 tokens" in line
                        for line in said), said
    assert any(line.startswith("t5tune_demo_qa (validation): truncating 100.0% of inputs")
               for line in said), said
    again = _iterator(split="validation", feature_lengths=short, pack=False)
    assert warnings() == said
    assert again.truncation == first.truncation
    _iterator(split="validation", feature_lengths={"inputs": 17, "targets": 4}, pack=False)
    assert len(warnings()) == 2 * len(said)
  qa = first.truncation["t5tune_demo_qa"]
  assert qa["inputs"] == 1.0 and qa["examples"] > 0
