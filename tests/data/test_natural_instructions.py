"""Super-NaturalInstructions from task files written here: definitions, positive exemplars, exclusions, categories."""
import json

import pytest
import seqio

from t5tune import errors
from t5tune.data import tasks
from t5tune.data.collections import natural_instructions as ni
from t5tune.infer import metrics


def _task_file(root, name, *, definition, categories, source, n=30, positives=3):
  body = {
      "Definition": [definition],
      "Positive Examples": [{"input": f"pos input {i}", "output": f"pos output {i}",
                             "explanation": "why"} for i in range(positives)],
      "Negative Examples": [],
      "Instances": [{"id": f"{name}-{i}", "input": f"{name} question {i}",
                     "output": [f"answer {i}", f"other {i}"]} for i in range(n)],
      "Categories": categories, "Source": [source],
  }
  (root / f"{name}.json").write_text(json.dumps(body))


@pytest.fixture()
def task_dir(tmp_path):
  _task_file(tmp_path, "task001_colours", definition="Name the colour of the {object} described.",
             categories=["Question Answering"], source="made up")
  _task_file(tmp_path, "task002_titles", definition="Write a title for the text.",
             categories=["Title Generation", "Summarization"], source="news", n=3000)
  _task_file(tmp_path, "task003_mmlu_answer", definition="Answer the exam question.",
             categories=["Question Answering"], source="mmlu")
  _task_file(tmp_path, "task004_bb_logic", definition="Solve it.", categories=["Logic"],
             source="BIG-bench logical_deduction")
  return str(tmp_path)


def test_tasks_definitions_exemplars_and_categories(task_dir):
  names, dropped = ni.register(task_dir, metric_fns=metrics)
  assert names == ["ni_task001_colours", "ni_task001_colours_pos2",
                   "ni_task002_titles", "ni_task002_titles_pos2"]
  info = tasks.get_info("ni_task001_colours")
  assert info.metadata["cluster"] == "question_answering"
  assert tasks.get_info("ni_task002_titles").metadata["cluster"] == "title_generation"
  ex = info.source.prepared("train").examples[0]
  # The task's own definition (its braces kept literally) is the instruction; the first reference the target.
  assert ex["inputs"].startswith("Definition: Name the colour of the {object} described.")
  assert ex["inputs"].endswith("Input: task001_colours question 0\nOutput:")
  assert ex["targets"] == "answer 0" and "pos input" not in ex["inputs"]
  shot = tasks.get_info("ni_task001_colours_pos2").source.prepared("train").examples[0]["inputs"]
  assert "Input: pos input 0\nOutput: pos output 0" in shot and "pos input 1" in shot
  assert "pos input 2" not in shot  # two exemplars
  assert seqio.get_mixture_or_task("ni_task001_colours").metric_fns == [metrics.rouge]


def test_benchmark_derived_tasks_are_excluded_with_their_reason(task_dir):
  names, dropped = ni.register(task_dir)
  assert set(dropped) == {"task003_mmlu_answer", "task004_bb_logic"}
  assert "MMLU" in dropped["task003_mmlu_answer"] and "BIG-Bench" in dropped["task004_bb_logic"]
  assert not any("mmlu" in n or "bb_logic" in n for n in names)
  assert {t.name for t in seqio.get_mixture_or_task("ni_train").tasks} == {
      "ni_task001_colours", "ni_task002_titles"}


def test_splits_and_caps(task_dir):
  ni.register(task_dir, names=["task002_titles"])
  source = tasks.get_info("ni_task002_titles").source
  assert len(source.records("validation")[0]) == 200  # 10% of 3,000 is 300, capped at 200
  assert len(source.records("train")[0]) == 2800
  train_ids = {r["input"] for r in source.records("train")[0]}
  assert not train_ids & {r["input"] for r in source.records("validation")[0]}


def test_bad_task_files_are_input_errors(tmp_path):
  (tmp_path / "task009_broken.json").write_text("{not json")
  with pytest.raises(errors.InputError, match="task009_broken.json"):
    ni.register(str(tmp_path))
  (tmp_path / "task009_broken.json").write_text(json.dumps({"Definition": ["x"]}))
  with pytest.raises(errors.InputError, match="missing keys \\['Instances'\\]"):
    ni.register(str(tmp_path))
  with pytest.raises(errors.MissingInputError, match="no task"):
    ni.register(str(tmp_path / "nowhere"))


def _good(name="task010_ok"):
  return {"Definition": ["Answer it."], "Positive Examples": [{"input": "a", "output": "b"}],
          "Instances": [{"id": f"{name}-{i}", "input": f"q {i}", "output": [f"a {i}"]}
                        for i in range(3)], "Categories": ["Question Answering"], "Source": ["x"]}


def _broken(**change):
  body = _good("task011_bad")
  body.update(change)
  return json.dumps(body)


_DEEP = '{"Definition": ["d"], "Instances": [], "x": ' + "[" * 100_000 + "]" * 100_000 + "}"


@pytest.mark.parametrize("name, text, key, expect", [
    # (file name, contents, the key path the error names after the file, text of the error)
    ("task011_bad.json", _broken(Instances=5), "Instances",
     "'Instances' must be a list of objects, got int"),  # was a TypeError
    ("task011_bad.json", _broken(**{"Positive Examples": ["a string"]}), "Positive Examples[0]",
     "Positive Examples[0] must be an object with ['input', 'output'], got a string"),  # AttributeError
    ("task011_bad.json", _broken(Instances=[{"input": 7, "output": ["x"]}]), "Instances[0].input",
     "Instances[0].input must be a string, got int"),  # was reported as "missing"
    ("task011_bad.json", _broken(Instances=[{"output": ["x"]}]), "Instances[0]",
     "Instances[0] has no 'input'"),
    ("task011_bad.json", _broken(Instances=[{"input": "q", "output": {"a": 1}}]),
     "Instances[0].output", "'Instances[0].output' must be a string or a list of strings, got dict"),
    ("task011_bad.json", _broken(**{"Positive Examples": [{"input": ["x"], "output": "y"}]}),
     "Positive Examples[0].input", "Positive Examples[0].input must be a string, got list"),
    ("task011_bad.json", _broken(Categories={"a": 1}), "Categories",
     "'Categories' must be a string or a list of strings, got dict"),
    ("task011_bad.json", "[1, 2]", None, "a task file holds one JSON object, got list"),
    ("task011_bad.json", _DEEP, None, "the JSON is nested too deeply to read"),  # RecursionError
    ("task011_bad.json", b'{"Definition": ["caf\xe9"], "Instances": []}', None,
     "the file is not UTF-8 (byte 20)"),  # did not name the file
    ("task011_bad.json/", "", None, "a directory, not a task file"),  # IsADirectoryError
    ("task011-bad one.json", _broken(), None,
     "the file name gives the task name ni_task011-bad one, which seqio refuses"),
])
def test_malformed_task_files_are_input_errors_naming_the_file_and_key(tmp_path, name, text, key,
                                                                        expect):
  (tmp_path / "task010_ok.json").write_text(json.dumps(_good()))
  path = tmp_path / name.rstrip("/")
  if name.endswith("/"):
    path.mkdir()
  elif isinstance(text, bytes):
    path.write_bytes(text)
  else:
    path.write_text(text)
  with pytest.raises(errors.InputError) as e:
    ni.register(str(tmp_path))
  assert str(e.value).startswith(expect), str(e.value)
  assert e.value.where == (f"{path}: {key}" if key else str(path))
  assert not [n for n in seqio.TaskRegistry.names() if "task01" in n]  # every file read first


def test_names_and_options_are_checked_at_registration(task_dir):
  # A registered name (ni_ prefix) selects its file; a misspelt one is refused with the closest.
  names, _ = ni.register(task_dir, names=["ni_task001_colours"], mixture=False)
  assert names == ["ni_task001_colours", "ni_task001_colours_pos2"]
  with pytest.raises(errors.UsageError, match="no task file 'task001_colors'.*Did you mean"
                     " 'task001_colours'"):
    ni.register(task_dir, names=["task001_colors"])
  with pytest.raises(errors.UsageError, match="Did you mean 'task002_titles'"):
    ni.register(task_dir, names=["ni_task002_title"])
  with pytest.raises(errors.UsageError, match="has no 'rouge' function"):
    ni.register(task_dir, metric_fns={"accuracy": metrics.accuracy})  # was a KeyError
  # formats= given a dict: refused when the task is registered, not when it is first read.
  with pytest.raises(errors.UsageError, match="formats= must be a t5tune.data.formats.Flan2022,"
                     " got dict"):
    ni.register(task_dir, names=["task001_colours"], formats={"max_exemplars": 2})
  from t5tune.data import formats
  with pytest.raises(errors.UsageError, match="max_tokens=0 must be an integer of at least 1"):
    formats.Flan2022(max_tokens=0)


def _official(root):
  """A natural-instructions checkout in the official layout: tasks/ and splits/default/."""
  (root / "tasks").mkdir()
  (root / "splits" / "default").mkdir(parents=True)
  _task_file(root / "tasks", "task001_colours", definition="Name the colour.",
             categories=["Question Answering"], source="made up", n=12)
  _task_file(root / "tasks", "task003_mmlu_answer", definition="Answer the exam question.",
             categories=["Question Answering"], source="mmlu")
  _task_file(root / "tasks", "task002_titles", definition="Write a title.",
             categories=["Title Generation"], source="news", n=130)
  _task_file(root / "tasks", "task009_unused", definition="Not in a split.", categories=["X"],
             source="x")
  (root / "splits" / "default" / "train_tasks.txt").write_text("task001_colours\ntask003_mmlu_answer\n")
  (root / "splits" / "default" / "test_tasks.txt").write_text("task002_titles\n\n")


def test_official_splits_register_ni_train_and_ni_test(tmp_path):
  _official(tmp_path)
  names, dropped = ni.register_splits(str(tmp_path), train_cap=5, metric_fns=metrics)
  assert set(dropped) == {"task003_mmlu_answer"}  # Flan 2022's exclusions, training only
  assert "ni_task009_unused" not in names
  assert [t.name for t in seqio.get_mixture_or_task("ni_train").tasks] == ["ni_task001_colours"]
  assert len(tasks.get_info("ni_task001_colours").source.prepared("train").examples) == 5  # the cap
  assert [t.name for t in seqio.get_mixture_or_task("ni_test").tasks] == ["ni_task002_titles"]
  assert [t.name for t in seqio.get_mixture_or_task("ni_test_pos2").tasks] == ["ni_task002_titles_pos2"]
  test = tasks.get_info("ni_task002_titles").source
  assert list(test.splits) == ["test"]
  assert len(test.prepared("test").examples) == ni.TEST_INSTANCES  # NI's first 100 of 130
  (tmp_path / "splits" / "default" / "test_tasks.txt").write_text("task002_titles\ntask404_gone\n")
  with pytest.raises(errors.MissingInputError, match="task404_gone"):
    ni.register_splits(str(tmp_path))

