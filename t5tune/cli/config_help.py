"""`--show_config`: a resolved config printed one key a line, each with a one-line description.

The descriptions are the comments beside (or just above) each key in the
function that defines the defaults (`t5tune.train.experiment.default_config`,
`t5tune.infer.evaluation.default_config`), so they live in one place; keys
those comments leave undescribed are described in `_MORE` below. A test checks
that every default key has a description.
"""
from __future__ import annotations

import inspect
import io
import re
import tokenize
from typing import Callable, Mapping

_ASSIGN = re.compile(r"^\s*c\.([\w.]+)\s*=")
_FIELD = re.compile(r"^\s+(\w+)\s*:\s*[^=]+=")  # `  name: type = default` of a dataclass

# Keys whose defaults carry no comment; the first word is the kind of value.
_MORE = {
    "seed": "int: seeds parameter initialisation, dropout and data order",
    "model": "section: the architecture",
    "model.preset": "str: a preset name (t5tune info --config=NAME shows it), e.g. tiny, flan_t5_base",
    "model.overrides": "section: T5Config fields replacing the preset's (unset = the preset's value)",
    "data": "section: the training data",
    "data.mixture": "str: the seqio mixture or task trained on",
    "data.inputs_length": "int: encoder length in tokens (longer inputs are truncated)",
    "data.targets_length": "int: decoder length in tokens (longer targets are truncated)",
    "data.pack": "bool: pack several examples into one row",
    "data.shuffle": "bool: shuffle the training data",
    "data.eval_split": "str: the split evaluation reads",
    "mesh": "section: the device mesh",
    "optimizer": "section: the optimizer (optax)",
    "optimizer.name": "str: adafactor | adamw | sgd (and the other names experiment.py accepts)",
    "optimizer.learning_rate": "float: the peak learning rate",
    "optimizer.b1": "float: Adam's first-moment decay",
    "optimizer.b2": "float: Adam's second-moment decay",
    "optimizer.eps": "float: Adam's epsilon",
    "optimizer.decay_rate": "float: Adafactor's second-moment decay exponent",
    "optimizer.clipping_threshold": "float: Adafactor's update clipping",
    "optimizer.multiply_by_parameter_scale": "bool: Adafactor scales updates by parameter RMS",
    "optimizer.factored": "bool: Adafactor factors second moments of matrices",
    "optimizer.min_dim_size_to_factor": "int: Adafactor factors only dimensions at least this big",
    "optimizer.adafactor_eps": "float: Adafactor's epsilon",
    "schedule": "section: the learning-rate schedule",
    "schedule.warmup_steps": "int: linear warm-up steps",
    "schedule.end_learning_rate": "float: the learning rate at the end of the decay",
    "train": "section: the training loop",
    "train.steps": "int: total training steps",
    "train.z_loss": "float: auxiliary z-loss weight (T5X: 1e-4)",
    "train.label_smoothing": "float: label smoothing (t5x convention)",
    "train.log_every": "int: steps between metrics rows",
    "eval": "section: periodic evaluation",
    "eval.batches": "int: evaluation batches per evaluation",
    "eval.metric": "str: the metric early stopping and keep_best use",
    "checkpoint": "section: checkpoints",
    "checkpoint.every": "int: steps between checkpoints",
    "checkpoint.keep": "int: how many recent checkpoints are kept",
    "checkpoint.async_save": "bool: save in the background while training continues",
    "mesh.shape": "tuple: (data, fsdp, tensor) device counts; one entry may be -1 (the rest)",
    "optimizer.weight_decay": "float: decoupled weight decay (AdamW); 0 = off",
    "modules": "tuple: python modules imported first (they register tasks)",
    "decoding": "section: decoding options (t5tune.infer.decoding.DecodeOptions)",
    "evaluation": "section: the evaluation settings (t5tune evaluate)",
}


def comment_descriptions(fn: Callable, assign: re.Pattern = _ASSIGN) -> dict[str, str]:
  """{dotted key: comment} from the `c.KEY = ...  # comment` lines of a default-config function
  (or, with `assign=_FIELD`, the `name: type = ...` fields of a dataclass such as T5Config)."""
  source = inspect.getsource(fn)
  comments: dict[int, str] = {}
  for tok in tokenize.generate_tokens(io.StringIO(source).readline):
    if tok.type == tokenize.COMMENT:
      comments[tok.start[0]] = tok.string.lstrip("#").strip()
  lines = source.splitlines()
  out, above = {}, []
  for number, line in enumerate(lines, start=1):
    stripped = line.strip()
    if stripped.startswith("#"):
      above.append(comments.get(number, ""))
      continue
    match = assign.match(line)
    if match:
      text = comments.get(number) or " ".join(above)
      if text:
        out[match.group(1)] = re.split(r"(?<!e\.g)\. ", text)[0].rstrip(".")
    above = []
  return out


def descriptions(experiment_defaults: Callable, evaluation_defaults: Callable) -> dict[str, str]:
  """{key: description} for experiment keys, and evaluation keys under "evaluation."."""
  out = comment_descriptions(experiment_defaults)
  for key, text in comment_descriptions(evaluation_defaults).items():
    out[f"evaluation.{key}"] = text
  for key, text in _MORE.items():
    out.setdefault(key, text)
  return out


def field_descriptions(cls) -> dict[str, str]:
  """{field: comment} of a dataclass whose fields carry their meaning in comments (T5Config)."""
  return comment_descriptions(cls, _FIELD)


def describe(key: str, table: Mapping[str, str]) -> str:
  if key in table:
    return table[key]
  if key.startswith("model.overrides."):
    return f"T5Config.{key.rsplit('.', 1)[1]}; unset = the preset's value"
  if key.startswith("evaluation.decoding."):
    return f"DecodeOptions.{key.rsplit('.', 1)[1]} (t5tune.infer.decoding)"
  return ""


def render(config, table: Mapping[str, str], prefix: str = "") -> list[str]:
  """`key = value  # description` lines, sections first-level headed."""
  lines = []
  for key, value in config.items():
    path = f"{prefix}{key}"
    if hasattr(value, "items") and not isinstance(value, dict):
      lines.append(f"{path}:  # {describe(path, table)}".rstrip(" #"))
      lines.extend(render(value, table, path + "."))
    else:
      lines.append(f"{path} = {value!r}  # {describe(path, table)}".rstrip(" #"))
  return lines
