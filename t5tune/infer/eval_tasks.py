"""Which tasks an evaluation reads, and whether it can read them, checked before anything is written.

    eval_tasks.resolve_tasks(["my_mix"], clusters=["nli"], variants=("", "fs3"))
    #   -> [(base task, variant, registered name), ...]
    eval_tasks.check_evaluable("my_nli", "validation")        # the split and metric functions
    eval_tasks.check_input_lengths("my_nli", "validation", 512)  # no input over the limit

Used by `t5tune.infer.evaluation` (the evaluator and its config) and by the
experiments that build their own evaluations.
"""
from __future__ import annotations

from typing import Sequence

from t5tune import errors


def expand_mixtures(names: Sequence[str]) -> list[str]:
  """The registered tasks that `names` (tasks and mixtures, nested) stand for, in order, once each."""
  import seqio
  out = []
  for name in names:
    if name in seqio.MixtureRegistry.names():
      out.extend(expand_mixtures([t.name for t in seqio.get_mixture_or_task(name).tasks]))
    elif name in seqio.TaskRegistry.names():
      out.append(name)
    else:
      known = list(seqio.TaskRegistry.names()) + list(seqio.MixtureRegistry.names())
      raise errors.UsageError(
          f"{name!r} is not a registered seqio task or mixture.{errors.did_you_mean(name, known)}",
          where="--tasks / config.tasks",
          fix="import the module that registers it (config.modules / --module)")
  return list(dict.fromkeys(out))


def resolve_tasks(tasks: Sequence[str] = (), clusters: Sequence[str] = (),
                  variants: Sequence[str] = ("",)) -> list[tuple[str, str, str]]:
  """(base task, variant, registered task name) for every task x variant to evaluate."""
  from t5tune.data import tasks as tasks_lib
  names = expand_mixtures(list(tasks))
  if clusters:
    picked = tasks_lib.task_names(
        lambda info: info.variant == "" and info.metadata.get("cluster") in set(clusters)
        and not info.metadata.get("augmentation"))  # t5tune.quality.augment: training-only variants
    if not picked:
      raise ValueError(f"no registered base task has metadata['cluster'] in {list(clusters)}")
    names += [n for n in picked if n not in names]
  if not names:
    raise ValueError("nothing to evaluate: name tasks or mixtures (--tasks / config.tasks)"
                     " or held-out clusters (config.clusters)")
  import seqio
  out = []
  for name in names:
    try:
      info = tasks_lib.get_info(name)
    except KeyError:
      info = None  # a plain seqio task: evaluated as it is
    if info is None or info.variant:
      # A plain task, or a variant named explicitly: exactly that task.
      entry = (name if info is None else info.base_name, "" if info is None else info.variant, name)
      if entry not in out:
        out.append(entry)
      continue
    for variant in variants:
      full = tasks_lib.variant_name(info.base_name, variant)
      if full not in seqio.TaskRegistry.names():
        raise ValueError(
            f"variant {variant!r} of task {info.base_name!r} ({full!r}) is not registered;"
            f" register it with t5tune.data.register_variants({info.base_name!r},"
            f" variants=[..., {variant!r}], ...)")
      if (info.base_name, variant, full) not in out:
        out.append((info.base_name, variant, full))
  return out


def check_evaluable(task: str, split: str) -> None:
  """A UsageError unless seqio can evaluate `task` on `split` (it has the split and metrics)."""
  import seqio
  t = seqio.get_mixture_or_task(task)
  if split not in t.splits:  # seqio would fail later with an AttributeError
    raise errors.UsageError(
        f"task {task!r} has no {split!r} split (it has {list(t.splits)})", where="split",
        fix="give the task that split, or evaluate one it has (the config's `split`"
        " or `data.eval_split` key)")
  if not t.metric_fns and not t.metric_objs:
    raise errors.UsageError(
        f"task {task!r} has no metric functions to evaluate", where="metric_fns=",
        fix="register it with e.g. metric_fns=[t5tune.infer.metrics.accuracy]"
        " (classification) or [t5tune.infer.metrics.rouge] (generation)")


def check_input_lengths(task: str, split: str, limit: int) -> None:
  """A UsageError if an input of t5tune task `task` on `split` is over `limit` tokens (EOS in).

  Checked on the rendered examples before anything is read into seqio or
  written: one runaway example would otherwise size every batch of the task.
  """
  import seqio
  from t5tune.data import tasks as tasks_lib
  if task not in tasks_lib.task_names(lambda info: info.kind == tasks_lib.INSTRUCTION):
    return  # a plain seqio task: its preprocessors decide
  check_evaluable(task, split)
  vocab = seqio.get_mixture_or_task(task).output_features["inputs"].vocabulary
  examples = tasks_lib.get_info(task).source.prepared(split).examples
  for i, ex in enumerate(examples):
    n = len(vocab.encode(ex["inputs"])) + 1
    if n > limit:
      raise errors.UsageError(
          f"task {task!r} ({split}) example {i} has {n} input tokens, over"
          f" max_inputs_length={limit}", where=f"{task}:{split}#{i}",
          fix="pass --truncate (or set inputs_length) to cut inputs, or raise"
          " --config.evaluation.max_inputs_length")
