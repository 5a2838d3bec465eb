"""Super-NaturalInstructions' official scores: ROUGE-L and exact match per test task and overall, as NI's evaluation computes them.

    python -m t5tune.infer.ni_eval --natural_instructions=ROOT \\
        --predictions=runs/x/eval/STEP/predictions --step=STEP [--variant=pos2] [--output=ni_scores.json]

NI (Wang et al., 2022; its `eval/automatic/evaluation.py`) scores English
predictions with rouge-score's `RougeScorer(["rougeL"], use_stemmer=True)`
(its default tokenizer: lower case, every non-alphanumeric a space), takes
an instance's best value over all its references, and averages over the
instances, times 100; exact match compares after lower-casing, removing
punctuation and collapsing whitespace, again the best over the references.
"Overall" pools every instance of the test tasks (the official test tasks
have 100 each, so it is also the mean of the task values). The paper's
English test set (119 tasks, `ni_test_pos2`: definition + 2 positive
examples): Tk-Instruct 11B 62.0, T0 11B 32.3, the copy-demo baseline 28.5
ROUGE-L.

Predictions are `t5tune evaluate`'s files (`predictions/ni_<task>[_<variant>].step_N.jsonl`,
in example order), references the task files' (`natural_instructions.official_references`).
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import string
import sys
from typing import Mapping, Sequence

from t5tune import atomic
from t5tune import errors
from t5tune.data.collections import natural_instructions as ni

# Reported on NI's English test set (ROUGE-L, definition + 2 positive examples).
REPORTED = {"Tk-Instruct 11B": 62.0, "T0 11B": 32.3, "copying a demo output": 28.5}


@functools.lru_cache(maxsize=1)
def _scorer():
  from rouge_score import rouge_scorer  # pylint: disable=g-import-not-at-top
  return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)


def normalize(text: str) -> str:
  """NI's answer normalisation: lower case, punctuation removed, whitespace collapsed."""
  text = "".join(ch for ch in text.lower() if ch not in set(string.punctuation))
  return " ".join(text.split())


def rouge_l(prediction: str, references: Sequence[str]) -> float:
  """The best ROUGE-L F-measure (0-1) of `prediction` over `references`."""
  return max(_scorer().score(prediction=prediction, target=r)["rougeL"].fmeasure for r in references)


def exact_match(prediction: str, references: Sequence[str]) -> float:
  """1.0 when `prediction` equals a reference after NI's normalisation, else 0.0."""
  return float(max(normalize(prediction) == normalize(r) for r in references))


def scores(predictions: Mapping[str, Sequence[str]],
           references: Mapping[str, Sequence[Sequence[str]]]) -> dict:
  """{"overall": {rougeL, exact_match, instances}, "tasks": {task: {...}}}, in percent."""
  tasks, pooled = {}, {"rougeL": 0.0, "exact_match": 0.0}
  count = 0
  for task, preds in predictions.items():
    refs = references[task]
    if len(preds) != len(refs):
      raise errors.InputError(f"{len(preds)} predictions for {len(refs)} test instances",
                              where=task, fix="evaluate the task's whole test split")
    r = [rouge_l(p, rs) for p, rs in zip(preds, refs)]
    e = [exact_match(p, rs) for p, rs in zip(preds, refs)]
    tasks[task] = {"rougeL": 100.0 * sum(r) / len(r), "exact_match": 100.0 * sum(e) / len(e),
                   "instances": len(r)} if r else {"rougeL": 0.0, "exact_match": 0.0, "instances": 0}
    pooled["rougeL"] += sum(r)
    pooled["exact_match"] += sum(e)
    count += len(r)
  overall = {k: 100.0 * v / count if count else 0.0 for k, v in pooled.items()}
  return {"overall": {**overall, "instances": count}, "tasks": tasks}


def _predictions(path: str) -> list[str]:
  if not os.path.isfile(path):
    raise errors.MissingInputError("no predictions file", where=path,
                                   fix="run `t5tune evaluate` on ni_test (or ni_test_pos2) first")
  with open(path, encoding="utf-8") as f:
    rows = [json.loads(line) for line in f if line.strip()]
  return [row["prediction"] for row in sorted(rows, key=lambda row: row["index"])]


def from_predictions(root: str, predictions_dir: str, step: int, variant: str = "",
                     split: str = "default") -> dict:
  """`scores` of NI's test tasks from `t5tune evaluate`'s prediction files under `predictions_dir`."""
  task_dir = os.path.join(os.path.expanduser(root), "tasks")
  predictions, references = {}, {}
  for name in ni.split_names(root, split)["test"]:
    task = ni.read_task(os.path.join(task_dir, f"{name}.json"))
    if not task.instances:
      continue
    registered = f"{ni.PREFIX}_{name}" + (f"_{variant}" if variant else "")
    predictions[registered] = _predictions(
        os.path.join(predictions_dir, f"{registered}.step_{step}.jsonl"))
    references[registered] = ni.official_references(task)
  return scores(predictions, references)


def main(argv: Sequence[str] | None = None) -> int:
  """`python -m t5tune.infer.ni_eval`: the exit status (an error is one line on stderr)."""
  parser = argparse.ArgumentParser(prog="python -m t5tune.infer.ni_eval",
                                   description=__doc__.splitlines()[0])
  parser.add_argument("--natural_instructions", required=True, help="the checkout (splits/, tasks/)")
  parser.add_argument("--predictions", required=True, help="t5tune evaluate's predictions/ directory")
  parser.add_argument("--step", type=int, required=True)
  parser.add_argument("--variant", default="", help="'' (definition only) or pos2")
  parser.add_argument("--split", default="default")
  parser.add_argument("--output", default="", help="write the scores as JSON here")
  args = parser.parse_args(argv)
  try:
    result = from_predictions(args.natural_instructions, args.predictions, args.step, args.variant,
                              args.split)
    if args.output:
      atomic.write_json(args.output, result, indent=2, sort_keys=True)
  except errors.T5tuneError as e:
    print(f"ni_eval: error: {e}", file=sys.stderr)
    return e.exit_code
  overall = result["overall"]
  print(f"NI test ({overall['instances']} instances, {len(result['tasks'])} tasks):"
        f" ROUGE-L {overall['rougeL']:.2f}, exact match {overall['exact_match']:.2f};"
        f" reported: {', '.join(f'{k} {v}' for k, v in REPORTED.items())}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
