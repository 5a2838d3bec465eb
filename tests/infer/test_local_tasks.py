"""Local BBH and MMLU copies as harness tasks: equal to the harness's own but for the data source, loaded and run offline.

The files are written here in the released layouts: BIG-Bench-Hard's
`bbh/<task>.json` and `cot-prompts/<task>.txt` (made from the harness's own
exemplars, so the generated tasks can be compared with its definitions),
MMLU's `data/{dev,test}/<subject>_{dev,test}.csv` without a header.
"""
import csv
import json
import os

import pytest

lm_eval = pytest.importorskip("lm_eval")  # a dependency: installed by setup.py, never skipped in CI

from lm_eval.tasks import _yaml_loader  # noqa: E402

from t5tune import errors  # noqa: E402
from t5tune.infer import local_tasks  # noqa: E402

HARNESS = local_tasks.harness_dir()
BBH = ("boolean_expressions", "snarks")  # snarks: a description with a blank line in it
SUBJECTS = ("abstract_algebra", "anatomy")


def _bbh_layout(root):
  """BIG-Bench-Hard's files for BBH, from the harness's own chain-of-thought exemplars."""
  os.makedirs(root / "bbh")
  os.makedirs(root / "cot-prompts")
  for i, task in enumerate(BBH):
    own = local_tasks.harness_config(os.path.join(HARNESS, "bbh", "cot_fewshot", f"{task}.yaml"))
    shots = [f"Q: {s['input']}{local_tasks.COT_PROMPT}{s['target']}"
             for s in own["fewshot_config"]["samples"]]
    header = "BIG-Bench canary GUID\n-----\n" if i == 0 else ""
    (root / "cot-prompts" / f"{task}.txt").write_text(
        header + own["description"].rstrip("\n") + "\n\n" + "\n\n".join(shots) + "\n")
    examples = [{"input": f"question {task} {n}", "target": "True" if n % 2 else "False"}
                for n in range(3)]
    (root / "bbh" / f"{task}.json").write_text(json.dumps({"examples": examples}))


def _mmlu_layout(root):
  for split, n in (("dev", 5), ("test", 3)):
    os.makedirs(root / "data" / split)
    for subject in SUBJECTS:
      with open(root / "data" / split / f"{subject}_{split}.csv", "w", newline="") as f:
        # A field with a comma, a quote and a line break: the CSVs quote them.
        csv.writer(f).writerows([f"{subject} {split} {i}, \"q\"\nline 2?", "one", "two", "three",
                                 "four", "ABCD"[i % 4]] for i in range(n))


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
  root = tmp_path_factory.mktemp("local")
  _bbh_layout(root / "BIG-Bench-Hard")
  _mmlu_layout(root / "mmlu")
  out = root / "tasks"
  assert local_tasks.main([f"--bbh={root / 'BIG-Bench-Hard'}", f"--mmlu={root / 'mmlu'}",
                           f"--output={out}"]) == 0
  return root, out


def _without_data(config):
  return {k: v for k, v in config.items() if k not in local_tasks.DATA_KEYS}


def test_task_files_equal_the_harness_own_but_for_the_data_source(generated):
  root, out = generated
  load = lambda path: _yaml_loader.load_yaml(path, resolve_func=False)  # the harness's own reading
  pairs = [(out / group / f"{task}.yaml", os.path.join(HARNESS, "bbh", directory, f"{task}.yaml"))
           for directory, group in local_tasks.BBH_VARIANTS for task in BBH]
  pairs += [(out / "mmlu" / f"mmlu_{s}.yaml", os.path.join(HARNESS, "mmlu", "default", f"mmlu_{s}.yaml"))
            for s in SUBJECTS]
  for ours, theirs in pairs:
    mine, own = load(ours), load(theirs)
    assert _without_data(mine) == _without_data(own), ours
    assert mine["dataset_path"] == "json" and mine["dataset_name"] is None
  bbh = load(out / "bbh_fewshot" / "boolean_expressions.yaml")["dataset_kwargs"]
  assert bbh == {"data_files": {"test": str(root / "BIG-Bench-Hard" / "bbh" / "boolean_expressions.json")},
                 "field": "examples"}
  for group in ("_mmlu", "_mmlu_stem", "_mmlu_humanities"):
    assert load(out / "mmlu" / f"{group}.yaml") == load(os.path.join(HARNESS, "mmlu", "default", f"{group}.yaml"))
  group = load(out / "bbh_cot_fewshot" / "_bbh_cot_fewshot.yaml")
  own = load(os.path.join(HARNESS, "bbh", "cot_fewshot", "_bbh_cot_fewshot.yaml"))
  assert group["task"] == [f"bbh_cot_fewshot_{t}" for t in BBH]
  assert {k: v for k, v in group.items() if k != "task"} == {k: v for k, v in own.items() if k != "task"}
  rows = [json.loads(line) for line in (out / "mmlu" / "data" / "anatomy_test.jsonl").open()]
  assert rows[1] == {"question": "anatomy test 1, \"q\"\nline 2?", "subject": "anatomy",
                     "choices": ["one", "two", "three", "four"], "answer": 1}


def test_the_harness_loads_them_and_a_t5tune_model_runs_one(generated, monkeypatch):
  from lm_eval import simple_evaluate
  from lm_eval.tasks import TaskManager
  from lm_eval.tasks import get_task_dict
  from t5tune.infer import harness
  from t5tune.models import config as model_config
  from t5tune.models import t5
  monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
  _, out = generated
  manager = TaskManager(include_path=str(out), include_defaults=False)
  for name in ("bbh_fewshot", "bbh_cot_fewshot", "mmlu", "mmlu_stem", "mmlu_anatomy",
               "bbh_cot_fewshot_snarks"):
    assert name in manager.all_tasks, name
  tasks = get_task_dict(["bbh_cot_fewshot_snarks"], manager)
  task = tasks["bbh_cot_fewshot_snarks"]
  assert [d["input"] for d in task.test_docs()] == [f"question snarks {n}" for n in range(3)]
  lm = harness.register()(model=t5.build_model(model_config.preset("tiny"), seed=0), vocab="byte",
                          batch_size=4)
  result = simple_evaluate(model=lm, tasks=["mmlu_abstract_algebra"], task_manager=manager,
                           num_fewshot=1, log_samples=True)
  samples = result["samples"]["mmlu_abstract_algebra"]
  assert len(samples) == 3 and all(len(s["filtered_resps"]) == 4 for s in samples)
  assert "abstract_algebra dev 0" in samples[0]["arguments"][0][0]  # the dev exemplar, from the CSV
  assert 0.0 <= result["results"]["mmlu_abstract_algebra"]["acc,none"] <= 1.0


def test_missing_prompts_and_bad_rows_are_one_line_naming_the_file(tmp_path):
  (tmp_path / "b" / "bbh").mkdir(parents=True)
  (tmp_path / "b" / "bbh" / "navigate.json").write_text('{"examples": []}')
  with pytest.raises(errors.MissingInputError, match="bbh/navigate.json has no cot-prompts/navigate.txt"):
    local_tasks.write(str(tmp_path / "out"), bbh=str(tmp_path / "b"))
  assert not (tmp_path / "out").exists()
  for split in ("dev", "test"):
    (tmp_path / "m" / "data" / split).mkdir(parents=True)
    (tmp_path / "m" / "data" / split / f"anatomy_{split}.csv").write_text("q,a,b,c,d,A\nq,a,b,c,d,E\n")
  with pytest.raises(errors.InputError, match=r"row 2 is not question,A,B,C,D,answer") as e:
    local_tasks.write(str(tmp_path / "out"), mmlu=str(tmp_path / "m"))
  assert e.value.where.endswith("anatomy_dev.csv:2") or e.value.where.endswith("anatomy_test.csv:2")
  assert "\n" not in str(e.value) and not (tmp_path / "out").exists()
