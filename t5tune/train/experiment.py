"""The experiment config schema: every key a training run reads, its default, and its checks.

Experiment files in configs/experiments/ start from `default_config()` and
change a few values; the command line changes more (`--config.train.steps=10`).
The returned ConfigDict is locked, so a misspelt key fails with the closest
valid one. `validate` checks values before anything is built or compiled.
"""
from __future__ import annotations

import dataclasses
import typing
from typing import Any

import ml_collections
from ml_collections import config_dict

from t5tune import errors
from t5tune import ranges
from t5tune import sharding
from t5tune.models import config as model_config
from t5tune.train import losses
from t5tune.train import optimizers


def _model_overrides() -> ml_collections.ConfigDict:
  """One typed, unset placeholder per T5Config field: `--config.model.overrides.d_model=128`."""
  hints = typing.get_type_hints(model_config.T5Config)
  fields = {f.name: config_dict.placeholder(hints[f.name])
            for f in dataclasses.fields(model_config.T5Config)}
  return ml_collections.ConfigDict(fields)


def default_config() -> ml_collections.ConfigDict:
  """All keys of an experiment with their defaults (FLAN fine-tuning of T5 where it applies)."""
  c = ml_collections.ConfigDict()
  c.seed = 0

  # Architecture: a preset name (t5tune.models.config.PRESETS) plus field overrides.
  c.model = ml_collections.ConfigDict()
  c.model.preset = "tiny"
  c.model.overrides = _model_overrides()
  # Initial weights: "" (random), a t5tune model/checkpoint directory, or a
  # Hugging Face T5 directory. Only parameters are taken from it; its
  # architecture wins over model.preset.
  c.init_from = ""

  c.data = ml_collections.ConfigDict()
  c.data.mixture = ""
  c.data.modules = ()  # python modules imported first (they register tasks)
  c.data.inputs_length = 512
  c.data.targets_length = 114
  c.data.pack = True
  c.data.batch_size = 128  # global, over all processes
  c.data.shuffle = True
  c.data.eval_split = "validation"
  # A directory `t5tune data cache` wrote: the tasks are read from their offline cache there
  # (seqio's use_cached), refused in one line if incomplete or made with other settings. "" = off.
  c.data.cache_dir = ""
  # "package.module:function" building the iterator instead of the seqio
  # pipeline: function(config, mesh, split) -> iterator of global batches with
  # save(dir) / restore(dir). For custom data and tests.
  c.data.iterator_factory = ""

  # (data, fsdp, tensor); one entry may be -1 (all remaining devices).
  c.mesh = ml_collections.ConfigDict()
  c.mesh.shape = (-1, 1, 1)

  c.optimizer = ml_collections.ConfigDict()
  c.optimizer.name = "adafactor"
  c.optimizer.learning_rate = 1e-3
  c.optimizer.grad_clip_norm = 0.0  # global-norm clipping; 0 = off
  c.optimizer.weight_decay = 0.0
  c.optimizer.weight_decay_exclude = r"(norm|bias|scale)"  # regex on parameter paths
  c.optimizer.b1 = 0.9
  c.optimizer.b2 = 0.999
  c.optimizer.eps = 1e-8
  c.optimizer.momentum = 0.0  # adafactor / sgd; 0 = none (T5 default)
  c.optimizer.decay_rate = 0.8
  c.optimizer.clipping_threshold = 1.0
  c.optimizer.multiply_by_parameter_scale = True
  c.optimizer.factored = True
  c.optimizer.min_dim_size_to_factor = 128
  c.optimizer.adafactor_eps = 1e-30
  # Partial fine-tuning: regexes on parameter paths such as
  # "decoder/layers/3/mlp/wi/kernel" (t5tune.models.paths names them and builds
  # per-layer regexes). Frozen parameters get no optimizer state.
  c.optimizer.freeze = ""  # e.g. "^encoder/" trains everything but the encoder
  c.optimizer.train_only = ""  # e.g. "^decoder/layers/(6|7)/" trains the top two layers; "peft" the LoRA/prompt/prefix/adapter parameters

  c.schedule = ml_collections.ConfigDict()
  c.schedule.name = "constant"  # constant | rsqrt | cosine | linear
  c.schedule.warmup_steps = 0
  c.schedule.decay_steps = 0  # 0 = until train.steps
  c.schedule.end_learning_rate = 0.0

  c.train = ml_collections.ConfigDict()
  c.train.steps = 1000
  c.train.microbatches = 1  # gradient accumulation
  c.train.loss_normalization = "tokens"  # tokens | sequences | constant
  c.train.loss_normalizing_factor = 233472.0  # for "constant" (FLAN: 128 * 114 * 16)
  c.train.z_loss = 0.0
  c.train.label_smoothing = 0.0
  c.train.nonfinite = "stop"  # stop | skip
  c.train.log_every = 10
  c.train.peak_flops_per_device = 0.0  # for MFU; 0 = not reported

  c.eval = ml_collections.ConfigDict()
  c.eval.every = 0  # steps; 0 = no periodic evaluation
  c.eval.batches = 8
  c.eval.metric = "eval/loss"
  c.eval.mode = "min"  # min | max
  c.eval.patience = 0  # evaluations without improvement before stopping; 0 = off

  c.checkpoint = ml_collections.ConfigDict()
  c.checkpoint.every = 1000
  c.checkpoint.keep = 3  # the latest N steps (at least 1: a run resumes from the latest)
  c.checkpoint.keep_best = 1  # also keep the best by eval.metric
  c.checkpoint.async_save = True

  c.lock()
  return c


def _choice(path: str, value: str, choices) -> None:
  if value not in choices:
    raise ValueError(f"config.{path}={value!r} is not one of {tuple(choices)}."
                     f"{errors.did_you_mean(value, choices)}")


def model_overrides(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """The `model.overrides` that are set (not None): the T5Config fields to replace."""
  return {k: v for k, v in config.model.overrides.items() if v is not None}


def resolve_model(config: ml_collections.ConfigDict) -> model_config.T5Config:
  """The T5Config of the preset with the overrides applied."""
  try:
    return model_config.preset(config.model.preset, **model_overrides(config))
  except ValueError as e:  # name the key the user typed, not the dataclass field
    raise type(e)(str(e).replace("T5Config.", "model.overrides.")) from None


def check_divisible(model: model_config.T5Config, mesh_shape: tuple[int, int, int]) -> None:
  """Sharded parameter axes must divide evenly by their mesh axis (see sharding.py's rules)."""
  _, fsdp, tensor = mesh_shape
  needs = [("num_heads", model.num_heads, "tensor", tensor),
           ("d_ff", model.d_ff, "tensor", tensor),
           ("vocab_size", model.vocab_size, "tensor", tensor),
           ("d_model", model.d_model, "fsdp", fsdp)]
  for field, size, axis, ways in needs:
    if size % ways:
      raise ValueError(
          f"config.mesh.shape={tuple(mesh_shape)} splits {field}={size} {ways} ways over"
          f" '{axis}', which does not divide it; change config.mesh.shape (or"
          f" config.model.overrides.{field})")


# The allowed range of every number of the schema above (ml_collections fields
# carry no metadata, so the declarations stand here, beside `default_config`);
# `validate` checks them before anything is built or written. Model fields
# declare theirs on T5Config (t5tune/models/config.py).
RANGES = {
    "data.inputs_length": "[1, inf)",
    "data.targets_length": "[1, inf)",
    "data.batch_size": "[1, inf)",
    "optimizer.learning_rate": "(0, inf)",
    "optimizer.grad_clip_norm": "[0, inf)",
    "optimizer.weight_decay": "[0, inf)",
    "optimizer.b1": "[0, 1)",
    "optimizer.b2": "[0, 1)",
    "optimizer.eps": "[0, inf)",
    "optimizer.momentum": "[0, 1)",
    "optimizer.decay_rate": "(0, 1]",
    "optimizer.clipping_threshold": "[0, inf)",
    "optimizer.min_dim_size_to_factor": "[1, inf)",
    "optimizer.adafactor_eps": "[0, inf)",
    "schedule.warmup_steps": "[0, inf)",
    "schedule.decay_steps": "[0, inf)",
    "schedule.end_learning_rate": "[0, inf)",
    "train.steps": "[1, inf)",
    "train.microbatches": "[1, inf)",
    "train.loss_normalizing_factor": "(0, inf)",
    "train.z_loss": "[0, inf)",
    "train.label_smoothing": "[0, 1)",
    "train.log_every": "[1, inf)",
    "train.peak_flops_per_device": "[0, inf)",
    "eval.every": "[0, inf)",
    "eval.batches": "[1, inf)",
    "eval.patience": "[0, inf)",
    "checkpoint.every": "[0, inf)",
    "checkpoint.keep": "[1, inf)",  # 0 once kept 1 silently: resuming needs the latest step
    "checkpoint.keep_best": "[0, inf)",
}


def validate(config: ml_collections.ConfigDict, num_devices: int) -> tuple[int, int, int]:
  """Checks values that the schema's types cannot; returns the resolved mesh shape.

  The model's fit to the mesh is checked by `build.resolve`, which knows the
  model config (the preset's or init_from's).

  Raises ValueError naming the config key to change.
  """
  try:
    mesh_shape = sharding.resolve_mesh_shape(config.mesh.shape, num_devices)
  except ValueError as e:
    raise ValueError(f"config.mesh.shape: {e}") from None
  _choice("optimizer.name", config.optimizer.name, optimizers.OPTIMIZERS)
  _choice("schedule.name", config.schedule.name, optimizers.SCHEDULES)
  _choice("train.loss_normalization", config.train.loss_normalization, losses.NORMALIZATIONS)
  _choice("train.nonfinite", config.train.nonfinite, ("stop", "skip"))
  _choice("eval.mode", config.eval.mode, ("min", "max"))
  for key, interval in RANGES.items():
    section, name = key.split(".")
    ranges.check(f"config.{key}", config[section][name], interval)
  dp = mesh_shape[0] * mesh_shape[1]
  batch, micro = config.data.batch_size, config.train.microbatches
  if batch % micro:
    raise ValueError(
        f"config.data.batch_size={batch} is not divisible by"
        f" config.train.microbatches={micro}; change one of them")
  if (batch // micro) % dp:
    raise ValueError(
        f"config.data.batch_size={batch} / config.train.microbatches={micro}"
        f" = {batch // micro} examples per micro-batch, not divisible by the"
        f" data-parallel size {dp} (mesh data x fsdp = {mesh_shape[0]} x"
        f" {mesh_shape[1]}); change config.data.batch_size or config.mesh.shape")
  if not (config.data.mixture or config.data.iterator_factory):
    raise ValueError("config.data.mixture is empty: name a seqio mixture or task to train on")
  return mesh_shape
