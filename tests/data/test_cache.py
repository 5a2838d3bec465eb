"""`t5tune data cache`: seqio's cached layout through Beam's DirectRunner, read by seqio and by
t5tune's pipeline; cached examples equal uncached ones; incomplete and stale caches refused.

One Beam run (an instruction task and a pretraining task, 12 records each, byte vocabulary)
is shared by the module; a second one crashes on purpose.
"""
import json
import os
import shutil

import numpy as np
import pytest
import seqio

from t5tune import data
from t5tune import errors
from t5tune import sharding
from t5tune.data import cache
from t5tune.data import cache_check
from t5tune.data import pipeline
from tests import cli

TASKS = ("cache_test_qa", "cache_test_text")
MIXTURE = "cache_test_mix"
LENGTHS = {"inputs": 64, "targets": 16}


def _qa(n, offset):
  return [{"question": f"what is {i} plus {offset}?", "answer": str(i + offset)} for i in range(n)]


def _register():
  templates = [data.Template("plain", "{question}", "{answer}"),
               data.Template("asked", "Answer this: {question}", "It is {answer}.")]
  data.register_task(TASKS[0], source=data.sources.function(
      {"train": lambda: _qa(12, 0), "validation": lambda: _qa(4, 100)}),
      fields=["question", "answer"], templates=templates, overwrite=True)
  data.register_pretraining_task(TASKS[1], source={"train": lambda: [
      {"text": f"document number {i} says something about {i * 3}."} for i in range(12)]},
      overwrite=True)
  data.register_mixture(MIXTURE, list(TASKS), rate=data.examples_proportional(), overwrite=True)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
  _register()
  out = str(tmp_path_factory.mktemp("cache"))
  assert cache.run(cache.select(mixture=MIXTURE), out, splits=["train"], num_shards=2) == {
      name: "written" for name in TASKS}
  yield out
  seqio.utils.set_global_cache_dirs([])


def _rows(ds):
  return sorted((tuple(ex["inputs"]), tuple(ex["targets"]), ex.get("template_name", b""))
                for ex in ds.as_numpy_iterator())


def test_writes_seqio_layout_with_fingerprint_and_stats(cache_dir):
  for name in TASKS:
    d = cache.task_dir(cache_dir, name)
    assert sorted(os.listdir(d)) == ["COMPLETED", "info.train.json", "stats.train.json",
                                      "train.tfrecord-00000-of-00002", "train.tfrecord-00001-of-00002"]
    with open(os.path.join(d, "info.train.json")) as f:
      info = json.load(f)
    assert info["num_shards"] == 2
    assert info["t5tune"] == cache_check.fingerprint(seqio.TaskRegistry.get(name))
    with open(os.path.join(d, "stats.train.json")) as f:
      stats = json.load(f)
    assert stats["examples"] == seqio.TaskRegistry.get(name).num_input_examples("train") == 12
    assert stats["targets_tokens"] > 0


def test_seqio_reads_the_cache_and_it_equals_uncached(cache_dir):
  seqio.add_global_cache_dirs([cache_dir])
  task = seqio.TaskRegistry.get(TASKS[0])
  assert task.cache_dir == cache.task_dir(cache_dir, TASKS[0])
  cached = _rows(task.get_dataset(LENGTHS, "train", use_cached=True, shuffle=True, seed=1))
  fresh = _rows(task.get_dataset(LENGTHS, "train", use_cached=False, shuffle=True, seed=1))
  assert len(cached) == 12 and cached == fresh  # same tokens, same template per example
  assert len({ex[2] for ex in cached}) == 2  # both templates drawn, as without the cache
  # The pretraining objective runs after the placeholder, on the cached documents.
  text = seqio.TaskRegistry.get(TASKS[1]).get_dataset(LENGTHS, "train", use_cached=True, seed=1)
  assert all(len(ex["targets"]) for ex in text.as_numpy_iterator())


def test_training_pipeline_reads_the_cache_with_the_same_examples(cache_dir, tmp_path):
  shard = seqio.ShardInfo(0, 1)
  kwargs = dict(split="train", feature_lengths=LENGTHS, local_batch_size=4, pack=False, seed=3,
                shard=shard, shuffle=True, num_epochs=1)

  def rows(ds):
    return sorted(tuple(r) for b in ds.as_numpy_iterator() for r in b["encoder_input_tokens"])

  assert rows(pipeline.local_dataset(TASKS[0], cache_dir=cache_dir, **kwargs)) == rows(
      pipeline.local_dataset(TASKS[0], **kwargs))
  def iterator():
    return pipeline.make_iterator(MIXTURE, split="train", feature_lengths=LENGTHS, batch_size=8,
                                  pack=False, seed=0, mesh=sharding.make_mesh((-1, 1, 1)),
                                  cache_dir=cache_dir)

  it = iterator()
  assert next(it)["encoder_input_tokens"].shape == (8, 64)
  assert it.spec["cache_dir"] == cache_dir
  it.save(tmp_path / "data")  # resumes mid-epoch from the cache as from the source
  after = next(it)
  resumed = iterator()
  resumed.restore(tmp_path / "data")
  again = next(resumed)
  for key, value in after.items():
    np.testing.assert_array_equal(np.asarray(again[key]), np.asarray(value))


def _copy(cache_dir, tmp_path, name=TASKS[0]):
  out = str(tmp_path / "copy")
  shutil.copytree(cache.task_dir(cache_dir, name), cache.task_dir(out, name))
  return out


def test_incomplete_cache_is_never_read(cache_dir, tmp_path):
  out = _copy(cache_dir, tmp_path)
  os.remove(os.path.join(cache.task_dir(out, TASKS[0]), "COMPLETED"))
  with pytest.raises(errors.InputError, match="incomplete .*no COMPLETED") as e:
    cache_check.check_readable([TASKS[0]], "train", out)
  assert "\n" not in str(e.value)
  assert cache.plan([TASKS[0]], out, ["train"], overwrite=False)[0][2] == "write"  # redone


def test_crashed_run_leaves_no_completed(tmp_path):
  def broken():
    raise RuntimeError("the source broke half-way")
  data.register_task("cache_test_broken", source=data.sources.function({"train": broken}),
                     fields=["question", "answer"], templates=[data.Template("t", "{question}",
                                                                             "{answer}")],
                     overwrite=True)
  out = str(tmp_path / "crash")
  with pytest.raises(Exception, match="broke half-way"):
    cache.run(["cache_test_broken"], out, splits=["train"], num_shards=1)
  assert not os.path.exists(os.path.join(cache.task_dir(out, "cache_test_broken"), "COMPLETED"))
  with pytest.raises(errors.InputError, match="cache_test_broken"):
    cache_check.check_readable(["cache_test_broken"], "train", out)


def test_cache_made_with_other_settings_is_refused_in_one_line(cache_dir, tmp_path):
  out = _copy(cache_dir, tmp_path)
  path = os.path.join(cache.task_dir(out, TASKS[0]), "info.train.json")
  with open(path) as f:
    info = json.load(f)
  info["t5tune"]["vocabulary"] = "sentencepiece sha256:0123456789abcdef extra_ids=100"
  with open(path, "w") as f:
    json.dump(info, f)
  with pytest.raises(errors.InputError, match=r"other settings \(vocabulary: the cache has "
                     r"'sentencepiece sha256:0123456789abcdef extra_ids=100', this run has "
                     r"'byte extra_ids=0'\)") as e:
    cache_check.check_readable([TASKS[0]], "train", out)
  assert "\n" not in str(e.value)
  # Writing: a complete cache is replaced only with overwrite; the same settings are skipped.
  with pytest.raises(errors.InputError, match="--overwrite"):
    cache.plan([TASKS[0]], out, ["train"], overwrite=False)
  assert cache.plan([TASKS[0]], out, ["train"], overwrite=True)[0][2] == "write"
  assert cache.plan([TASKS[0]], cache_dir, ["train"], overwrite=False)[0][2] == "skip"
  with pytest.raises(errors.InputError, match=r"cached without splits \['validation'\]"):
    cache.plan([TASKS[0]], cache_dir, None, overwrite=False)  # all its splits, only train cached


def test_shards_must_divide_among_hosts(cache_dir):
  with pytest.raises(errors.UsageError, match="2 cache shards, not divisible by the 3 hosts"):
    cache_check.check_readable([TASKS[0]], "train", cache_dir, process_count=3)


def test_task_selection_errors_name_the_flag():
  with pytest.raises(errors.UsageError, match="exactly one of --mixture and --tasks"):
    cache.select(mixture=MIXTURE, tasks="cache_test_.*")
  with pytest.raises(errors.UsageError, match="--tasks=nothing_.* matches no registered task"):
    cache.select(tasks="nothing_.*")


@pytest.mark.parametrize("args, message", [
    (["--mixture=t5tune_demo_mix", "--runnr=DirectRunner"],
     "--runnr is neither a flag of `t5tune data cache` nor a Beam pipeline option"),
    (["--mixture=t5tune_demo_mix", "--inputs_length=8"], "--inputs_length is not a flag of `t5tune data cache`"),
])
def test_cli_refuses_bad_flags_in_one_line(tmp_path, args, message):
  proc = cli.run(["data", "cache", "--module=t5tune.demo_tasks", f"--output={tmp_path / 'c'}",
                  *args], timeout=300)
  assert proc.returncode == 2, proc.stderr
  lines = [line for line in proc.stderr.splitlines() if line.startswith("t5tune")]
  assert len(lines) == 1 and message in lines[0], proc.stderr
  assert not os.path.exists(tmp_path / "c")
