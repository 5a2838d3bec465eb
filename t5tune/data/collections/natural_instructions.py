"""Super-NaturalInstructions (Wang et al., 2022) from a local copy of its task files, one seqio task per NI task.

    from t5tune.data.collections import natural_instructions as ni
    ni.register("natural-instructions/tasks", metric_fns=t5tune.infer.metrics)
    # -> ni_task001_quoref_question_generation (definition only),
    #    ni_task001_..._pos2 (definition + 2 positive examples), mixture ni_train
    ni.register_splits("natural-instructions", metric_fns=t5tune.infer.metrics)
    # -> NI's official split: ni_train (capped at 5,000 per task), ni_test, ni_test_pos2
    #    (scored as NI does by `t5tune.infer.ni_eval`)

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
      instances.append({"input": inst["input"], "output": outputs[0], "id": str(inst.get("id", i)),
                        "references": tuple(outputs)})
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


def _record(instance: Mapping[str, Any]) -> dict[str, Any]:
  """An instance as the task's source record: its first reference is the target."""
  return {k: instance[k] for k in ("input", "output", "id")}


def splits(task: NiTask, cap: int = protocol.TRAIN_CAP) -> dict[str, list[dict[str, Any]]]:
  """{train, validation}: the last VALIDATION_FRACTION of the instances (<= 200) is validation,
  train the rest up to `cap`."""
  n = len(task.instances)
  n_val = min(protocol.VALIDATION_SIZE, max(1, int(n * VALIDATION_FRACTION))) if n > 1 else 0
  out = {"train": [_record(i) for i in task.instances[:n - n_val][:cap]]}
  if n_val:
    out["validation"] = [_record(i) for i in task.instances[n - n_val:]]
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
  paths = sorted(glob.glob(os.path.join(os.path.expanduser(task_dir), "task*.json")))
  if not paths:
    raise errors.MissingInputError(f"no task*.json files in {task_dir}", where=task_dir,
                                   fix="point at the tasks/ directory of a natural-instructions copy")
  if names is not None:
    paths = _named(paths, names, task_dir)
  fns = _rouge(metric_fns)
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
    registered += _register_task(task, splits(task), fns, vocabulary, shots, task_options)
    train_tasks.append(f"{PREFIX}_{task.name}")
  if mixture and train_tasks:
    mixtures_lib.register_mixture(f"{PREFIX}_train", train_tasks,
                                  rate=mixtures_lib.examples_proportional(protocol.MIXING_CAP),
                                  overwrite=True)
  return registered, dropped


def _rouge(metric_fns: Any) -> list:
  """[metric_fns' rouge] ([] without metric_fns; a UsageError when it has none)."""
  if metric_fns is None:
    return []
  rouge = (metric_fns.get("rouge") if isinstance(metric_fns, Mapping)
           else getattr(metric_fns, "rouge", None))
  if not callable(rouge):
    raise errors.UsageError(f"metric_fns={metric_fns!r} has no 'rouge' function",
                            where="register(metric_fns=...)",
                            fix="pass t5tune.infer.metrics (or a module or dict with rouge)")
  return [rouge]


def _register_task(task: NiTask, source, fns, vocabulary, shots: int, task_options) -> list[str]:
  """Registers `ni_<task>` (definition only) and, with `shots` and positive examples, its
  `_pos{shots}` variant over `source` ({split: records}); returns their names."""
  from t5tune.data import tasks as tasks_lib  # pylint: disable=g-import-not-at-top
  base = f"{PREFIX}_{task.name}"
  metadata = {"collection": "natural_instructions", "cluster": task.cluster,
              "categories": list(task.categories), "sources": list(task.sources)}
  variants = [(base, "", 0)]
  if shots and task.positives:
    variants.append((f"{base}_pos{shots}", f"pos{shots}", shots))
  for name, variant, k in variants:
    tasks_lib.register_task(
        name, source=source, templates=templates(task, k), fields=["input", "output"],
        metric_fns=fns, metadata=metadata, vocabulary=vocabulary, overwrite=True,
        _base_name=base, _variant=variant, **task_options)
  return [name for name, _, _ in variants]


# -- the official splits (splits/<name>/train_tasks.txt, test_tasks.txt) -----------------------

# Flan 2022 caps each Super-NaturalInstructions task at this many training instances.
OFFICIAL_TRAIN_CAP = 5_000
# NI's official evaluation reads the first 100 instances of each test task (the 119 English
# test tasks give 11,900 instances), scored by `t5tune.infer.ni_eval`.
TEST_INSTANCES = 100


def split_names(root: str, split: str = "default") -> dict[str, list[str]]:
  """{"train": task names, "test": task names} from ROOT/splits/SPLIT/{train,test}_tasks.txt."""
  out = {}
  for part in ("train", "test"):
    path = os.path.join(os.path.expanduser(root), "splits", split, f"{part}_tasks.txt")
    if not os.path.isfile(path):
      raise errors.MissingInputError(f"no {part} task list {path}", where=path,
                                     fix="point at a natural-instructions checkout (splits/, tasks/)")
    with open(path, encoding="utf-8") as f:
      out[part] = [line.strip() for line in f if line.strip() and not line.startswith("#")]
  return out


def official_references(task: NiTask) -> list[tuple[str, ...]]:
  """Every reference of each test instance the official evaluation scores (the first TEST_INSTANCES)."""
  return [i["references"] for i in task.instances[:TEST_INSTANCES]]


def register_splits(root: str, *, split: str = "default", vocabulary="byte", metric_fns: Any = None,
                    shots: int = POSITIVE_SHOTS, train_cap: int = OFFICIAL_TRAIN_CAP,
                    **task_options) -> tuple[list[str], dict[str, str]]:
  """Registers NI's official split from a natural-instructions checkout ROOT.

  Train tasks (`splits/SPLIT/train_tasks.txt`): `ni_<task>` with train (at
  most `train_cap` instances, Flan 2022's cap) and validation splits, benchmark-derived
  tasks excluded (EXCLUDED_SOURCES, Flan 2022's exclusions), in mixture
  `ni_train`. Test tasks (`test_tasks.txt`): `ni_<task>` with one split
  `test`, its first TEST_INSTANCES instances, in mixtures `ni_test`
  (definition only) and `ni_test_pos{shots}` (definition + positive examples,
  Tk-Instruct's setting). Every listed file is read and checked first; a
  missing one is a MissingInputError naming it. Returns (task names, {excluded: why}).
  """
  from t5tune.data import mixtures as mixtures_lib  # pylint: disable=g-import-not-at-top
  names = split_names(root, split)
  task_dir = os.path.join(os.path.expanduser(root), "tasks")
  paths = {n: os.path.join(task_dir, f"{n}.json") for n in names["train"] + names["test"]}
  absent = [n for n, p in paths.items() if not os.path.isfile(p)]
  if absent:
    raise errors.MissingInputError(
        f"{len(absent)} task(s) of split {split!r} have no file in {task_dir}: {', '.join(absent[:5])}"
        + (" ..." if len(absent) > 5 else ""), where=task_dir,
        fix="use the tasks/ and splits/ of one natural-instructions checkout")
  fns = _rouge(metric_fns)
  read = {n: read_task(p) for n, p in paths.items()}  # every file checked before any registration
  registered, dropped, train, test = [], {}, [], []
  for name in names["train"]:
    task = read[name]
    why = excluded(task) or (None if task.instances else "no instances with an output")
    if why:
      dropped[name] = why
      continue
    registered += _register_task(task, splits(task, cap=train_cap), fns, vocabulary, shots,
                                 task_options)
    train.append(f"{PREFIX}_{name}")
  for name in names["test"]:
    task = read[name]
    if not task.instances:
      dropped[name] = "no instances with an output"
      continue
    source = {"test": [_record(i) for i in task.instances[:TEST_INSTANCES]]}
    made = _register_task(task, source, fns, vocabulary, shots, task_options)
    registered += made
    test.append(made)
  rate = mixtures_lib.examples_proportional(train_cap)
  if train:
    mixtures_lib.register_mixture(f"{PREFIX}_train", train, rate=rate, overwrite=True)
  if test:
    mixtures_lib.register_mixture(f"{PREFIX}_test", [m[0] for m in test], overwrite=True)
    shot_tasks = [m[1] for m in test if len(m) > 1]
    if shot_tasks:
      mixtures_lib.register_mixture(f"{PREFIX}_test_pos{shots}", shot_tasks, overwrite=True)
  return registered, dropped
