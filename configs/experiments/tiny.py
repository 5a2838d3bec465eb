"""The tiny model on the bundled demo mixture (t5tune/demo_tasks.py): a CPU smoke run in under a minute.

    t5tune train --config=configs/experiments/tiny.py --workdir=/tmp/t5tune_tiny \\
        --config.train.steps=50 --config.mesh.shape='(2,2,2)'
"""
from t5tune.train import experiment


def get_config(arg=None):
  """`arg` is an optional model preset name, e.g. `--config=configs/experiments/tiny.py:t5_1_1_small`."""
  config = experiment.default_config()
  config.model.preset = arg or "tiny"
  config.data.mixture = "t5tune_demo_mix"
  config.data.modules = ("t5tune.demo_tasks",)
  config.data.inputs_length, config.data.targets_length = 64, 32
  config.data.batch_size = 8
  config.train.steps, config.train.log_every = 20, 5
  config.eval.every, config.eval.batches = 10, 2
  config.checkpoint.every = 10
  return config
