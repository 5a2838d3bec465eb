"""Super-NaturalInstructions (Wang et al., 2022) from a local copy of its task files, one seqio task per NI task.

    from t5tune.data.collections import natural_instructions as ni
    ni.register("natural-instructions/tasks", metric_fns=t5tune.infer.metrics)
    # -> ni_task001_quoref_question_generation (definition only),
    #    ni_task001_..._pos2 (definition + 2 positive examples), mixture ni_train

Each task file (`tasks/taskNNN_name.json` in the NI repository) holds
`Definition` (a list of strings), `Positive Examples` ({input, output,
explanation}), `Instances` ({id, input, output: [references]}), `Categories`
and `Source`. The task's own definition is its instruction (the template is
made from it, braces escaped); its positive examples are the few-shot
exemplars of the `_pos{k}` variant, as Tk-Instruct used them; its first
category is its cluster (metadata["cluster"], e.g. "question_generation").
Instances: the last VALIDATION_FRACTION (at most protocol.VALIDATION_SIZE)
are validation, the rest train, capped at protocol.TRAIN_CAP; the first
reference is the target.

EXCLUDED_SOURCES: tasks derived from a benchmark the field evaluates on are
left out (Flan 2022 removed NI tasks built from MMLU and BIG-Bench so that
its MMLU and BBH scores stay held out); `excluded(path)` says why a file is left out.
"""
from __future__ import annotations

import dataclasses
import glob
import json
import os
import re
from typing import Any, Mapping, Sequence

from t5tune import errors
from t5tune.data import templates as templates_lib
from t5tune.data.collections import protocol

PREFIX = "ni"
VALIDATION_FRACTION = 0.1
POSITIVE_SHOTS = 2
# A source containing one of these words marks a task derived from an evaluation benchmark.
EXCLUDED_SOURCES = {
    "mmlu": "derived from MMLU, which Flan-T5 is evaluated on (Flan 2022 excludes it)",
    "bigbench": "derived from BIG-Bench, whose hard subset (BBH) Flan-T5 is evaluated on",
    "big-bench": "derived from BIG-Bench, whose hard subset (BBH) Flan-T5 is evaluated on",
}


@dataclasses.dataclass(frozen=True)
class NiTask:
  """One task file, read."""
  name: str
  definition: str
  positives: tuple[Mapping[str, str], ...]
  instances: tuple[Mapping[str, Any], ...]
  categories: tuple[str, ...]
  sources: tuple[str, ...]

  @property
  def cluster(self) -> str:
    first = self.categories[0] if self.categories else "uncategorised"
    return re.sub(r"[^a-z0-9]+", "_", first.lower()).strip("_")


# seqio's rule for task names (dataset_providers._VALID_TASK_NAME_REGEX): a file name outside it
# would fail deep inside seqio's registry.
_TASK_NAME = re.compile(r"^[\w.:#]+$")
_FORMAT_FIX = "check the task file (NI's tasks/*.json format)"


def _type(value) -> str:
  return "a string" if isinstance(value, str) else type(value).__name__


def _strings(value, key, path) -> list[str]:
  if isinstance(value, str):
    return [value]
  if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
    raise errors.InputError(f"{key!r} must be a string or a list of strings, got {_type(value)}",
                            where=f"{path}: {key}", fix=_FORMAT_FIX)
  return value


def _objects(raw, key, path, needs) -> list[Mapping[str, Any]]:
  """raw[key]: a list of JSON objects, each with a string `needs[0]` (InputError naming the key path)."""
  value = raw.get(key, [])
  if not isinstance(value, list):
    raise errors.InputError(f"{key!r} must be a list of objects, got {_type(value)}",
                            where=f"{path}: {key}", fix=_FORMAT_FIX)
  for i, item in enumerate(value):
    if not isinstance(item, dict):
      raise errors.InputError(f"{key}[{i}] must be an object with {list(needs)}, got {_type(item)}",
                              where=f"{path}: {key}[{i}]", fix=_FORMAT_FIX)
    text = item.get(needs[0])
    if text is not None and not isinstance(text, str):
      raise errors.InputError(f"{key}[{i}].{needs[0]} must be a string, got {_type(text)}",
                              where=f"{path}: {key}[{i}].{needs[0]}", fix=_FORMAT_FIX)
  return value


def _load(path: str) -> Any:
  """The file's JSON; an InputError naming the file for anything that is not a readable JSON file."""
  if os.path.isdir(path):
    raise errors.InputError("a directory, not a task file", where=path,
                            fix="move it out of the tasks directory (every task*.json is read)")
  try:
    with open(path, encoding="utf-8") as f:
      return json.load(f)
  except UnicodeDecodeError as e:
    raise errors.InputError(f"the file is not UTF-8 (byte {e.start})", where=path,
                            fix="save the task file as UTF-8") from None
  except json.JSONDecodeError as e:
    raise errors.InputError(f"not valid JSON ({e.msg} at line {e.lineno})", where=path,
                            fix="check the task file") from None
  except RecursionError:
    raise errors.InputError("the JSON is nested too deeply to read", where=path,
                            fix="check the task file (NI's nest a few levels deep)") from None
  except OSError as e:
    raise errors.InputError(f"cannot read the file ({e.strerror})", where=path,
                            fix="check the file's permissions") from None


def read_task(path: str) -> NiTask:
  """A task file read and checked (InputError naming the file and key path when it is not NI's format)."""
  name = os.path.splitext(os.path.basename(path))[0]
  if not _TASK_NAME.match(f"{PREFIX}_{name}"):
    raise errors.InputError(
        f"the file name gives the task name {PREFIX}_{name!s}, which seqio refuses"
        " (letters, digits, '_', '.', ':' and '#' only)", where=path,
        fix="rename the file, e.g. with '_' for '-' and spaces")
  raw = _load(path)
  if not isinstance(raw, dict):
    raise errors.InputError(f"a task file holds one JSON object, got {_type(raw)}", where=path,
                            fix="check the task file")
  missing = [k for k in ("Definition", "Instances") if k not in raw]
  if missing:
    raise errors.InputError(f"missing keys {missing}", where=path,
                            fix="a Super-NaturalInstructions task file has Definition and Instances")
  instances = []
  for i, inst in enumerate(_objects(raw, "Instances", path, ("input", "output"))):
    absent = [k for k in ("input", "output") if inst.get(k) is None]
    if absent:
      raise errors.InputError(f"Instances[{i}] has no {' or '.join(map(repr, absent))}",
                              where=f"{path}: Instances[{i}]", fix=_FORMAT_FIX)
    outputs = _strings(inst["output"], f"Instances[{i}].output", path)
    if outputs:
      instances.append({"input": inst["input"], "output": outputs[0], "id": str(inst.get("id", i))})
  positives = []
  for i, ex in enumerate(_objects(raw, "Positive Examples", path, ("input", "output"))):
    if ex.get("input") and ex.get("output"):
      outputs = _strings(ex["output"], f"Positive Examples[{i}].output", path)
      if outputs:
        positives.append({"input": ex["input"], "output": outputs[0]})
  return NiTask(
      name=name,
      definition=" ".join(_strings(raw["Definition"], "Definition", path)).strip(),
      positives=tuple(positives), instances=tuple(instances),
      categories=tuple(_strings(raw.get("Categories", []), "Categories", path)),
      sources=tuple(_strings(raw.get("Source", []), "Source", path)))


def excluded(task: NiTask) -> str | None:
  """Why a task is left out (EXCLUDED_SOURCES), or None."""
  for source in task.sources:
    for word, reason in EXCLUDED_SOURCES.items():
      if word in source.lower():
        return f"{reason} (Source: {source})"
  return None


def _escape(text: str) -> str:
  return text.replace("{", "{{").replace("}", "}}")


def templates(task: NiTask, shots: int = 0) -> tuple[templates_lib.Template, ...]:
  """The task's template: its definition, `shots` positive examples, then the instance."""
  parts = [f"Definition: {_escape(task.definition)}"]
  for i, ex in enumerate(task.positives[:shots]):
    parts.append(f"Example {i + 1}\nInput: {_escape(ex['input'])}\nOutput: {_escape(ex['output'])}")
  parts.append("Now complete the following example.\nInput: {input}\nOutput:" if shots
               else "Input: {input}\nOutput:")
  return (templates_lib.Template("definition" + (f"_pos{shots}" if shots else ""),
                                 "\n\n".join(parts), "{output}"),)


def splits(task: NiTask) -> dict[str, list[dict[str, Any]]]:
  """{train, validation}: the last VALIDATION_FRACTION of the instances (<= 200) is validation."""
  n = len(task.instances)
  n_val = min(protocol.VALIDATION_SIZE, max(1, int(n * VALIDATION_FRACTION))) if n > 1 else 0
  out = {"train": list(task.instances[:n - n_val][:protocol.TRAIN_CAP])}
  if n_val:
    out["validation"] = list(task.instances[n - n_val:])
  return out


def _named(paths: Sequence[str], names: Sequence[str], task_dir: str) -> list[str]:
  """The task files `names` names (file names, or registered names `ni_taskNNN_name`), in order
  of `paths`; a name no file has is a UsageError with the closest file name."""
  if isinstance(names, str):
    names = [names]
  by_name = {os.path.splitext(os.path.basename(p))[0]: p for p in paths}
  wanted = set()
  for name in names:
    key = str(name)
    if key not in by_name and key.startswith(f"{PREFIX}_"):
      key = key[len(PREFIX) + 1:]
    if key not in by_name:
      raise errors.UsageError(
          f"no task file {name!r} in {task_dir}.{errors.did_you_mean(key, by_name)}",
          where="register(names=...)",
          fix="give file names without .json (taskNNN_name) or the registered ni_taskNNN_name")
    wanted.add(key)
  return [p for p in paths if os.path.splitext(os.path.basename(p))[0] in wanted]


def register(task_dir: str, *, names: Sequence[str] | None = None, vocabulary="byte",
             metric_fns: Any = None, shots: int = POSITIVE_SHOTS, mixture: bool = True,
             **task_options) -> tuple[list[str], dict[str, str]]:
  """Registers every task file under `task_dir` (or those in `names`); returns (task names, {excluded: why})."""
  from t5tune.data import mixtures as mixtures_lib  # pylint: disable=g-import-not-at-top
  from t5tune.data import tasks as tasks_lib  # pylint: disable=g-import-not-at-top
  paths = sorted(glob.glob(os.path.join(os.path.expanduser(task_dir), "task*.json")))
  if not paths:
    raise errors.MissingInputError(f"no task*.json files in {task_dir}", where=task_dir,
                                   fix="point at the tasks/ directory of a natural-instructions copy")
  if names is not None:
    paths = _named(paths, names, task_dir)
  fns = []
  if metric_fns is not None:
    rouge = (metric_fns.get("rouge") if isinstance(metric_fns, Mapping)
             else getattr(metric_fns, "rouge", None))
    if not callable(rouge):
      raise errors.UsageError(f"metric_fns={metric_fns!r} has no 'rouge' function",
                              where="register(metric_fns=...)",
                              fix="pass t5tune.infer.metrics (or a module or dict with rouge)")
    fns = [rouge]
  registered, dropped, train_tasks = [], {}, []
  read = [read_task(path) for path in paths]  # every file checked before any task is registered
  for task in read:
    why = excluded(task)
    if why:
      dropped[task.name] = why
      continue
    if not task.instances:
      dropped[task.name] = "no instances with an output"
      continue
    base = f"{PREFIX}_{task.name}"
    metadata = {"collection": "natural_instructions", "cluster": task.cluster,
                "categories": list(task.categories), "sources": list(task.sources)}
    variants = [(base, "", 0)]
    if shots and task.positives:
      variants.append((f"{base}_pos{shots}", f"pos{shots}", shots))
    for name, variant, k in variants:
      tasks_lib.register_task(
          name, source=splits(task), templates=templates(task, k), fields=["input", "output"],
          metric_fns=fns, metadata=metadata, vocabulary=vocabulary, overwrite=True,
          _base_name=base, _variant=variant, **task_options)
      registered.append(name)
    train_tasks.append(base)
  if mixture and train_tasks:
    mixtures_lib.register_mixture(f"{PREFIX}_train", train_tasks,
                                  rate=mixtures_lib.examples_proportional(protocol.MIXING_CAP),
                                  overwrite=True)
  return registered, dropped
