"""Continual tuning on the demo tasks: sentiment, then QA, then word reversal, with one remedy per run.

    t5tune continual --config=experiments/continual/config.py:naive  --workdir=runs/continual/naive
    t5tune continual --config=experiments/continual/config.py:replay --workdir=runs/continual/replay
    t5tune continual --config=experiments/continual/config.py:l2sp   --workdir=runs/continual/l2sp
    t5tune continual --config=experiments/continual/config.py:ewc    --workdir=runs/continual/ewc
    t5tune continual --config=experiments/continual/config.py:lora   --workdir=runs/continual/lora
    t5tune continual --config=experiments/continual/config.py:distill --workdir=runs/continual/distill
    t5tune continual --config=experiments/continual/config.py:multitask --workdir=runs/continual/multitask

`ARG` picks the remedy (`replay0.1`, `replay0.3` etc. set the replay rate;
`distill` is replay at 0.3 plus a KL to the previous stage's model, so that
it differs from `replay0.3` by the distillation alone); `multitask` trains
one stage on all tasks (the upper bound; its matrix has one row). Sized for
a CPU: the tiny model, short stages. The tests run this config made tinier
with ml_collections overrides (tests/train/test_continual.py).
"""
from t5tune.train import continual

STAGES = (("sentiment", ("t5tune_demo_sentiment",)),
          ("qa", ("t5tune_demo_qa",)),
          ("reverse", ("t5tune_demo_reverse",)))


def get_config(arg=None):
  """`arg`: naive (default), replay[RATE], l2sp, ewc, lora, distill or multitask."""
  arg = arg or "naive"
  c = continual.default_config()
  e = c.experiment
  e.model.preset = "tiny"
  e.data.modules = ("t5tune.demo_tasks",)
  e.data.inputs_length, e.data.targets_length = 64, 32
  e.data.batch_size = 16
  e.optimizer.name = "adamw"
  e.optimizer.learning_rate = 3e-3
  e.train.log_every = 50
  e.checkpoint.every = 100
  c.eval.batch_size = 16
  c.eval.max_decode_len = 32
  steps = 300
  if arg == "multitask":
    c.stages.all = continual.stage([t for _, ts in STAGES for t in ts], steps * len(STAGES))
    c.order = ("all",)
    return c
  extra = {}
  if arg.startswith("replay"):
    extra = {"replay_rate": float(arg[len("replay"):] or 0.2), "replay_cap": 100}
  elif arg == "l2sp":
    extra = {"l2sp": 1e-2}
  elif arg == "ewc":
    extra = {"ewc": 1e2}
  elif arg == "distill":
    extra = {"replay_rate": 0.3, "replay_cap": 100, "distill": 1.0, "distill_temperature": 2.0}
  elif arg == "lora":
    c.lora_per_stage = True
    e.model.overrides.lora_rank = 8
    e.model.overrides.lora_targets = r"(attention|mlp)\.(q|v|wi_0|wi_1|wo)$"
    e.optimizer.learning_rate = 1e-2
  elif arg != "naive":
    raise ValueError(f"--config=...:ARG: unknown {arg!r}; use naive, replay[RATE], l2sp, ewc,"
                     " lora, distill or multitask")
  for k, (name, tasks) in enumerate(STAGES):
    c.stages[name] = continual.stage(tasks, steps, **(extra if k else {}))
  c.order = tuple(name for name, _ in STAGES)
  return c
