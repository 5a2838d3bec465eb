"""configs/experiments/flan2021_heldout.py and flan_t5_benchmarks.py: load, validate, name real mixtures and harness tasks, plan."""
import importlib.util
import os

import pytest
import seqio

from t5tune.data.collections import flan2021
from t5tune.data.collections import heldout
from t5tune.infer import eval_tasks
from t5tune.infer import evaluation
from t5tune.train import experiment
from tests import cli

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _load(name):
  spec = importlib.util.spec_from_file_location(name, os.path.join(REPO, "configs", "experiments", f"{name}.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


HELDOUT = _load("flan2021_heldout")
BENCHMARKS = _load("flan_t5_benchmarks")


@pytest.mark.parametrize("cluster", flan2021.CLUSTERS)
def test_heldout_config_validates_for_every_cluster(cluster):
  for arg, modules in ((cluster, ("t5tune.flan_tasks",)), (f"{cluster},smoke", ("t5tune.flan_tasks_mock",))):
    config = HELDOUT.get_config(arg)
    experiment.validate(config, 8)
    assert config.data.mixture == f"flan2021_heldout_{cluster}_train"
    assert tuple(config.data.modules) == modules
    assert tuple(config.evaluation.tasks) == (f"flan2021_heldout_{cluster}_eval_rank",
                                              f"flan2021_heldout_{cluster}_eval_gen")
    assert config.evaluation.split == "test"
    assert set(config.evaluation.keys()) == set(evaluation.default_config().keys())
  with pytest.raises(ValueError, match="expected CLUSTER"):
    HELDOUT.get_config("nlii")


def test_smoke_config_names_mixtures_its_module_registers():
  import t5tune.flan_tasks_mock  # pylint: disable=g-import-not-at-top,unused-import
  for cluster in ("nli", "commonsense"):
    config = HELDOUT.get_config(f"{cluster},smoke")
    train = seqio.get_mixture_or_task(config.data.mixture)
    assert {t.name for t in train.tasks}
    resolved = eval_tasks.resolve_tasks(config.evaluation.tasks)
    assert {name for _, _, name in resolved} == {
        f"flan2021_{s.name}_{v}" for s in flan2021.DATASETS if s.cluster == cluster
        for v in heldout.EVALUATION}


def test_smoke_config_plans_its_train_step():
  from t5tune.train import plan  # pylint: disable=g-import-not-at-top
  config = HELDOUT.get_config("nli,smoke")
  result = plan.plan(config)
  assert result.params_bytes > 0 and result.temp_bytes > 0 and result.batch == config.data.batch_size


def test_heldout_config_loads_through_the_command_line():
  proc = cli.run(["train", "--config=configs/experiments/flan2021_heldout.py:reading_comprehension",
                  "--config.train.steps=5", "--show_config"], timeout=300)
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert "flan2021_heldout_reading_comprehension_train" in proc.stdout
  assert "flan2021_heldout_reading_comprehension_eval_gen" in proc.stdout


def test_benchmark_config_commands_name_the_harness_own_tasks():
  from lm_eval import tasks as lm_tasks  # pylint: disable=g-import-not-at-top
  config = BENCHMARKS.get_config("flan_t5_xl")
  assert dict(config.reported) == {"mmlu_5shot": 52.4, "bbh_3shot_direct": 41.0}
  with pytest.raises(ValueError, match="checkpoint is empty"):
    BENCHMARKS.commands(config)
  with config.unlocked():
    config.checkpoint = "ckpt/x"
  known = set(lm_tasks.TaskManager().all_tasks)
  commands = BENCHMARKS.commands(config)
  assert len(commands) == len(BENCHMARKS.RUNS)
  for args in commands:
    assert args[:2] == ["t5tune", "harness"] and args[args.index("--model") + 1] == "t5tune"
    assert args[args.index("--tasks") + 1] in known
    assert args[args.index("--model_args") + 1] == "pretrained=ckpt/x"  # names the harness's output folder
  mmlu = commands[list(BENCHMARKS.RUNS).index("mmlu_5shot")]
  assert mmlu[mmlu.index("--num_fewshot") + 1] == "5"
  with pytest.raises(ValueError, match="expected one of"):
    BENCHMARKS.get_config("flan_t5_huge")
  # local copies: the generator first, then every run reads what it wrote (the same task names)
  from t5tune.infer import local_tasks  # pylint: disable=g-import-not-at-top
  with config.unlocked():
    config.local_bbh, config.local_mmlu, config.output = "BIG-Bench-Hard", "mmlu", "out"
  first, *runs = BENCHMARKS.commands(config)
  assert first == ["python", "-m", "t5tune.infer.local_tasks", "--bbh=BIG-Bench-Hard", "--mmlu=mmlu",
                   "--output=out/local_tasks"]
  assert len(runs) == len(BENCHMARKS.RUNS)
  assert all(args[args.index("--include_path") + 1] == "out/local_tasks" for args in runs)
  written = {group for _, group in local_tasks.BBH_VARIANTS} | {"mmlu"}
  assert {tasks for tasks, _ in BENCHMARKS.RUNS.values()} <= written
