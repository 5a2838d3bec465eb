"""BIG-Bench-Hard and MMLU from local copies as lm-evaluation-harness tasks: the harness's own, read offline.

    python -m t5tune.infer.local_tasks --bbh=BIG-Bench-Hard --mmlu=mmlu --output=local_tasks
    t5tune harness --model t5tune --model_args checkpoint=DIR --include_path local_tasks \\
        --tasks bbh_fewshot --output_path out/bbh        # or bbh_cot_fewshot, mmlu --num_fewshot 5

The harness's `bbh_fewshot`, `bbh_cot_fewshot` and `mmlu` read their data from
the Hugging Face hub. This writes task YAMLs equal to the installed harness's
own (same names, prompt, exemplars, metrics, filters, groups; its templates
read from the installed `lm_eval` and written out whole) except for the data
source, which is a local file:

  --bbh   a BIG-Bench-Hard checkout: `bbh/<task>.json` ({"examples": [{"input",
          "target"}]}) read in place (`dataset_path: json`), and
          `cot-prompts/<task>.txt` (its description and three chain-of-thought
          exemplars), from which the exemplars of both variants come as the
          harness made them: the direct target is the text after "the answer
          is" (the harness's own answer filter).
  --mmlu  MMLU in its original layout: `data/test/<subject>_test.csv` and
          `data/dev/<subject>_dev.csv` (no header: question,A,B,C,D,answer),
          turned into JSON lines of the hub copy's columns (question, subject,
          choices, answer as 0-3) under OUTPUT/mmlu/data, so the harness's
          prompt reads them unchanged. Subject descriptions and categories are
          the harness's (a subject it does not know is refused).

With `--include_path OUTPUT` the local definitions replace the hub ones of the
same name (the harness lets include paths override); give every MMLU subject,
or run the subjects by name (`mmlu_<subject>`): the harness's `mmlu` group
counts all 57.
"""
from __future__ import annotations

import argparse
import csv
import glob
import json
import os
import re
import sys
from typing import Any, Sequence

import yaml

from t5tune import atomic
from t5tune import errors

# The harness's fields that name where data comes from; everything else is kept as the harness has it.
DATA_KEYS = ("dataset_path", "dataset_name", "dataset_kwargs")
# (directory of the harness's task files, the variant's task prefix = its group)
BBH_VARIANTS = (("fewshot", "bbh_fewshot"), ("cot_fewshot", "bbh_cot_fewshot"))
COT_PROMPT = "\nA: Let's think step by step.\n"
MMLU_CATEGORIES = ("stem", "other", "social_sciences", "humanities")


def harness_dir() -> str:
  """The installed harness's task definitions (`lm_eval/tasks`)."""
  import lm_eval  # pylint: disable=g-import-not-at-top
  return os.path.join(os.path.dirname(lm_eval.__file__), "tasks")


def harness_config(path: str) -> dict[str, Any]:
  """A harness task file with its `include`s merged in (the included first, the file's keys win)."""
  with open(path, encoding="utf-8") as f:
    config = yaml.safe_load(f)
  includes = config.pop("include", None)
  merged: dict[str, Any] = {}
  for name in ([] if includes is None else includes if isinstance(includes, list) else [includes]):
    merged.update(harness_config(os.path.join(os.path.dirname(path), name)))
  merged.update(config)
  return merged


def _local(config: dict[str, Any], path: str, data_files: dict[str, str], **kwargs) -> dict[str, Any]:
  out = {k: v for k, v in config.items() if k not in DATA_KEYS}
  out.update(dataset_path=path, dataset_name=None,
             dataset_kwargs={"data_files": data_files, **kwargs})
  return out


def _write_yaml(path: str, config: dict[str, Any]) -> None:
  atomic.write_text(path, yaml.safe_dump(config, sort_keys=False, allow_unicode=True, width=10**6))


# -- BIG-Bench-Hard ---------------------------------------------------------------------------


def parse_cot_prompt(path: str) -> tuple[str, list[dict[str, str]]]:
  """(description, [{"input", "target"}]) of a `cot-prompts/<task>.txt`: a header up to a
  `-----` line (if any), the description, then exemplars "Q: ...\\nA: Let's think step by
  step.\\n<reasoning> So the answer is X." separated by blank lines."""
  with open(path, encoding="utf-8") as f:
    text = f.read().rstrip("\n")
  text = text.split("\n-----\n")[-1].removeprefix("-----\n")
  description, *shots = re.split(r"\n\n(?=Q: )", text)
  samples = []
  for i, shot in enumerate(shots):
    question, sep, reasoning = shot.removeprefix("Q: ").partition(COT_PROMPT)
    if not sep:
      raise errors.InputError(f"exemplar {i + 1} has no {COT_PROMPT.strip()!r} line",
                              where=path, fix="give BIG-Bench-Hard's cot-prompts file as released")
    samples.append({"input": question, "target": reasoning})
  if not samples:
    raise errors.InputError("no exemplars (blocks starting 'Q: ')", where=path,
                            fix="give BIG-Bench-Hard's cot-prompts file as released")
  return description, samples


def direct_target(reasoning: str, answer_regex: str, where: str) -> str:
  """The answer of a chain-of-thought exemplar, found by the harness's own answer filter."""
  found = re.search(answer_regex, reasoning)
  if not found:
    raise errors.InputError(f"no answer matching {answer_regex!r} in an exemplar", where=where,
                            fix="give BIG-Bench-Hard's cot-prompts file as released")
  return found.group(0)


def _answer_regex(cot_template: dict[str, Any], where: str) -> str:
  for entry in cot_template.get("filter_list", ()):
    for step in entry.get("filter", ()):
      if step.get("function") == "regex":
        return step["regex_pattern"]
  raise errors.InputError("the installed harness's BBH chain-of-thought template has no regex"
                          " answer filter", where=where,
                          fix="install the lm-eval version setup.py names (pip install -e .)")


def bbh_tasks(bbh_dir: str, output: str) -> list[str]:
  """Writes OUTPUT/bbh_fewshot and OUTPUT/bbh_cot_fewshot (a task per `bbh/<task>.json`, the groups)."""
  files = sorted(glob.glob(os.path.join(bbh_dir, "bbh", "*.json")))
  if not files:
    raise errors.MissingInputError(f"no BIG-Bench-Hard task files in {os.path.join(bbh_dir, 'bbh')}",
                                   where="--bbh", fix="give the BIG-Bench-Hard checkout (bbh/, cot-prompts/)")
  root = harness_dir()
  template_path = os.path.join(root, "bbh", "cot_fewshot", "_cot_fewshot_template_yaml")
  regex = _answer_regex(harness_config(template_path), template_path)
  written = []
  for directory, group in BBH_VARIANTS:
    template = harness_config(os.path.join(root, "bbh", directory, f"_{directory}_template_yaml"))
    cot = directory == "cot_fewshot"
    names = []
    for data in files:
      task = os.path.splitext(os.path.basename(data))[0]
      prompt = os.path.join(bbh_dir, "cot-prompts", f"{task}.txt")
      if not os.path.isfile(prompt):
        raise errors.MissingInputError(f"bbh/{task}.json has no cot-prompts/{task}.txt", where=prompt,
                                       fix="give the BIG-Bench-Hard checkout with its cot-prompts/")
      description, samples = parse_cot_prompt(prompt)
      if not cot:
        samples = [{"input": s["input"], "target": direct_target(s["target"], regex, prompt)}
                   for s in samples]
      config = dict(template, description=description + "\n\n",
                    doc_to_text="Q: {{input}}" + (COT_PROMPT if cot else "\nA:"),
                    task=f"{group}_{task}",
                    fewshot_config={"sampler": "first_n", "samples": samples})
      _write_yaml(os.path.join(output, group, f"{task}.yaml"),
                  _local(config, "json", {"test": os.path.abspath(data)}, field="examples"))
      names.append(f"{group}_{task}")
    group_config = harness_config(os.path.join(root, "bbh", directory, f"_{group}.yaml"))
    group_config["task"] = names
    _write_yaml(os.path.join(output, group, f"_{group}.yaml"), group_config)
    written += names
  return written


# -- MMLU -------------------------------------------------------------------------------------


def _mmlu_rows(path: str, subject: str) -> list[dict[str, Any]]:
  """The rows of an original MMLU CSV as the hub copy has them (question, subject, choices, answer 0-3)."""
  rows = []
  with open(path, encoding="utf-8", newline="") as f:
    for line, row in enumerate(csv.reader(f), start=1):
      if len(row) != 6 or row[5].strip() not in ("A", "B", "C", "D"):
        raise errors.InputError(
            f"row {line} is not question,A,B,C,D,answer with answer one of A-D", where=f"{path}:{line}",
            fix="give MMLU's original CSVs (data/dev, data/test; no header)")
      rows.append({"question": row[0], "subject": subject, "choices": row[1:5],
                   "answer": "ABCD".index(row[5].strip())})
  return rows


def mmlu_tasks(mmlu_dir: str, output: str) -> list[str]:
  """Writes OUTPUT/mmlu: a task per `data/test/<subject>_test.csv` (with its dev exemplars), the groups."""
  data = os.path.join(mmlu_dir, "data") if os.path.isdir(os.path.join(mmlu_dir, "data")) else mmlu_dir
  tests = sorted(glob.glob(os.path.join(data, "test", "*_test.csv")))
  if not tests:
    raise errors.MissingInputError(f"no MMLU test files in {os.path.join(data, 'test')}", where="--mmlu",
                                   fix="give MMLU in its original layout (data/test/<subject>_test.csv,"
                                   " data/dev/<subject>_dev.csv)")
  harness = os.path.join(harness_dir(), "mmlu", "default")
  names = []
  for test in tests:
    subject = os.path.basename(test)[:-len("_test.csv")]
    own = os.path.join(harness, f"mmlu_{subject}.yaml")
    dev = os.path.join(data, "dev", f"{subject}_dev.csv")
    if not os.path.isfile(own):
      raise errors.InputError(f"MMLU subject {subject!r} is not one of the harness's", where=test,
                              fix="give MMLU's own subjects (the harness's mmlu_<subject> tasks)")
    if not os.path.isfile(dev):
      raise errors.MissingInputError(f"MMLU subject {subject!r} has no exemplars file", where=dev,
                                     fix="give data/dev/<subject>_dev.csv beside data/test")
    files = {}
    for split, source in (("test", test), ("dev", dev)):
      files[split] = os.path.abspath(os.path.join(output, "mmlu", "data", f"{subject}_{split}.jsonl"))
      atomic.write_text(files[split], "".join(json.dumps(r) + "\n" for r in _mmlu_rows(source, subject)))
    _write_yaml(os.path.join(output, "mmlu", f"mmlu_{subject}.yaml"),
                _local(harness_config(own), "json", files))
    names.append(f"mmlu_{subject}")
  for group in ("_mmlu",) + tuple(f"_mmlu_{c}" for c in MMLU_CATEGORIES):
    _write_yaml(os.path.join(output, "mmlu", f"{group}.yaml"),
                harness_config(os.path.join(harness, f"{group}.yaml")))
  return names


def write(output: str, bbh: str | None = None, mmlu: str | None = None) -> list[str]:
  """Writes the local task YAMLs of the copies given under `output`; returns the task names."""
  if not bbh and not mmlu:
    raise errors.UsageError("nothing to write", where="--bbh / --mmlu",
                            fix="give --bbh=DIR (BIG-Bench-Hard) and/or --mmlu=DIR (MMLU)")
  atomic.check_parent(os.path.join(output, "x"), fix="choose another --output")
  with atomic.output(output):
    return (bbh_tasks(bbh, output) if bbh else []) + (mmlu_tasks(mmlu, output) if mmlu else [])


def main(argv: Sequence[str] | None = None) -> int:
  """`python -m t5tune.infer.local_tasks`: the exit status (an error is one line on stderr)."""
  parser = argparse.ArgumentParser(prog="python -m t5tune.infer.local_tasks",
                                   description=__doc__.splitlines()[0])
  parser.add_argument("--bbh", help="a BIG-Bench-Hard checkout (bbh/<task>.json, cot-prompts/<task>.txt)")
  parser.add_argument("--mmlu", help="MMLU in its original layout (data/test, data/dev CSVs)")
  parser.add_argument("--output", required=True, help="the directory to pass as --include_path")
  parser.add_argument("--verbose", action="store_true")
  args = parser.parse_args(argv)
  try:
    names = write(args.output, args.bbh, args.mmlu)
  except errors.T5tuneError as e:
    if args.verbose:
      raise
    print(f"local_tasks: error: {e}", file=sys.stderr)
    return e.exit_code
  print(f"wrote {len(names)} tasks under {args.output}: pass --include_path {args.output}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
