"""Flan 2022 formats: four styles in equal parts, few-shot from train within a token budget, randomised options."""
import collections
import math
import re

import pytest

from t5tune import errors
from t5tune.data import cleaning
from t5tune.data import formats
from t5tune.data import tasks
from t5tune.data import templates

OPTIONS = ["red", "green", "blue"]
TEMPLATES = [
    templates.Template("opt", "Which colour goes with {thing}?\n\n{options_}\n\nAnswer:", "{answer}",
                       templates.ZERO_SHOT_OPTIONS),
    templates.Template("opt2", "{thing}: what colour is it? {options_}", "{answer}",
                       templates.ZERO_SHOT_OPTIONS),
    templates.Template("inv", "Name something whose colour is {answer}.", "{thing}",
                       templates.INVERTED),
]


def _records(prefix, n):
  return [{"thing": f"{prefix}-{i}", "options": OPTIONS, "answer": OPTIONS[i % 3]} for i in range(n)]


def _register(name="f22_test", seed=0, config=formats.Flan2022(max_exemplars=3, max_tokens=200),
              n_validation=4000, train=True):
  source = {"validation": _records("EVAL", n_validation)}
  if train:
    source["train"] = _records("TRAIN", 60)
  tasks.register_task(name, source=source, fields=["thing", "options", "answer"],
                      templates=TEMPLATES, formats=config, seed=seed, overwrite=True)
  return tasks.get_info(name).source


@pytest.fixture(scope="module")
def big():
  source = _register()
  return source, source.prepared("validation").examples, source.records("validation")[0]


def test_the_four_styles_come_in_equal_parts(big):
  _, examples, _ = big
  counts = collections.Counter(ex["format"] for ex in examples)
  assert set(counts) == set(formats.STYLES)
  n, p = len(examples), 1 / len(formats.STYLES)
  tolerance = 4 * math.sqrt(n * p * (1 - p))  # four standard deviations of a binomial count
  for style, count in counts.items():
    assert abs(count - n * p) <= tolerance, counts


def test_same_seed_same_examples_other_seed_other_examples():
  first = [dict(ex) for ex in _register(n_validation=300).prepared("validation").examples]
  again = _register(n_validation=300).prepared("validation").examples
  assert first == again
  other = _register(seed=1, n_validation=300).prepared("validation").examples
  assert [ex["inputs"] for ex in other] != [ex["inputs"] for ex in first]


def _ids(prefix, text):
  return [int(i) for i in re.findall(prefix + r"-(\d+)\b", text)]


def test_exemplars_come_from_train_only_and_never_the_query(big):
  source, examples, records = big
  few = [ex for ex in examples if ex["format"] in (formats.FS_OPT, formats.FS_NOOPT)]
  assert sum(ex["shots"] for ex in few) > len(few)  # exemplars were drawn
  for ex in examples:
    inverted = ex["template_kind"] == templates.INVERTED  # the query's thing is its target
    query = int(records[ex["record"]]["thing"].split("-")[1])
    assert _ids("EVAL", ex["inputs"]) == ([] if inverted else [query])
    assert len(_ids("TRAIN", ex["inputs"])) == ex["shots"]  # each exemplar names its thing once
    if ex["format"] in formats.ZERO_SHOT_STYLES:
      assert ex["shots"] == 0
  train_records = source.records("train")[0]
  for ex in source.prepared("train").examples:
    ids = _ids("TRAIN", ex["inputs"])
    query = int(train_records[ex["record"]]["thing"].split("-")[1])
    own = 0 if ex["template_kind"] == templates.INVERTED else 1
    assert ids.count(query) == own  # the query's own record is never one of its exemplars
    assert len(ids) == ex["shots"] + own


def test_few_shot_inputs_fit_the_token_budget(big):
  source, examples, _ = big
  budget = source.spec.formats.max_tokens
  few = [ex for ex in examples if ex["format"] in (formats.FS_OPT, formats.FS_NOOPT)]
  for ex in few:
    if ex["shots"]:
      assert source.count_tokens(ex["inputs"]) <= budget
  shots = collections.Counter(ex["shots"] for ex in few)
  assert shots[source.spec.formats.max_exemplars] < len(few)  # the budget bound some examples
  assert sum(v for k, v in shots.items() if k > 0) > 0  # and left exemplars in others


def test_lettered_options_rewrite_the_answer_to_its_label(big):
  _, examples, records = big
  lettered = plain = 0
  for ex in examples:
    record = records[ex["record"]]
    fmt = formats.options_format("f22_test", cleaning.content_key(record), 0, len(OPTIONS))
    shown = ex["format"] in (formats.FS_OPT, formats.ZS_OPT)
    query = ex["inputs"].split("\n\n")[-1] if not shown else ex["inputs"]
    if ex["template_kind"] == templates.INVERTED:
      assert ex["targets"] == record["thing"]
      continue
    if shown and fmt.lettered:
      lettered += 1
      labels = fmt.labels(len(OPTIONS))
      i = OPTIONS.index(record["answer"])
      assert ex["targets"] == labels[i] and ex["options"] == labels
      item = formats.LABELINGS[fmt.labeling][0](i) + record["answer"]
      assert item in ex["inputs"] and fmt.opening in ex["inputs"]
    else:
      plain += 1
      assert ex["targets"] == record["answer"] and ex["options"] == OPTIONS
      if not shown:
        assert not any(opening in query for opening in formats.OPENINGS)
  assert lettered > 100 and plain > 100


def test_options_formats_vary():
  seen = {formats.options_format("t", str(i), 0, 3) for i in range(200)}
  assert len({f.opening for f in seen}) == len(formats.OPENINGS)
  assert {f.labeling for f in seen} == set(formats.LABELINGS)
  assert {f.separator for f in seen} == set(formats.SEPARATORS)


def test_a_task_without_train_gets_zero_shot_styles_only():
  examples = _register("f22_no_train", n_validation=200, train=False).prepared("validation").examples
  assert {ex["format"] for ex in examples} == set(formats.ZERO_SHOT_STYLES)


def test_formats_refuse_few_shot_and_bad_styles():
  with pytest.raises(errors.UsageError, match="formats= decides"):
    tasks.register_task("f22_bad", source={"train": _records("T", 3)}, fields=["thing", "options", "answer"],
                        templates=TEMPLATES, formats=formats.Flan2022(), few_shot=2, overwrite=True)
  with pytest.raises(errors.UsageError, match="each must be one of"):
    formats.Flan2022(styles=("fs_maybe",))
  # All few-shot styles and no train split to draw exemplars from (was a bare ValueError).
  few_only = _register("f22_few_only", config=formats.Flan2022(styles=(formats.FS_OPT,)),
                       n_validation=5, train=False)
  with pytest.raises(errors.UsageError, match="has no train split, and its formats"):
    few_only.prepared("validation")
