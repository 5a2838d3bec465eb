"""A two-stage continual run sized for the tests: the tiny model, 4 steps a stage, 8 examples evaluated.

    t5tune continual --config=tests/train/continual_config.py --workdir=/tmp/cl
    ...:lora   one LoRA per stage (rank 4 on the attention q/v projections)
"""
from t5tune.train import continual


def get_config(arg=None):
  c = continual.default_config()
  e = c.experiment
  e.model.preset = "tiny"
  # continual_stall lets a test stop the child in stage 2 (see that module).
  e.data.modules = ("t5tune.demo_tasks", "tests.train.continual_stall")
  e.data.inputs_length, e.data.targets_length = 32, 16
  e.data.batch_size = 8
  e.optimizer.name = "adamw"
  e.optimizer.learning_rate = 1e-3
  e.train.log_every = 1
  e.checkpoint.every = 2
  e.checkpoint.async_save = False
  c.eval.batch_size = 8
  c.eval.num_examples = 8
  c.eval.max_decode_len = 8
  c.stages.s1 = continual.stage(("t5tune_demo_sentiment",), 4)
  c.stages.s2 = continual.stage(("t5tune_demo_qa",), 4, replay_rate=0.5, replay_cap=16)
  c.order = ("s1", "s2")
  if arg == "lora":
    c.lora_per_stage = True
    e.model.overrides.lora_rank = 4
    e.optimizer.learning_rate = 1e-2
    c.stages.s1.steps = c.stages.s2.steps = 2
  return c
