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


def _strings(value, key, path) -> list[str]:
  if isinstance(value, str):
    return [value]
  if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
    raise errors.InputError(f"{key!r} must be a string or a list of strings", where=path,
                            fix="check the task file (NI's tasks/*.json format)")
  return value


def read_task(path: str) -> NiTask:
  """A task file read and checked (InputError naming the file and key when it is not NI's format)."""
  try:
    with open(path, encoding="utf-8") as f:
      raw = json.load(f)
  except json.JSONDecodeError as e:
    raise errors.InputError(f"not valid JSON ({e.msg} at line {e.lineno})", where=path,
                            fix="check the task file") from None
  if not isinstance(raw, dict):
    raise errors.InputError("a task file holds one JSON object", where=path, fix="check the task file")
  missing = [k for k in ("Definition", "Instances") if k not in raw]
  if missing:
    raise errors.InputError(f"missing keys {missing}", where=path,
                            fix="a Super-NaturalInstructions task file has Definition and Instances")
  instances = []
  for i, inst in enumerate(raw["Instances"]):
    if not isinstance(inst, dict) or "input" not in inst or "output" not in inst:
      raise errors.InputError(f"instance {i} needs 'input' and 'output'", where=path,
                              fix="check the task file")
    outputs = _strings(inst["output"], f"Instances[{i}].output", path)
    if outputs:
      instances.append({"input": inst["input"], "output": outputs[0], "id": str(inst.get("id", i))})
  positives = tuple({"input": p["input"], "output": _strings(p["output"], "output", path)[0]}
                    for p in raw.get("Positive Examples", []) if p.get("input") and p.get("output"))
  return NiTask(
      name=os.path.splitext(os.path.basename(path))[0],
      definition=" ".join(_strings(raw["Definition"], "Definition", path)).strip(),
      positives=positives, instances=tuple(instances),
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
    paths = [p for p in paths if os.path.splitext(os.path.basename(p))[0] in set(names)]
  fns = []
  if metric_fns is not None:
    fns = [metric_fns["rouge"] if isinstance(metric_fns, Mapping) else getattr(metric_fns, "rouge")]
  registered, dropped, train_tasks = [], {}, []
  for path in paths:
    task = read_task(path)
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
