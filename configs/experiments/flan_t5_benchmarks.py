"""MMLU (5-shot) and BBH (3-shot, direct and chain-of-thought) of a Flan-T5 / T5 checkpoint through `t5tune harness`.

    python configs/experiments/flan_t5_benchmarks.py --checkpoint=ckpt/flan_t5_base \\
        --vocab=flan-t5-base/spiece.model --output=runs/bench_base     # prints the commands
    t5tune harness --model t5tune --model_args pretrained=ckpt/flan_t5_base,vocab=... \\
        --tasks mmlu --num_fewshot 5 --output_path runs/bench_base/mmlu   # one of them
    # offline, from local copies (BIG-Bench-Hard's bbh/ + cot-prompts/, MMLU's data/ CSVs):
    python configs/experiments/flan_t5_benchmarks.py --checkpoint=ckpt/flan_t5_base \\
        --bbh=BIG-Bench-Hard --mmlu=mmlu --output=runs/bench_base

`get_config(arg)` (`arg`: a published model, e.g. "flan_t5_base", for its
reported numbers) returns the runs: each is a set of lm-evaluation-harness
tasks and a shot count, run by `commands(config)` as `t5tune harness`
command lines (the harness's own MMLU and BBH definitions; the BBH groups
carry their 3 exemplars themselves). With `local_bbh` / `local_mmlu` the
first command is `python -m t5tune.infer.local_tasks`, which writes the same
definitions over the local files into `OUTPUT/local_tasks`, and the harness
commands read them (`--include_path`). The model is passed as `pretrained=`
(the harness names its output folder after it). `REPORTED` holds the numbers
the Flan-T5 paper (Chung et al., 2022) reports, to read a run against.
"""
import shlex

import ml_collections

RUNS = {
    # name: (harness tasks, --num_fewshot or None when the task's own exemplars are used)
    "mmlu_5shot": ("mmlu", 5),
    "bbh_3shot_direct": ("bbh_fewshot", None),
    "bbh_3shot_cot": ("bbh_cot_fewshot", None),
}

# Flan-T5 paper (Chung et al., 2022): MMLU 5-shot and BBH 3-shot (direct), in percent.
REPORTED = {
    "flan_t5_base": {"mmlu_5shot": 35.9, "bbh_3shot_direct": 31.3},
    "flan_t5_xl": {"mmlu_5shot": 52.4, "bbh_3shot_direct": 41.0},
}


def get_config(arg=None):
  """`arg`: the published model the run is compared with ("flan_t5_base" by default)."""
  model = arg or "flan_t5_base"
  if model not in REPORTED:
    raise ValueError(f"flan_t5_benchmarks config argument {model!r}: expected one of {sorted(REPORTED)}")
  c = ml_collections.ConfigDict()
  c.model = model
  c.checkpoint = ""  # a t5tune model dir, training checkpoint or Hugging Face T5 dir
  c.vocab = ""  # its SentencePiece model (default: the checkpoint's spiece.model)
  c.output = "runs/benchmarks"
  c.batch_size = 16
  c.runs = tuple(RUNS)
  c.include_path = ""  # a directory of local task YAMLs (offline data), passed to the harness
  # Local copies read instead of the hub (t5tune.infer.local_tasks writes their task YAMLs into
  # OUTPUT/local_tasks): a BIG-Bench-Hard checkout, MMLU's original layout.
  c.local_bbh = ""
  c.local_mmlu = ""
  c.log_samples = True
  c.reported = dict(REPORTED[model])
  c.lock()
  return c


def commands(config, tasks_override=None) -> list[list[str]]:
  """The argument lists of the config's runs (`tasks_override`: {run: tasks}): `t5tune harness`
  per run, after `python -m t5tune.infer.local_tasks` when local copies are given."""
  if not config.checkpoint:
    raise ValueError("config.checkpoint is empty: give the model to evaluate (--config.checkpoint=DIR)")
  model_args = f"pretrained={config.checkpoint}" + (f",vocab={config.vocab}" if config.vocab else "")
  out = []
  include_path = config.include_path
  if config.local_bbh or config.local_mmlu:
    include_path = f"{config.output}/local_tasks"
    out.append(["python", "-m", "t5tune.infer.local_tasks"]
               + ([f"--bbh={config.local_bbh}"] if config.local_bbh else [])
               + ([f"--mmlu={config.local_mmlu}"] if config.local_mmlu else [])
               + [f"--output={include_path}"])
  for run in config.runs:
    if run not in RUNS:
      raise ValueError(f"config.runs: {run!r} is not one of {sorted(RUNS)}")
    tasks, shots = RUNS[run]
    tasks = (tasks_override or {}).get(run, tasks)
    args = ["t5tune", "harness", "--model", "t5tune", "--model_args", model_args, "--tasks", tasks,
            "--batch_size", str(config.batch_size), "--output_path", f"{config.output}/{run}"]
    if shots is not None:
      args += ["--num_fewshot", str(shots)]
    if include_path:
      args += ["--include_path", include_path]
    if config.log_samples:
      args.append("--log_samples")
    out.append(args)
  return out


if __name__ == "__main__":
  import argparse  # pylint: disable=g-import-not-at-top
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--model", default=None)
  parser.add_argument("--checkpoint", required=True)
  parser.add_argument("--vocab", default="")
  parser.add_argument("--output", default="runs/benchmarks")
  parser.add_argument("--bbh", default="", help="a local BIG-Bench-Hard checkout (bbh/, cot-prompts/)")
  parser.add_argument("--mmlu", default="", help="a local MMLU in its original layout (data/)")
  args = parser.parse_args()
  cfg = get_config(args.model)
  with cfg.unlocked():
    cfg.checkpoint, cfg.vocab, cfg.output = args.checkpoint, args.vocab, args.output
    cfg.local_bbh, cfg.local_mmlu = args.bbh, args.mmlu
  for command in commands(cfg):
    print(shlex.join(command))
  print(f"# reported for {cfg.model}: {dict(cfg.reported)}")
