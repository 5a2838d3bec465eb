"""The data quality report of a task or mixture: counts, lengths, truncation, templates, diversity.

`build(name, feature_lengths=...)` returns a JSON-ready dict; `write` saves it
as `NAME.report.json` and the length histograms as `NAME.lengths.png`;
`format_text` is what `t5tune data report` prints. Per task and split:

  examples                     after cleaning and rendering
  read, removed{reason: n}     every removal by reason (`t5tune.data.cleaning`),
  duplicates, invalid, skipped_bad_records   and the headline sums (duplicates: every kind)
  input_tokens, target_tokens  percentiles p50/p90/p95/p99, mean, max (with EOS)
  truncation{inputs, targets}  share of examples longer than feature_lengths
  template_usage{name: n}
  instructions{distinct_1, distinct_2, leading_verbs}

  quality{diversity, clarity, consistency}   (`t5tune.quality.report_quality`)

and for the whole report `metadata`, `near_duplicates`, and when asked
`contamination` and `label_issues` (`report_quality.mixture_sections`).

`instructions` reads the literal text of each example's template (placeholders
removed), or the rendered inputs when the template is only placeholders (the
instruction is then part of the data). A leading verb is the first word of the
first line that is not a `Label:`; there is no part-of-speech tagger.
"""
from __future__ import annotations

import collections
import os
import re
import string
from typing import Any, Mapping, Sequence

import numpy as np
import seqio

from t5tune import atomic
from t5tune.data import lengths
from t5tune.data import mixtures
from t5tune.data import tasks as tasks_lib
from t5tune.quality import report_quality

PERCENTILES = (50, 90, 95, 99)
_WORD = re.compile(r"[a-z][a-z'-]*")
_LABEL = re.compile(r"^\s*[\w ]{1,30}:")


def _percentiles(values: np.ndarray) -> dict[str, float]:
  out = {f"p{p}": float(np.percentile(values, p)) for p in PERCENTILES}
  out["mean"] = float(values.mean())
  out["max"] = int(values.max())
  return out


def _literal(template_inputs: str) -> str:
  return "".join(lit for lit, _, _, _ in string.Formatter().parse(template_inputs))


def _leading_verb(text: str) -> str | None:
  for line in text.splitlines():
    if not line.strip() or _LABEL.match(line):
      continue
    m = _WORD.match(line.strip().lower())
    if m:
      return m.group(0)
  return None


def instruction_diversity(instructions: Sequence[str], top: int = 10) -> dict[str, Any]:
  """distinct-1/2 (unique n-grams / all n-grams) and the most frequent leading verbs."""
  unigrams, bigrams, verbs = [], [], collections.Counter()
  for text in instructions:
    words = _WORD.findall(text.lower())
    unigrams.extend(words)
    bigrams.extend(zip(words, words[1:]))
    verb = _leading_verb(text)
    if verb:
      verbs[verb] += 1
  return {
      "distinct_1": len(set(unigrams)) / len(unigrams) if unigrams else 0.0,
      "distinct_2": len(set(bigrams)) / len(bigrams) if bigrams else 0.0,
      "leading_verbs": verbs.most_common(top),
  }


def _split_report(info, split, feature_lengths, max_examples):
  prepared = info.source.prepared(split)
  inputs, targets, examples = lengths.token_lengths(info, split, max_examples)
  literal = {t.name: _literal(t.inputs) for t in info.source.templates}
  instructions = []
  for ex in examples:
    text = literal.get(ex["template_name"], "")
    instructions.append(text if _WORD.search(text.lower()) else ex["inputs"])
  counts = {k: v for k, v in prepared.counts.items() if k != "read"}
  return {
      "examples": len(prepared.examples),
      "read": prepared.counts["read"],
      "removed": dict(sorted(counts.items())),
      # Every kind of duplicate (exact, normalised, near): the headline matches `removed`.
      "duplicates": sum(v for k, v in counts.items() if k.startswith("duplicate")),
      "invalid": sum(counts.get(k, 0) for k in ("empty_field", "empty_options", "invalid")),
      "skipped_bad_records": sum(counts.get(k, 0) for k in (
          "bad_json", "bad_csv", "bad_columns", "missing_field", "wrong_type")),
      "length_filtered": counts.get("too_long_inputs", 0) + counts.get("too_long_targets", 0),
      "measured_examples": int(len(inputs)),
      "input_tokens": _percentiles(inputs),
      "target_tokens": _percentiles(targets),
      "truncation": {
          "inputs": float(np.mean(inputs > feature_lengths["inputs"])),
          "targets": float(np.mean(targets > feature_lengths["targets"]))},
      "template_usage": dict(prepared.template_usage.most_common()),
      "instructions": instruction_diversity(instructions),
      "quality": report_quality.split_quality(examples, instructions),
  }, inputs, targets


def build(name: str, *, feature_lengths: Mapping[str, int],
          splits: Sequence[str] | None = None, max_examples: int | None = None,
          _histograms: dict | None = None, **quality: Any) -> dict[str, Any]:
  """The quality report of a registered task or mixture (see the module docstring).

  `quality`: keyword arguments of `report_quality.mixture_sections` (near_threshold,
  contamination_eval, eval_split, ngram, label_issues_path).
  """
  provider = mixtures.get_provider(name)
  is_mixture = isinstance(provider, seqio.Mixture)
  report = {"name": name, "kind": "mixture" if is_mixture else "task",
            "feature_lengths": dict(feature_lengths), "tasks": {}, "totals": {}}
  if is_mixture:
    rates = {t.name: float(provider.get_rate(t)) for t in provider.tasks}
    total = sum(rates.values()) or 1.0
    report["mixing_rates"] = {k: v / total for k, v in rates.items()}
  hist = _histograms if _histograms is not None else {}
  totals = collections.defaultdict(lambda: collections.Counter())
  for task in map(seqio.get_mixture_or_task, mixtures.leaf_task_names([name])):
    if task.name not in tasks_lib.task_names():
      report["tasks"][task.name] = {"note": "not registered through t5tune.data; not measured"}
      continue
    info = tasks_lib.get_info(task.name)
    if info.kind == tasks_lib.PRETRAINING:
      report["tasks"][task.name] = {
          "kind": info.kind, "objective": repr(info.objective), "metadata": dict(info.metadata),
          "note": f"pretraining text ({info.objective.name}): cut to fit the feature lengths;"
                  " not measured"}
      continue
    task_splits = [s for s in (splits or task.splits) if s in task.splits]
    entry = {"metadata": dict(info.metadata), "splits": {}}
    for split in task_splits:
      sr, inputs, targets = _split_report(info, split, feature_lengths, max_examples)
      entry["splits"][split] = sr
      h = hist.setdefault(split, {"inputs": [], "targets": []})
      h["inputs"].append(inputs)
      h["targets"].append(targets)
      for key in ("examples", "read", "duplicates", "invalid", "skipped_bad_records",
                  "length_filtered"):
        totals[split][key] += sr[key]
      totals[split]["truncated_inputs"] += int(np.sum(inputs > feature_lengths["inputs"]))
      totals[split]["truncated_targets"] += int(np.sum(targets > feature_lengths["targets"]))
      totals[split]["measured_examples"] += int(len(inputs))
    report["tasks"][task.name] = entry
  for split, t in totals.items():
    out = dict(t)
    n = max(1, t["measured_examples"])
    out["truncation"] = {"inputs": t["truncated_inputs"] / n, "targets": t["truncated_targets"] / n}
    all_in = np.concatenate(hist[split]["inputs"])
    all_tg = np.concatenate(hist[split]["targets"])
    out["input_tokens"] = _percentiles(all_in)
    out["target_tokens"] = _percentiles(all_tg)
    report["totals"][split] = out
  report.update(report_quality.mixture_sections(name, report, **quality))
  return report


def plot_histograms(histograms, feature_lengths, path: str, title: str) -> str:
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top
  splits = sorted(histograms)
  fig, axes = plt.subplots(len(splits), 2, figsize=(10, 3 * len(splits)), squeeze=False)
  for row, split in enumerate(splits):
    for col, feature in enumerate(("inputs", "targets")):
      ax = axes[row][col]
      ax.hist(np.concatenate(histograms[split][feature]), bins=50)
      ax.axvline(feature_lengths[feature], color="red", linestyle="--",
                 label=f"feature length {feature_lengths[feature]}")
      ax.set_title(f"{title} [{split}] {feature} tokens")
      ax.set_xlabel("tokens (with EOS)")
      ax.set_ylabel("examples")
      ax.legend()
  fig.tight_layout()
  with atomic.writing(path, suffix=".png") as tmp:
    fig.savefig(tmp, dpi=80)
  plt.close(fig)
  return path


def write(name: str, output_dir: str, *, feature_lengths: Mapping[str, int],
          splits: Sequence[str] | None = None, max_examples: int | None = None,
          **quality: Any) -> tuple[dict[str, Any], str, str]:
  """Builds the report and writes NAME.report.json and NAME.lengths.png; returns (report, paths)."""
  histograms = {}
  report = build(name, feature_lengths=feature_lengths, splits=splits,
                 max_examples=max_examples, _histograms=histograms, **quality)
  json_path = os.path.join(output_dir, f"{name}.report.json")
  with atomic.output(output_dir):  # after the build: nothing is created on a refusal
    os.makedirs(output_dir, exist_ok=True)
    atomic.write_json(json_path, report, indent=1)
    png_path = plot_histograms(histograms, feature_lengths,
                               os.path.join(output_dir, f"{name}.lengths.png"), name)
  return report, json_path, png_path


def format_text(report: Mapping[str, Any]) -> str:
  """A readable summary of a report, one block per task and split."""
  fl = report["feature_lengths"]
  lines = [f"{report['kind']} {report['name']}  (feature lengths inputs={fl['inputs']},"
           f" targets={fl['targets']})"]
  for task, entry in report["tasks"].items():
    if "splits" not in entry:
      lines.append(f"  {task}: {entry['note']}")
      continue
    rate = report.get("mixing_rates", {}).get(task)
    lines.append(f"  {task}" + (f"  rate {rate:.3f}" if rate is not None else "")
                 + (f"  {entry['metadata']}" if entry["metadata"] else ""))
    for split, s in entry["splits"].items():
      it, tt = s["input_tokens"], s["target_tokens"]
      lines.append(
          f"    {split:<10} examples {s['examples']:>7}  read {s['read']}"
          f"  duplicates {s['duplicates']}  invalid {s['invalid']}"
          f"  bad records {s['skipped_bad_records']}  length-filtered {s['length_filtered']}")
      if s["removed"]:  # every count the JSON has, by reason, so none is only in the file
        lines.append("      removed " + ", ".join(f"{k} {v}" for k, v in s["removed"].items()))
      lines.append(
          f"      input tokens p50/p90/p99/max {it['p50']:.0f}/{it['p90']:.0f}/{it['p99']:.0f}/{it['max']}"
          f"  target {tt['p50']:.0f}/{tt['p90']:.0f}/{tt['p99']:.0f}/{tt['max']}"
          f"  truncated inputs {100 * s['truncation']['inputs']:.1f}%"
          f" targets {100 * s['truncation']['targets']:.1f}%")
      ins = s["instructions"]
      verbs = ", ".join(f"{v} {n}" for v, n in ins["leading_verbs"][:5])
      lines.append(
          f"      templates {s['template_usage']}  distinct-1 {ins['distinct_1']:.3f}"
          f" distinct-2 {ins['distinct_2']:.3f}  leading verbs: {verbs}")
      q = s["quality"]
      bad = sum(sum(t["violations"].values()) for t in q["consistency"].values())
      lines.append(
          f"      verb-noun pairs {q['diversity']['distinct_verb_noun']} distinct"
          f"  MATTR {q['diversity']['mattr']:.3f}  instruction words p50"
          f" {q['clarity']['words']['p50']:.0f}  imperative {100 * q['clarity']['imperative']:.0f}%"
          f"  question {100 * q['clarity']['question']:.0f}%  format violations {bad}")
  for split, t in report["totals"].items():
    lines.append(
        f"  total [{split}] examples {t['examples']}  duplicates {t['duplicates']}"
        f"  invalid {t['invalid']}  bad records {t['skipped_bad_records']}"
        f"  truncated inputs {100 * t['truncation']['inputs']:.1f}%"
        f" targets {100 * t['truncation']['targets']:.1f}%")
  lines.extend(report_quality.format_sections(report))
  return "\n".join(lines)
