"""Mixtures of registered tasks and their rates (FLAN's examples-proportional mixing, temperature).

    data.register_mixture("my_mix", ["my_nli", "my_qa"], rate=data.examples_proportional(3000))
    data.register_mixture("held_in", lambda info: info.metadata["cluster"] != "nli",
                          rate=data.temperature(2.0, cap=3000))

`tasks` is a list of names or a predicate over `t5tune.data.tasks.TaskInfo`;
`rate` a number, a {task: weight} dict, "examples", `examples_proportional(cap)`
or `temperature(t, cap)`. The result is an ordinary `seqio.Mixture`.
"""
from __future__ import annotations

import math

from typing import Callable, Mapping, Sequence

import seqio

from t5tune import errors
from t5tune.data import tasks as tasks_lib


def _num_train_examples(task: seqio.Task) -> int:
  split = "train" if "train" in task.splits else task.splits[0]
  if task.supports_caching and seqio.utils.get_global_cache_dirs() and task.cache_dir:
    try:  # the count the cache's stats hold, without reading the source
      return int(task.get_cached_stats(split)["examples"])
    except ValueError:  # that split was not cached: count the source's
      pass
  return task.num_input_examples(split)


def examples_proportional(cap: int | None = None) -> Callable[[seqio.Task], float]:
  """Rate = number of train examples, capped at `cap` (FLAN's examples-proportional mixing)."""
  def rate(task):
    n = _num_train_examples(task)
    return float(min(n, cap) if cap else n)
  return rate


def temperature(t: float, cap: int | None = None) -> Callable[[seqio.Task], float]:
  """Rate = min(n, cap) ** (1 / t): t=1 is proportional, large t tends to uniform."""
  def rate(task):
    n = _num_train_examples(task)
    return float(min(n, cap) if cap else n) ** (1.0 / t)
  return rate


def register_mixture(name: str, tasks: Sequence[str] | Callable[[tasks_lib.TaskInfo], bool],
                     rate: float | str | Mapping[str, float] | Callable[[seqio.Task], float] = 1.0,
                     *, overwrite: bool = False) -> seqio.Mixture:
  """Registers a seqio Mixture of tasks (names or a TaskInfo predicate).

  rate: a constant weight; "examples" (proportional, no cap); a {task: weight}
  dict; or a function of the seqio.Task such as `examples_proportional(cap)`
  or `temperature(t, cap)`.
  """
  if callable(tasks) and not isinstance(tasks, (list, tuple)):
    names = tasks_lib.task_names(tasks)
    if not names:
      raise errors.UsageError("no registered task matches the predicate",
                              where=f"mixture {name!r}", fix="check the predicate and metadata")
  else:
    names = list(tasks)
  if not names:
    raise errors.UsageError("no tasks", where=f"mixture {name!r}", fix="name at least one task")
  known = set(seqio.TaskRegistry.names()) | set(seqio.MixtureRegistry.names())
  unknown = [n for n in names if n not in known]
  if unknown:
    raise errors.UsageError(
        f"{unknown} are not registered tasks or mixtures.{errors.did_you_mean(unknown[0], known)}",
        where=f"mixture {name!r}", fix="register them first (import the module that does)")
  if rate == "examples":
    rate = examples_proportional()
  if isinstance(rate, Mapping):
    missing = [n for n in names if n not in rate]
    if missing:
      raise errors.UsageError(f"explicit rates given but none for {missing}",
                              where=f"mixture {name!r}", fix="give a rate for every task")
    entries = [(n, float(rate[n])) for n in names]
  else:
    entries = [(n, rate) for n in names]
  for task, weight in entries:
    if not callable(weight) and not (isinstance(weight, (int, float)) and 0 <= weight < math.inf):
      raise errors.UsageError(f"rate {weight!r} of task {task!r} is not a weight >= 0",
                              where=f"mixture {name!r}",
                              fix="give a finite rate >= 0, 'examples' or a rate function")
  if all(not callable(w) and w == 0 for _, w in entries):
    raise errors.UsageError("every rate is 0: the mixture would sample nothing",
                            where=f"mixture {name!r}", fix="give some task a rate > 0")
  tasks_lib.claim_name(seqio.MixtureRegistry, "mixture", name, overwrite=overwrite,
                       where=f"register_mixture({name!r}, ...)")
  return seqio.MixtureRegistry.add(name, entries)


def get_provider(name: str) -> seqio.Task | seqio.Mixture:
  """`seqio.get_mixture_or_task`, with an unknown name a UsageError naming the closest one."""
  known = set(seqio.TaskRegistry.names()) | set(seqio.MixtureRegistry.names())
  if name not in known:
    raise errors.UsageError(
        f"{name!r} is not a registered task or mixture.{errors.did_you_mean(name, known)}",
        where=name, fix="check the name (`t5tune data list`), or import the module that"
        " registers it (--module=my.tasks)")
  return seqio.get_mixture_or_task(name)


def leaf_task_names(names: Sequence[str]) -> list[str]:
  """The tasks of `names` (a mixture's by name, as seqio flattens them), each once, in order.

  A name that is neither a registered task nor a mixture is a UsageError
  with the closest registered name.
  """
  out = []
  for name in names:
    provider = get_provider(name)
    if isinstance(provider, seqio.Mixture):
      out.extend(t.name for t in provider.tasks)
    else:
      out.append(name)
  return list(dict.fromkeys(out))
