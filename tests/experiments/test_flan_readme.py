"""docs/flan.md, "FLAN collection": its commands, in order, offline on TFDS mock data (the configs' `smoke` setting).

list -> prepare (offline: one line, exit 2) -> train with NLI held out -> evaluate the held-out
cluster in both variants -> the benchmark config's harness command on a local MMLU-format task.
"""
import json
import os
import re
import shlex
import subprocess
import sys

import numpy as np

from t5tune.data.collections import flan2021
from tests import cli

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PAGE = open(os.path.join(REPO, "docs", "flan.md"), encoding="utf-8").read()
SECTION = PAGE[PAGE.index("## FLAN collection"):]
ENV = dict(cli.ENV, HF_DATASETS_OFFLINE="1", JAX_NUM_CPU_DEVICES="1")


def _readme_commands():
  """The page section's commands, continuation lines joined, comments and exports dropped."""
  block = SECTION[SECTION.index("```sh\n# 1."):]
  block = block[6:block.index("```", 6)].replace("\\\n", " ")
  return [" ".join(line.split()) for line in block.splitlines()
          if line.strip() and not line.startswith(("#", "export"))]


def _run(command, timeout=900):
  args = shlex.split(command)
  if args[0] == "t5tune":
    return cli.run(args[1:], env=ENV, timeout=timeout)
  if args[0] == "python":
    args = [sys.executable] + args[1:]
  return subprocess.run(args, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=timeout)


def _local_mmlu(root):
  """The harness's own MMLU definition over a small local JSON file (as tests/infer/test_harness.py)."""
  import lm_eval  # pylint: disable=g-import-not-at-top
  tasks_dir = os.path.join(os.path.dirname(lm_eval.__file__), "tasks")
  rng = np.random.RandomState(0)
  words = "cat dog fish red blue small large fast slow which animal colour".split()
  for split, n in (("test", 6), ("dev", 5)):
    with open(root / f"mmlu_{split}.jsonl", "w") as f:
      for _ in range(n):
        f.write(json.dumps({"question": " ".join(rng.choice(words, 5)) + "?", "subject": "animals",
                            "choices": [str(rng.choice(words)) for _ in range(4)],
                            "answer": int(rng.randint(4))}) + "\n")
  (root / "tasks").mkdir()
  (root / "tasks" / "mmlu_local.yaml").write_text(
      f"include: {tasks_dir}/mmlu/default/_default_template_yaml\n"
      "task: t5tune_mmlu_local\nnum_fewshot: 5\ndataset_path: json\ndataset_name: null\n"
      f"dataset_kwargs:\n  data_files:\n    test: {root}/mmlu_test.jsonl\n    dev: {root}/mmlu_dev.jsonl\n")
  return str(root / "tasks")


def test_the_readme_commands_run_in_order_on_mock_data(tmp_path):
  commands = _readme_commands()
  kinds = [" ".join(c.split()[:3]) for c in commands]
  assert kinds == ["t5tune data list", "t5tune data prepare", "t5tune convert hf-to-t5tune",
                   "t5tune train --config=configs/experiments/flan2021_heldout.py:nli",
                   "t5tune evaluate --config=configs/experiments/flan2021_heldout.py:nli",
                   "python configs/experiments/flan_t5_benchmarks.py --checkpoint=runs/heldout_nli/checkpoints/30000",
                   "t5tune harness --model"], kinds
  work = tmp_path / "runs"
  local = lambda c: (c.replace("$TFDS_DATA_DIR", str(tmp_path / "tfds"))
                     .replace("runs/heldout_nli/checkpoints/30000", str(work / "checkpoints" / "2"))
                     .replace("runs/heldout_nli", str(work))
                     .replace("$T5TUNE_FLAN_VOCAB", "byte"))

  # 1. list
  proc = _run(commands[0])
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert f"{len(flan2021.DATASETS)} datasets in 12 clusters" in proc.stdout
  # 2. prepare, offline: one line naming what is missing, exit 2, nothing written
  proc = _run(local(commands[1]) + " --tasks=rte,cb --check")
  assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr[-2000:]
  assert "rte (super_glue/rte:1.0.2), cb (super_glue/cb:1.0.2)" in proc.stderr
  assert not (tmp_path / "tfds").exists()
  # 3. convert needs downloaded weights: the smoke setting starts from random ones (its own tests
  # are tests/convert). 4. train with NLI held out, on mock data:
  train = local(commands[3]).replace(":nli ", ":nli,smoke ")
  train = train.replace(" --config.init_from=weights/lm_adapt_base", "")
  proc = _run(train)
  assert proc.returncode == 0, proc.stderr[-3000:]
  result = json.loads(proc.stdout.strip().splitlines()[-1])
  assert result["step"] == 2 and np.isfinite(result["loss"])
  # 5. evaluate the held-out cluster in both variants
  proc = _run(local(commands[4]).replace(":nli ", ":nli,smoke "))
  assert proc.returncode == 0, proc.stderr[-3000:]
  metrics = json.loads((work / "eval" / "metrics.json").read_text())
  for variant in ("eval_rank", "eval_gen"):
    assert "flan2021_rte_" + variant in json.dumps(metrics), variant
  methods = {}
  for path in (work / "eval" / "predictions").glob("flan2021_rte_eval_*.jsonl"):
    methods[path.name.split(".")[0]] = {json.loads(line)["method"] for line in path.open()}
  assert methods == {"flan2021_rte_eval_rank": {"rank_classification"},
                     "flan2021_rte_eval_gen": {"greedy"}}, methods
  # 6. the benchmark config prints the README's harness command; it runs on a local MMLU task
  proc = _run(local(commands[5]))
  assert proc.returncode == 0, proc.stderr[-2000:]
  printed = [line for line in proc.stdout.splitlines() if line.startswith("t5tune harness")]
  assert local(commands[6]) in printed, printed
  tasks_dir = _local_mmlu(tmp_path)
  harness = local(commands[6]).replace("--tasks mmlu", "--tasks t5tune_mmlu_local")
  proc = _run(harness.replace("--batch_size 16", "--batch_size 4") + f" --include_path {tasks_dir}")
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert re.search(r"t5tune_mmlu_local.*acc", proc.stdout), proc.stdout[-2000:]
