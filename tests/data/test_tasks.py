"""Registration: JSONL/CSV/TSV/function sources, bad records, cleaning counts, variants, mixtures."""
import collections
import json

import pytest
import seqio

from t5tune import data
from t5tune import errors
from t5tune.data import cleaning
from t5tune.data import tasks

TEMPLATES = [
    data.Template("ask", "{question}\n{options_}", "{answer}", data.ZERO_SHOT_OPTIONS),
    data.Template("plain", "Answer: {question}", "{answer}"),
]


def _write_jsonl(path, rows):
  path.write_text("".join(r if isinstance(r, str) else json.dumps(r) + "\n" for r in rows))
  return str(path)


def _rows(n, start=0):
  return [{"question": f"Is {i} even?", "answer": "yes" if i % 2 == 0 else "no",
           "options": ["yes", "no"]} for i in range(start, start + n)]


def _exact_match(targets, predictions):
  return {"accuracy": 100 * sum(t == p for t, p in zip(targets, predictions)) / len(targets)}


def test_readme_snippet_jsonl_task_with_two_templates_and_a_metric(tmp_path):
  train = _write_jsonl(tmp_path / "train.jsonl", _rows(20))
  # --- the README snippet (under ten lines) ---
  data.register_task(
      "readme_parity", source={"train": train},
      fields=["question", "options", "answer"],
      templates=[data.Template("ask", "{question}\n{options_}", "{answer}", data.ZERO_SHOT_OPTIONS),
                 data.Template("plain", "Answer: {question}", "{answer}")],
      metric_fns=[_exact_match])
  ds = seqio.get_mixture_or_task("readme_parity").get_dataset(
      {"inputs": 64, "targets": 8}, split="train", shuffle=False)
  # ---
  examples = list(ds.as_numpy_iterator())
  assert len(examples) == 20
  ex = examples[0]
  assert {"inputs", "targets", "inputs_pretokenized", "targets_pretokenized", "options",
          "template_name", "template_kind"} <= set(ex)
  assert list(ex["options"]) == [b"yes", b"no"] and ex["targets"][-1] == 1  # EOS
  assert {e["template_name"] for e in examples} == {b"ask", b"plain"}
  vocab = seqio.ByteVocabulary()
  assert vocab.decode(ex["inputs"].tolist()) == ex["inputs_pretokenized"].decode()


def test_bad_jsonl_line_names_file_and_line(tmp_path):
  path = _write_jsonl(tmp_path / "bad.jsonl", _rows(2) + ['{"question": "oops",\n'] + _rows(1, 5))
  data.register_task("bad_json", source={"train": path}, fields=["question", "answer"],
                     templates=TEMPLATES[1:])
  with pytest.raises(cleaning.BadRecordError, match=rf"{path}:3: not valid JSON"):
    tasks.get_info("bad_json").source.prepared("train")


def test_byte_order_mark_is_not_part_of_the_first_record(tmp_path):
  """Windows editors save UTF-8 with a BOM: the first line (and CSV header) reads as without."""
  rows = _rows(2)
  jsonl = tmp_path / "bom.jsonl"
  jsonl.write_bytes(b"\xef\xbb\xbf" + "".join(json.dumps(r) + "\n" for r in rows).encode())
  csv = tmp_path / "bom.csv"
  csv.write_bytes(b"\xef\xbb\xbfquestion,answer\nIs 0 even?,yes\n")
  data.register_task("bom_jsonl", source={"train": str(jsonl)}, fields=["question", "answer"],
                     templates=TEMPLATES[1:])
  data.register_task("bom_csv", source={"train": str(csv)}, fields=["question", "answer"],
                     templates=TEMPLATES[1:])
  got = tasks.get_info("bom_jsonl").source.prepared("train").examples
  assert len(got) == 2 and got[0]["targets"] == "yes"
  got = tasks.get_info("bom_csv").source.prepared("train").examples
  assert len(got) == 1 and got[0]["inputs"] == "Answer: Is 0 even?"


def test_users_mistakes_at_registration_are_typed_errors():
  """A template's unknown field and a metric seqio cannot call are refused when registering."""
  with pytest.raises(errors.UsageError, match=r"uses field \{answr\}.* Did you mean 'answer'"):
    data.register_task("bad_template", source={"train": _rows(1)}, fields=["question", "answer"],
                       templates=[data.Template("t", "{question}", "{answr}")])
  def score(x):
    return {"n": len(x)}
  with pytest.raises(errors.UsageError, match=r"metric score\('x',\) .* wrong parameters"):
    data.register_task("bad_metric", source={"train": _rows(1)}, fields=["question", "answer"],
                       templates=TEMPLATES[1:], metric_fns=[score])
  assert "bad_template" not in seqio.TaskRegistry.names()
  assert "bad_metric" not in seqio.TaskRegistry.names()
  data.register_task("ok_metrics", source={"train": _rows(1)}, fields=["question", "answer"],
                     templates=TEMPLATES[1:], metric_fns=[_exact_match, lambda targets, scores: {}])


def test_missing_field_and_wrong_type_name_file_and_line(tmp_path):
  path = _write_jsonl(tmp_path / "missing.jsonl", _rows(3) + [{"question": "q?"}])
  data.register_task("missing_field", source={"train": path}, fields=["question", "answer"],
                     templates=TEMPLATES[1:])
  with pytest.raises(cleaning.BadRecordError, match=rf"{path}:4: required field 'answer'"):
    tasks.get_info("missing_field").source.prepared("train")
  path = _write_jsonl(tmp_path / "type.jsonl", [{"question": ["a"], "answer": "b"}])
  data.register_task("wrong_type", source={"train": path}, fields=["question", "answer"],
                     templates=TEMPLATES[1:])
  with pytest.raises(cleaning.BadRecordError, match=rf"{path}:1: field 'question' must be"):
    tasks.get_info("wrong_type").source.prepared("train")


def test_skip_mode_counts_bad_records_and_cleaning_counts_removals(tmp_path):
  rows = _rows(10) + ["not json\n", {"question": "no answer"}, {"question": 1.5, "answer": {}, "options": ["a"]},
                      {"question": "Is 0 even?", "answer": "yes", "options": ["yes", "no"]},
                      {"question": "is 0 EVEN", "answer": "Yes!", "options": ["yes", "no"]},
                      {"question": "  ", "answer": "yes", "options": ["yes", "no"]},
                      {"question": "Is 3 odd?", "answer": "yes", "options": []}]
  path = _write_jsonl(tmp_path / "mixed.jsonl", rows)
  data.register_task("skipping", source={"train": path}, fields=["question", "options", "answer"],
                     templates=TEMPLATES, on_bad_record="skip")
  prepared = tasks.get_info("skipping").source.prepared("train")
  assert len(prepared.examples) == 10
  assert prepared.counts == collections.Counter(
      read=17, bad_json=1, missing_field=1, wrong_type=1, duplicate_exact=1,
      duplicate_normalized=1, empty_field=1, empty_options=1)
  assert sum(prepared.template_usage.values()) == 10


def test_exact_only_dedup_and_length_filter_counts():
  rows = _rows(5) + [_rows(1)[0], dict(_rows(1)[0], question="IS 0 EVEN")]
  rows.append({"question": "x" * 100, "answer": "yes", "options": ["yes", "no"]})
  data.register_task("exact_dedup", source={"train": rows}, fields=["question", "options", "answer"],
                     templates=TEMPLATES[1:], dedup="exact", max_input_tokens=40)
  counts = tasks.get_info("exact_dedup").source.prepared("train").counts
  assert counts["duplicate_exact"] == 1 and counts["duplicate_normalized"] == 0
  assert counts["too_long_inputs"] == 1


def test_answers_that_are_not_options_are_counted_in_one_warning_per_split(caplog):
  # Rank classification scores such an example wrong whatever the model predicts; it trained and
  # was evaluated without a word (only `data report` counted it).
  rows = _rows(6)
  rows[2] = dict(rows[2], answer="maybe")
  rows[4] = dict(rows[4], answer="Yes")
  data.register_task("not_an_option", source={"train": rows}, fields=["question", "options", "answer"],
                     templates=TEMPLATES[:1], overwrite=True)
  source = tasks.get_info("not_an_option").source

  def said():
    return [r.getMessage() for r in caplog.records if "none of their options" in r.getMessage()]

  with caplog.at_level("WARNING"):
    source.prepared("train")
    source.prepared("train")  # cached: said once
    (line,) = said()
  assert line.startswith("task not_an_option split train: 2 of 6 examples have a target"), line
  assert "record 2: target 'maybe', options ['yes', 'no']" in line and "data report" in line
  # the report's count is the same rule
  from t5tune.quality import report_quality
  assert report_quality.consistency(source.prepared("train").examples)["ask"]["violations"] == {
      "target_not_in_options": 2}


def test_empty_split_is_an_error(tmp_path):
  path = _write_jsonl(tmp_path / "empty.jsonl", [])
  data.register_task("empty_split", source={"train": path}, fields=["question", "answer"],
                     templates=TEMPLATES[1:])
  with pytest.raises(ValueError, match="no records.*'empty_split', split 'train'"):
    tasks.get_info("empty_split").source.prepared("train")


def test_csv_and_tsv_sources_with_globs(tmp_path):
  (tmp_path / "a.csv").write_text('question,answer\n"Is 1, or 2?",no\nIs 4 even?,yes\n')
  (tmp_path / "b.csv").write_text("question,answer\nIs 6 even?,yes\n")
  (tmp_path / "c.tsv").write_text("question\tanswer\nIs 8 even?\tyes\nIs 9 even?\n")
  data.register_task("csv_task", source={"train": str(tmp_path / "*.csv")},
                     fields=["question", "answer"], templates=TEMPLATES[1:])
  assert [e["inputs"] for e in tasks.get_info("csv_task").source.prepared("train").examples] == [
      "Answer: Is 1, or 2?", "Answer: Is 4 even?", "Answer: Is 6 even?"]
  data.register_task("tsv_task", source=data.sources.tsv({"train": str(tmp_path / "c.tsv")}),
                     fields=["question", "answer"], templates=TEMPLATES[1:])
  with pytest.raises(cleaning.BadRecordError, match=r"c.tsv:3: 2 columns expected"):
    tasks.get_info("tsv_task").source.prepared("train")


def test_variants_share_a_source_and_follow_the_naming_scheme():
  rows = {"train": _rows(30), "validation": _rows(6, 100)}
  names = data.register_variants(
      "parity", ["", "zs_opt", "zs_noopt", "fs2", "zs_opt_fs2", "no_template"],
      source=rows, fields=["question", "options", "answer"], templates=TEMPLATES,
      metadata={"cluster": "math"})
  assert names == ["parity", "parity_zs_opt", "parity_zs_noopt", "parity_fs2",
                   "parity_zs_opt_fs2", "parity_no_template"]
  kinds = {n: {e["template_kind"] for e in tasks.get_info(n).source.prepared("validation").examples}
           for n in names}
  assert kinds["parity_zs_opt"] == {"zs_opt"} and kinds["parity_zs_noopt"] == {"zs_noopt"}
  assert kinds["parity_no_template"] == {"none"}
  fs = tasks.get_info("parity_fs2").source.prepared("validation").examples
  assert all(e["inputs"].count("Is ") == 3 for e in fs)
  nt = tasks.get_info("parity_no_template").source.prepared("validation").examples[0]
  assert nt["inputs"] == "Is 100 even?\nOPTIONS:\n- yes\n- no" and nt["targets"] == "yes"
  assert data.task_names(lambda i: i.metadata.get("cluster") == "math" and i.variant == "") == [
      "parity"]
  # Few-shot over the train split never shows the query itself.
  for e in tasks.get_info("parity_fs2").source.prepared("train").examples:
    shots, query = e["inputs"].rsplit("\n\n", 1)
    assert query.split("\n")[0].split(": ")[-1] not in shots


def _task_share(mixture, n=10_000):
  ds = seqio.get_mixture_or_task(mixture).get_dataset(
      {"inputs": 16, "targets": 4}, split="train", shuffle=False, seed=0, num_epochs=None,
      passthrough_features=["template_name"])
  counts = collections.Counter(
      ex["template_name"].decode() for ex in ds.take(n).as_numpy_iterator())
  return {k: v / n for k, v in counts.items()}


@pytest.fixture(scope="module")
def sized_tasks():
  for name, n in (("rate_s", 50), ("rate_m", 200), ("rate_l", 800)):
    data.register_task(
        name, source={"train": [{"q": f"{name} {i}", "a": "x"} for i in range(n)]},
        fields=["q", "a"], templates=[data.Template(name, "{q}", "{a}")],
        metadata={"size": n})


def test_mixture_rates_cap_and_temperature_within_two_percent(sized_tasks):
  del sized_tasks
  data.register_mixture("rates_cap", lambda i: "size" in i.metadata,
                        rate=data.examples_proportional(cap=300))
  share = _task_share("rates_cap")
  for name, want in (("rate_s", 50 / 550), ("rate_m", 200 / 550), ("rate_l", 300 / 550)):
    assert abs(share[name] - want) < 0.02, (name, share)
  data.register_mixture("rates_temp", ["rate_s", "rate_m", "rate_l"], rate=data.temperature(2.0))
  share = _task_share("rates_temp")
  for name, want in (("rate_s", 1 / 7), ("rate_m", 2 / 7), ("rate_l", 4 / 7)):
    assert abs(share[name] - want) < 0.02, (name, share)
  data.register_mixture("rates_explicit", ["rate_s", "rate_l"], rate={"rate_s": 3, "rate_l": 1})
  assert abs(_task_share("rates_explicit", 4000)["rate_s"] - 0.75) < 0.02


def test_mixture_errors_name_the_problem():
  with pytest.raises(ValueError, match=r"\['nope'\] are not registered"):
    data.register_mixture("bad_mix", ["nope"])
  with pytest.raises(ValueError, match="no registered task matches"):
    data.register_mixture("bad_mix", lambda i: False)


def test_tfds_source_reads_offline_from_data_dir(tmp_path):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  text = tfds.features.Text()
  tfds.dataset_builders.store_as_tfds_dataset(
      name="t5tune_tiny_qa", version="1.0.0",
      features=tfds.features.FeaturesDict({"q": text, "a": text}),
      split_datasets={"train": tf.data.Dataset.from_tensor_slices(
          {"q": ["a b", "c d", "e f"], "a": ["1", "2", "3"]})},
      data_dir=str(tmp_path))
  data.register_task("tfds_task", source=data.sources.tfds("t5tune_tiny_qa:1.0.0", data_dir=str(tmp_path)),
                     fields=["q", "a"], templates=[data.Template("x", "Q: {q}", "{a}")])
  examples = tasks.get_info("tfds_task").source.prepared("train").examples
  assert [(e["inputs"], e["targets"]) for e in examples] == [
      ("Q: a b", "1"), ("Q: c d", "2"), ("Q: e f", "3")]
