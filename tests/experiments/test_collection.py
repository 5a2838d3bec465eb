"""The flan_mini collection: size, determinism, disjoint splits, templates, TFDS build, report."""
import pytest

from experiments.flan_mini import collection
from experiments.flan_mini import templates
from t5tune import data

_SMALL = {"train": 40, "validation": 5, "test": 10}


def test_collection_has_the_size_the_issue_asks_for():
  clusters = collection.clusters()
  assert len(collection.TASKS) >= 24
  assert len(clusters) >= 8
  assert all(len(tasks) >= 3 for tasks in clusters.values())


@pytest.mark.parametrize("task", sorted(collection.TASKS))
def test_templates_per_task(task):
  spec = collection.TASKS[task]
  train = templates.training(task)
  assert len(train) >= 6
  kinds = {t.kind for t in train}
  assert data.INVERTED in kinds
  if "options" in spec.fields:
    assert data.ZERO_SHOT_OPTIONS in kinds and data.ZERO_SHOT in kinds
  if "rationale" in spec.fields:
    assert data.COT in kinds
  unseen = templates.unseen(task)
  assert len(unseen) >= 2
  # Unseen wordings are really unseen: no inputs string is shared.
  assert not {t.inputs for t in unseen} & {t.inputs for t in train}
  data.templates.check_fields(task, train + unseen, spec.fields)


@pytest.mark.parametrize("task", sorted(collection.TASKS))
def test_generation_is_deterministic_and_splits_are_disjoint(task):
  a = collection.generate(task, seed=0, sizes=_SMALL)
  b = collection.generate(task, seed=0, sizes=_SMALL)
  assert a == b
  assert a != collection.generate(task, seed=1, sizes=_SMALL)
  keys = {s: {collection._key(r) for r in recs} for s, recs in a.items()}
  assert not keys["train"] & keys["test"]
  assert not keys["train"] & keys["validation"]
  assert {s: len(r) for s, r in a.items()} == _SMALL
  fields = set(collection.TASKS[task].fields)
  assert all(set(r) == fields for recs in a.values() for r in recs)


def test_closed_book_test_facts_are_not_asked_in_train():
  out = collection.generate("cb_city", seed=0)
  names = {s: {r["question"].split()[-2 if "live" in r["question"] else -1] for r in recs}
           for s, recs in out.items()}
  assert not names["train"] & names["test"]


def _read(name, directory):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  out = {}
  for split in collection.SPLITS:
    ds = tfds.load(name, split=split, data_dir=directory, shuffle_files=False)
    out[split] = [{k: (v.tolist() if hasattr(v, "tolist") else v) for k, v in ex.items()}
                  for ex in tfds.as_numpy(ds)]
  return out


def test_tfds_builder_is_deterministic(tmp_path):
  from experiments.flan_mini import builder  # pylint: disable=g-import-not-at-top
  first, second = str(tmp_path / "a"), str(tmp_path / "b")
  names = builder.build(["nli_count"], seed=0, data_dir=first)
  builder.build(["nli_count"], seed=0, data_dir=second)
  seeded = builder.build(["nli_count"], seed=5, data_dir=first)
  assert names == [f"flan_mini/nli_count:{builder.VERSION_STR}"]
  assert seeded == [f"flan_mini/nli_count_seed5:{builder.VERSION_STR}"]
  a, b, c = _read(names[0], first), _read(names[0], second), _read(seeded[0], first)
  assert a == b
  assert a != c
  assert {s: len(r) for s, r in a.items()} == collection.DEFAULT_SIZES


def test_registration_and_report():
  import seqio  # pylint: disable=g-import-not-at-top
  from experiments.flan_mini import tasks  # pylint: disable=g-import-not-at-top
  from t5tune.quality import report  # pylint: disable=g-import-not-at-top
  mixture = tasks.training_mixture(["arithmetic"], "mixed")
  assert len(seqio.get_mixture_or_task(mixture).tasks) == 2 * 3
  out = report.build(mixture, feature_lengths={"inputs": 512, "targets": 64},
                     splits=["train"], max_examples=50)
  assert out["totals"]["train"]["examples"] > 0
  infos = [data.tasks.get_info(t) for t in out["tasks"]]
  assert {i.metadata["cluster"] for i in infos} == {"arithmetic"}
  # The no-template variant carries no instruction words.
  nt = seqio.get_mixture_or_task(tasks.task_name("math_add", "_no_template"))
  ex = next(iter(nt.get_dataset({"inputs": 256, "targets": 64}, split="validation",
                                shuffle=False)))
  inputs = ex["inputs_pretokenized"].numpy().decode()
  assert inputs.endswith(" now?") and "\n" not in inputs, inputs
