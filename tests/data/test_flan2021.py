"""The FLAN 2021 collection: TFDS builders and versions, rendering under mock data, options, held-out mixtures, carving."""
import re

import pytest
import seqio
import tensorflow_datasets as tfds

from t5tune.data import mixtures
from t5tune.data import sources
from t5tune.data import tasks
from t5tune.data import templates
from t5tune.data.collections import flan2021
from t5tune.data.collections import heldout
from t5tune.data.collections import protocol
from t5tune.infer import metrics
from tests import cli

SPECS = {s.name: s for s in flan2021.DATASETS}


# Datasets whose evaluation variants are read under mock data too: options and none, a carved
# test, an evaluation-only one, one without a test split.
EVAL_SAMPLE = ("rte", "copa", "xsum", "wsc273", "opinion_abstracts_idebate")


@pytest.fixture(scope="module")
def registered(tmp_path_factory):
  """Every FLAN 2021 task registered and read once under TFDS mock data (the real builders' features)."""
  data_dir = str(tmp_path_factory.mktemp("tfds"))
  with tfds.testing.mock_data(num_examples=4, policy=tfds.testing.MockPolicy.USE_CODE):
    names = flan2021.register(data_dir=data_dir, metric_fns={
        name: getattr(metrics, name) for name in {m for s in flan2021.DATASETS for m in s.metrics}})
    prepared = {}
    for spec in flan2021.DATASETS:
      info = tasks.get_info(protocol.task_name(flan2021.COLLECTION, spec))
      prepared[spec.name] = {split: (info.source.records(split)[0], info.source.prepared(split))
                             for split in info.source.splits}
    for name in EVAL_SAMPLE:
      for variant in heldout.EVALUATION:
        task = f"flan2021_{name}_{variant}"
        prepared[task] = {"test": (None, tasks.get_info(task).source.prepared("test"))}
    for name in ("rte", "copa", "xsum"):
      f22 = tasks.get_info(f"flan2021_{name}_{protocol.FORMATS_SUFFIX}").source
      prepared[f"{name}_f22"] = {split: (None, f22.prepared(split)) for split in f22.splits}
  return names, prepared


def test_every_builder_and_version_is_in_the_installed_tfds():
  missing = []
  for spec in flan2021.DATASETS:
    try:
      builder = tfds.builder(spec.tfds, data_dir="/nonexistent")
    except Exception as e:  # pylint: disable=broad-except
      missing.append(f"{spec.name}: {spec.tfds} ({type(e).__name__})")
      continue
    if str(builder.info.version) != spec.version:
      missing.append(f"{spec.name}: {spec.tfds} (installed {builder.info.version})")
  assert not missing, "builders or versions missing from tensorflow-datasets: " + "; ".join(missing)


def test_label_names_are_the_builders_class_label_names():
  checked = 0
  for spec in flan2021.DATASETS:
    features = tfds.builder(spec.tfds, data_dir="/nonexistent").info.features
    if spec.label_feature is None:
      continue
    feature = features[spec.label_feature]
    assert isinstance(feature, tfds.features.ClassLabel), spec.name
    assert tuple(feature.names) == spec.label_names, spec.name
    if spec.options is not None:
      assert len(spec.options) == len(spec.label_names), spec.name
    checked += 1
  assert checked >= 25  # guards against a check that silently skips every entry


def test_collection_shape():
  assert len(SPECS) == len(flan2021.DATASETS)  # names are unique
  assert {s.cluster for s in flan2021.DATASETS} == set(flan2021.CLUSTERS)
  assert len(flan2021.CLUSTERS) == 12 and len(flan2021.DATASETS) >= 60
  for spec in flan2021.DATASETS:
    assert len(spec.templates) == 10, spec.name
    assert any(t.kind == templates.INVERTED for t in spec.templates), spec.name
    uses_options = any("{options_}" in t.inputs for t in spec.templates)
    has_options = spec.options is not None or "options" in spec.fields
    assert uses_options == has_options, spec.name


def test_every_task_renders_every_template_on_mock_records(registered):
  _, prepared = registered
  for name, splits in prepared.items():
    if name not in SPECS:
      continue  # an evaluation or formats variant (tested below)
    spec = SPECS[name]
    for split, (records, split_prepared) in splits.items():
      assert records and split_prepared.examples, (name, split)
      for record in records:
        if spec.options is not None:
          assert record["options"] == list(spec.options)
        if "options" in record and "answer" in record:
          assert record["answer"] in record["options"], (name, record)
        for template in spec.templates:
          inputs, targets = templates.render(template, record)
          assert inputs.strip() and targets.strip(), (name, template.name)


def test_template_count_variants(registered):
  names, _ = registered
  spec = SPECS["rte"]
  for k in protocol.TEMPLATE_COUNTS:
    name = protocol.task_name(flan2021.COLLECTION, spec, k)
    assert name in names
    assert [t.name for t in tasks.get_info(name).source.templates] == [
        t.name for t in spec.templates[:k]]
  assert protocol.task_name(flan2021.COLLECTION, spec, 10) == "flan2021_rte"
  assert seqio.get_mixture_or_task("flan2021_rte").metric_fns == [metrics.accuracy]
  assert tasks.get_info("flan2021_xsum").metadata["metrics"] == ["rouge"]


# FLAN's exclusions, written out: the clusters a held-out cluster also removes from training.
ALSO_EXCLUDED = {
    "nli": {"paraphrase"}, "paraphrase": {"nli"},
    "reading_comprehension": {"reading_comprehension_commonsense"},
    "commonsense": {"reading_comprehension_commonsense"},
    "reading_comprehension_commonsense": {"reading_comprehension", "commonsense"},
}
# And the datasets dropped because they overlap a held-out dataset's test data (flan2021.OVERLAPS),
# written out per cluster: e.g. holding out NLI evaluates QNLI, built from SQuAD.
OVERLAP_DROPPED = {
    "nli": {"squad_v1", "squad_v2", "fix_punct"}, "misc": {"mnli"},
    "reading_comprehension": {"qnli"},
    "coreference": {"wnli"}, "summarization": {"record", "hellaswag"},
    "reading_comprehension_commonsense": {"cnn_dailymail"},
    "commonsense": {"wiki_lingua_english_en"},
}


@pytest.mark.parametrize("k", [None, 4])
def test_heldout_mixture_membership_is_exact(registered, k):
  del registered
  for cluster in flan2021.CLUSTERS:
    train_name, eval_name = protocol.heldout_names(flan2021.COLLECTION, cluster, k)
    dropped = {cluster} | ALSO_EXCLUDED.get(cluster, set())
    want = {protocol.task_name(flan2021.COLLECTION, s, k) for s in flan2021.DATASETS
            if s.cluster not in dropped and "train" in s.splits
            and s.name not in OVERLAP_DROPPED.get(cluster, set())}
    got = {t.name for t in seqio.get_mixture_or_task(train_name).tasks}
    assert got == want, cluster
    assert "flan2021_wsc273" not in got  # evaluation-only
    want_eval = {f"flan2021_{s.name}" for s in flan2021.DATASETS if s.cluster == cluster}
    assert {t.name for t in seqio.get_mixture_or_task(eval_name).tasks} == want_eval


def test_no_evaluated_dataset_or_overlapping_source_is_in_its_training_mixture(registered):
  del registered
  for cluster in flan2021.CLUSTERS:
    for suffix in ("", protocol.FORMATS_SUFFIX):
      train_name = protocol.heldout_names(flan2021.COLLECTION, cluster, suffix=suffix)[0]
      trained = {tasks.get_info(t.name).metadata["dataset"]
                 for t in seqio.get_mixture_or_task(train_name).tasks}
      for variant in heldout.EVALUATION:
        eval_name = protocol.heldout_names(flan2021.COLLECTION, cluster, suffix=variant)[1]
        for t in seqio.get_mixture_or_task(eval_name).tasks:
          dataset = tasks.get_info(t.name).metadata["dataset"]
          assert dataset not in trained, (cluster, dataset)
          assert not heldout.overlapping(dataset, flan2021.OVERLAPS) & trained, (cluster, dataset)


def test_overlaps_are_stated_with_reasons_and_name_real_datasets():
  assert len(flan2021.OVERLAPS) >= 5
  for o in flan2021.OVERLAPS:
    assert o.dataset in SPECS and all(n in SPECS for n in o.overlaps), o
    assert len(o.reason.split()) >= 5, o  # a reason a reader can check, not a tag
  assert heldout.overlapping("squad_v1", flan2021.OVERLAPS) == {"qnli"}  # symmetric
  with pytest.raises(ValueError, match="not in the collection"):
    heldout.check_overlaps(flan2021.DATASETS, [heldout.Overlap("rte", ("squad_v3",), "a typo here")])


def test_evaluation_mixtures_in_both_variants(registered):
  del registered
  for cluster in flan2021.CLUSTERS:
    members = [s for s in flan2021.DATASETS if s.cluster == cluster]
    for variant, method in heldout.EVALUATION.items():
      eval_name = protocol.heldout_names(flan2021.COLLECTION, cluster, suffix=variant)[1]
      assert eval_name == f"flan2021_heldout_{cluster}_eval_{variant.split('_')[1]}"
      got = {t.name for t in seqio.get_mixture_or_task(eval_name).tasks}
      assert got == {f"flan2021_{s.name}_{variant}" for s in members}
      for spec in members:
        info = tasks.get_info(f"flan2021_{spec.name}_{variant}")
        assert info.source.splits == ("test",) and info.metadata["evaluation"] == method
        kinds = {t.kind for t in info.source.templates}
        assert templates.INVERTED not in kinds, spec.name
        if variant == heldout.EVAL_GENERATE and (spec.options or "options" in spec.fields):
          assert all("{options_}" in t.inputs for t in info.source.templates), spec.name


def test_flan2022_format_variants_render_on_mock_records(registered):
  from t5tune.data import formats  # pylint: disable=g-import-not-at-top
  _, prepared = registered
  for name in ("rte", "copa", "xsum"):
    for split, (_, split_prepared) in prepared[f"{name}_f22"].items():
      for ex in split_prepared.examples:
        assert ex["format"] in formats.STYLES and ex["inputs"].strip() and ex["targets"].strip()
        if ex["options"] and ex["template_kind"] != templates.INVERTED:
          assert ex["targets"] in ex["options"], (name, ex)
  for cluster in flan2021.CLUSTERS:
    plain, f22 = (protocol.heldout_names(flan2021.COLLECTION, cluster, suffix=x)[0]
                  for x in ("", protocol.FORMATS_SUFFIX))
    assert [t.name + "_f22" for t in seqio.get_mixture_or_task(plain).tasks] == [
        t.name for t in seqio.get_mixture_or_task(f22).tasks]


def test_evaluation_variants_on_mock_records(registered):
  from t5tune.infer import judging  # pylint: disable=g-import-not-at-top
  _, prepared = registered
  for name in EVAL_SAMPLE:
    for variant in heldout.EVALUATION:
      task = f"flan2021_{name}_{variant}"
      examples = prepared[task]["test"][1].examples
      assert examples, task
      chosen = judging.methods(examples, "greedy", rank_classification=judging.task_ranks(
          tasks.get_info(task).metadata))
      has_options = any(ex["options"] for ex in examples)
      ranks = variant == heldout.EVAL_RANK and has_options
      assert set(chosen) == {judging.RANK_CLASSIFICATION if ranks else "greedy"}, task
      for ex in examples:
        if ex["options"]:
          assert ex["targets"] in ex["options"], task  # what rank classification picks among


def test_carving_follows_flan():
  assert protocol.carve({"train": "train", "validation": "validation"})[0] == {
      "train": "train[:-200]", "validation": "train[-200:]", "test": "validation"}
  assert protocol.carve({"train": "train", "test": "test"})[0] == {
      "train": "train[:-200]", "validation": "train[-200:]", "test": "test"}
  assert protocol.carve({"train": "tr", "validation": "va", "test": "te"})[0] == {
      "train": "tr", "validation": "va", "test": "te"}
  assert protocol.carve({"test": "test"})[0] == {"test": "test"}
  assert protocol.carve({"train": "train"})[1] == {"train": 30_000, "validation": 200}


def test_caps_keep_the_first_records():
  raw = sources.function({"train": [{"x": str(i)} for i in range(50)],
                          "validation": [{"x": str(i)} for i in range(5)]})
  capped = protocol.CappedSource(raw, {"train": 7, "validation": 200})
  assert [r["x"] for _, r in capped.records("train")] == [str(i) for i in range(7)]
  assert len(list(capped.records("validation"))) == 5


def test_mixing_rate_is_capped_at_3000():
  records = [{"q": f"question {i}", "a": "yes"} for i in range(protocol.MIXING_CAP + 20)]
  template = templates.Template("t", "{q}", "{a}")
  big = tasks.register_task("flan_test_big", source={"train": records}, fields=["q", "a"],
                            templates=[template], overwrite=True)
  small = tasks.register_task("flan_test_small", source={"train": records[:30]}, fields=["q", "a"],
                              templates=[template], overwrite=True)
  rate = mixtures.examples_proportional(protocol.MIXING_CAP)
  assert rate(big) == protocol.MIXING_CAP and rate(small) == 30


def test_describe_lists_every_task_with_its_source():
  text = protocol.describe(flan2021.COLLECTION, flan2021.DATASETS, flan2021.CLUSTERS)
  for spec in flan2021.DATASETS:
    assert f"flan2021_{spec.name}  tfds={spec.tfds}" in text
  assert "(FLAN pinned 3.1.0)" in text


def test_the_held_out_mixtures_are_described_per_cluster_as_registered(registered):
  """`data list --collection`'s mixtures: every registered name's family and suffix, the counts of
  the registered mixtures, wrapped at 100 columns (one mixture was one line of thousands)."""
  text = protocol.describe_mixtures(flan2021.COLLECTION, flan2021.DATASETS, flan2021.CLUSTERS,
                                    overlaps=flan2021.OVERLAPS)
  assert max(len(line) for line in text.splitlines()) <= 100
  registered_mixtures = [n for n in seqio.MixtureRegistry.names() if n.startswith("flan2021_heldout_")]
  assert registered_mixtures
  suffixes = set()
  for name in registered_mixtures:
    cluster, kind, suffix = re.fullmatch(r"flan2021_heldout_(\w+?)_(train|eval)(_\w+)?", name).groups()
    assert f"flan2021_heldout_{cluster}_{kind}[" in text.replace("\n        ", " "), name
    suffixes.add((kind, suffix or ""))
  assert suffixes == {("train", s) for s in ("", "_t1", "_t2", "_t4", "_t7", "_f22")} | {
      ("eval", s) for s in ("", "_rank", "_gen")}
  assert "..._train_t<k>" in text and "k in 1, 2, 4, 7" in text and "..._train_f22" in text
  for suffix in ("_eval_rank", "_eval_gen", "_eval "):
    assert f"flan2021_heldout_C{suffix}" in text
  for cluster in flan2021.CLUSTERS:
    n_train = len(seqio.get_mixture_or_task(f"flan2021_heldout_{cluster}_train").tasks)
    n_eval = len(seqio.get_mixture_or_task(f"flan2021_heldout_{cluster}_eval_rank").tasks)
    assert f"  {cluster}: {n_eval} tasks evaluated, {n_train} trained on" in text
  nli = text[text.index("  nli:"):text.index("  reading_comprehension:")]
  assert "not trained on (related clusters): paraphrase" in nli
  assert "not trained on (share a source with its test data): fix_punct, squad_v1, squad_v2" in nli


def test_data_list_collection_cli():
  run = lambda *args: cli.run(["data", "list", *args], timeout=300)
  proc = run("--collection=flan2021")
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert f"{len(flan2021.DATASETS)} datasets in 12 clusters" in proc.stdout
  assert "flan2021_rte  tfds=super_glue/rte:1.0.2" in proc.stdout and "templates=10" in proc.stdout
  # the held-out mixtures too, per cluster (they were shown only by --module=t5tune.flan_tasks_mock)
  assert "flan2021_heldout_nli_train[_t<k>|_f22], flan2021_heldout_nli_eval[_rank|_gen]" in proc.stdout
  proc = run("--collection=flan2020")
  assert proc.returncode == 2 and "Did you mean 'flan2021'" in proc.stderr


def _store(name, config, version, splits, data_dir):
  """A small real TFDS dataset with the real builder's features, in order (rows {premise, hypothesis})."""
  features = tfds.builder(f"{name}/{config}:{version}", data_dir=data_dir).info.features
  tfds.dataset_builders.store_as_tfds_dataset(
      name=name, config=config, version=version, features=features, data_dir=data_dir,
      disable_shuffling=True,
      split_datasets={split: [(f"{split}{i}", {"premise": f"{split} premise {i}",
                                               "hypothesis": f"hypothesis {i}", "idx": i,
                                               "label": i % 2}) for i in range(n)]
                      for split, n in splits.items()})


def test_caps_carving_and_rates_on_prepared_tfds_data(tmp_path, monkeypatch):
  data_dir = str(tmp_path)
  _store("super_glue", "rte", "1.0.2", {"train": 240, "validation": 7}, data_dir)
  _store("super_glue", "cb", "1.0.2", {"train": 215, "validation": 5}, data_dir)
  # Small caps so that both bind on small data; the rule is the one FLAN's 30,000 / 3,000 follow.
  monkeypatch.setattr(protocol, "TRAIN_CAP", 25)
  monkeypatch.setattr(protocol, "MIXING_CAP", 20)
  specs = [SPECS["rte"], SPECS["cb"]]
  protocol.register("flantest", specs, ("nli", "sentiment"), data_dir=data_dir, template_counts=(10,))
  rte = tasks.get_info("flantest_rte").source
  premises = lambda split: [r["premise"] for r in rte.records(split)[0]]
  assert premises("train") == [f"train premise {i}" for i in range(25)]  # capped, first records
  assert premises("validation") == [f"train premise {i}" for i in range(40, 240)]  # end of train
  assert premises("test") == [f"validation premise {i}" for i in range(7)]  # original validation
  cb = tasks.get_info("flantest_cb").source
  assert len(cb.records("train")[0]) == 15 and len(cb.records("validation")[0]) == 200
  train_mix, _ = protocol.heldout_names("flantest", "sentiment")
  mixture = seqio.get_mixture_or_task(train_mix)
  rates = {t.name: mixture.get_rate(t) for t in mixture.tasks}
  assert rates == {"flantest_rte": 20.0, "flantest_cb": 15.0}  # examples, capped at MIXING_CAP
  no_train, nli_eval = protocol.heldout_names("flantest", "nli")
  assert no_train not in seqio.MixtureRegistry.names()  # nothing left to train on
  assert {t.name for t in seqio.get_mixture_or_task(nli_eval).tasks} == {"flantest_rte", "flantest_cb"}


def _mapped(name, raw):
  return {field: fn(raw) for field, fn in SPECS[name].all_fields().items()}


def test_field_mappings_on_records_shaped_like_the_real_data():
  import numpy as np  # pylint: disable=g-import-not-at-top
  assert _mapped("rte", {"premise": "p", "hypothesis": "h", "label": 1})["answer"] == "no"
  assert _mapped("snli", {"premise": "p", "hypothesis": "h", "label": -1})["answer"] == ""  # dropped
  story = _mapped("story_cloze", {"context": "c", "endings": ["first", "second"], "label": 2})
  assert story["answer"] == "second" and story["options"] == ["first", "second"]
  assert _mapped("sentiment140", {"text": "t", "polarity": 4})["answer"] == "positive"
  assert _mapped("sentiment140", {"text": "t", "polarity": 0})["answer"] == "negative"
  book = _mapped("openbookqa", {"fact1": "f", "answerKey": 2, "question": {
      "stem": np.array(b"why?"), **{f"choice_{c}": np.array(c.encode()) for c in "ABCD"}}})
  assert (book["question"], book["answer"], book["options"]) == ("why?", "C", list("ABCD"))
  arc = _mapped("arc_easy", {"question": "q", "answerKey": 1,
                             "choices": {"text": np.array([b"x", b"y", b"z"]), "label": np.array([0, 1, 2])}})
  assert arc["answer"] == "y" and arc["options"] == ["x", "y", "z"]
  assert _mapped("trec", {"text": "t", "label-coarse": 3})["answer"] == "person"
  assert _mapped("stsb", {"sentence1": "a", "sentence2": "b", "label": 3.6})["answer"] == "4"
  punct = _mapped("fix_punct", {"premise": "Well, it's late -- isn't it? Yes."})
  assert punct == {"text": "Well, it's late -- isn't it? Yes.", "unpunctuated": "well it's late isn't it yes"}
