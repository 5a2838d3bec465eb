"""The compositional report: accuracy tables with 95% intervals, paired verdicts, the task-count curve and its plot.

    report.write(config, runs, workdir)   # runs: {run name: [eval per seed]} from run.run_all

Scores are exact match (x100; yes / no parts by rank classification). A
held-out score is the mean over the four clusters of each cluster's mean
(each cluster weighs the same); held-in and unseen-wording scores are means
over their examples. Intervals are bootstraps over examples (and seeds, with
several): `experiments.flan_mini.stats` and `t5tune.infer.compare`. A
difference "helped" / "hurt" only when its interval excludes 0.
"""
from __future__ import annotations

import json
import math
import os

import numpy as np

from t5tune import atomic
from t5tune.infer import compare as compare_lib

from experiments.compositional import collection
from experiments.flan_mini import stats

TITLES = {"pretrained": "P", "instructions": "IT", "no_template": "NT", "task_id": "TaskID",
          "instructions_scratch": "IT from scratch", "cot": "IT (CoT)"}
CLUSTERS = list(collection.HELD_OUT)


def title(run: str, pretrained: bool = True) -> str:
  """"P+IT (24 tasks)"; without stage A (`pretrained` False) "IT (24 tasks)"."""
  style, _, n = run.rpartition("_n")
  if not style:
    return TITLES.get(run, run)
  name = TITLES.get(style, style)
  return f"{'P+' if pretrained and style != 'instructions_scratch' else ''}{name} ({n} tasks)"


def _arrays(seed_evals, ev: str, parts=None, by_example: bool = False):
  """(scores [seeds, N], weights [N]) of an evaluation; parts weigh equally unless `by_example`."""
  scores, w, _, _ = stats.cluster_arrays(seed_evals, ev, ev, tasks=parts)
  return scores, (np.ones_like(w) if by_example else w)


def score(seed_evals, ev: str, parts=None, by_example: bool = False) -> dict:
  s, w = _arrays(seed_evals, ev, parts, by_example)
  i = compare_lib.seeds_interval(s, w)
  return {"score": i.estimate, "low": i.low, "high": i.high, "examples": s.shape[1],
          "seeds": s.shape[0]}


def difference(a, b, ev: str, parts=None) -> dict:
  sa, w = _arrays(a, ev, parts)
  sb, _ = _arrays(b, ev, parts)
  d = (compare_lib.paired_difference(sa[0], sb[0], w) if sa.shape[0] == sb.shape[0] == 1
       else compare_lib.seeds_difference(sa, sb, w))
  return d.to_dict()


def majority(seed_evals, ev: str, part: str) -> float:
  """Accuracy of always giving the most common answer of a part (the majority-class baseline)."""
  targets = seed_evals[0]["evals"][ev]["tasks"][part]["targets"]
  return 100.0 * max(targets.count(t) for t in set(targets)) / len(targets)


def summarize(runs: dict[str, list[dict]]) -> dict:
  """Scores per run, differences at the largest task count, the curve with slope intervals."""
  out = {"scores": {}, "differences": [], "curve": {}, "majority": {},
         "from_stage_a": {n: bool(r[0].get("init_from")) for n, r in runs.items()}}
  any_run = next(iter(runs.values()))
  for c in CLUSTERS:
    out["majority"][c] = majority(any_run, "held_out", c)
  for ev in ("held_in", "unseen", "held_in_val"):
    if ev not in any_run[0]["evals"]:
      continue
    s = _arrays(any_run, ev, by_example=True)[0]
    targets = [t for p in any_run[0]["evals"][ev]["tasks"].values() for t in p["targets"]]
    out["majority"][ev] = 100.0 * max(targets.count(t) for t in set(targets)) / len(targets)
    del s
  for name, seed_evals in runs.items():
    row = {c: score(seed_evals, "held_out", [c]) for c in CLUSTERS}
    row["held_out"] = score(seed_evals, "held_out")
    row["held_in"] = score(seed_evals, "held_in", by_example=True)
    row["unseen"] = score(seed_evals, "unseen", by_example=True)
    for ev in ("held_in_id", "held_in_val"):
      if all(ev in e["evals"] for e in seed_evals):
        row[ev] = score(seed_evals, ev, by_example=True)
    out["scores"][name] = row
  counts = sorted({r[0]["tasks"] for r in runs.values() if r[0].get("style")})
  if counts:
    top = counts[-1]
    it = runs.get(f"instructions_n{top}")
    for other in (f"no_template_n{top}", "pretrained", f"task_id_n{top}",
                  f"instructions_scratch_n{top}"):
      if it is None or other not in runs:
        continue
      for c in CLUSTERS + [None]:
        d = difference(it, runs[other], "held_out", [c] if c else None)
        out["differences"].append({"a": f"instructions_n{top}", "b": other,
                                   "cluster": c or "mean of 4", **d})
  for style in ("instructions", "no_template", "task_id"):
    names = [f"{style}_n{n}" for n in counts if f"{style}_n{n}" in runs]
    if not names:
      continue
    curve = {"tasks": [runs[n][0]["tasks"] for n in names],
             "held_out": [out["scores"][n]["held_out"] for n in names]}
    if len(names) >= 2:
      s = np.stack([_arrays(runs[n], "held_out")[0].mean(0) for n in names])
      w = _arrays(runs[names[0]], "held_out")[1]
      i = compare_lib.slope_interval(s, np.log2(curve["tasks"]), w)
      curve["slope_per_doubling"] = i.to_dict()
    out["curve"][style] = curve
  return out


def _cell(d: dict | None, signed: bool = False) -> str:
  return stats.format_interval(d, signed) if d else "-"


def _table(head, rows) -> str:
  widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
  line = lambda cells: "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"
  return "\n".join([line(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
                   + [line(r) for r in rows])


def verdicts(summary: dict) -> list[str]:
  """The goal, read against the numbers."""
  lines = []
  diffs = {(d["a"], d["b"], d["cluster"]): d for d in summary["differences"]}
  it = next((d["a"] for d in summary["differences"]), None)
  if it:
    nt = it.replace("instructions", "no_template")
    baselines = [b for b in (nt, "pretrained") if any(k[1] == b for k in diffs)]
    both = [c for c in CLUSTERS
            if baselines and all((it, b, c) in diffs and diffs[(it, b, c)]["verdict"] == "helped"
                                 and diffs[(it, b, c)]["estimate"] >= 10 for b in baselines)]
    missing = "" if "pretrained" in baselines else (" [P was not run in this setting: against"
                                                    " NT only, so the goal cannot be met here]")
    lines.append(f"Goal 1 (P+IT beats P+NT and P by >= 10 points, intervals excluding 0, on >= 3"
                 f" of 4 held-out clusters): {len(both)} of 4 ({', '.join(both) or 'none'})"
                 f" beat {' and '.join(title(b, summary['from_stage_a'].get(b, True)) for b in baselines)}"
                 f"{missing} -> {'met' if len(both) >= 3 and not missing else 'NOT met'}.")
    held_in = summary["scores"][it]["held_in"]
    lines.append(f"Goal 4 (IT >= 90% held-in): {_cell(held_in)} ->"
                 f" {'met' if held_in['score'] >= 90 else 'NOT met'}.")
    tid = it.replace("instructions", "task_id")
    if tid in summary["scores"] and "held_in_id" in summary["scores"][tid]:
      t = lambda n: title(n, summary["from_stage_a"].get(n, True))
      lines.append(f"{t(tid)} held-in in its own format (task ids)"
                   f" {_cell(summary['scores'][tid]['held_in_id'])} vs {t(it)} held-in"
                   f" {_cell(held_in)}; held-out {t(tid)} {_cell(summary['scores'][tid]['held_out'])}"
                   f" vs {t(nt)} {_cell(summary['scores'].get(nt, {}).get('held_out'))}.")
  for style, curve in summary["curve"].items():
    s = curve.get("slope_per_doubling")
    if s:
      lines.append(f"Curve {TITLES[style]}: held-out slope per doubling of tasks {_cell(s, True)}"
                   f" ({len(curve['tasks'])} points) -> {s['verdict'].replace('helped', 'rises').replace('hurt', 'falls')}.")
  return lines


def tables(summary: dict) -> str:
  # The held-in validation column (what settings are chosen on) where every run has it.
  val = all("held_in_val" in row for row in summary["scores"].values())
  head = (["run"] + (["held-in val"] if val else []) + ["held-in", "unseen wording"] + CLUSTERS
          + ["held-out mean"])
  m = summary["majority"]
  rows = [["majority class"] + ([f"{m['held_in_val']:.1f}"] if val else [])
          + [f"{m['held_in']:.1f}", f"{m['unseen']:.1f}"]
          + [f"{m[c]:.1f}" for c in CLUSTERS] + [f"{np.mean([m[c] for c in CLUSTERS]):.1f}"]]
  for name, row in summary["scores"].items():
    rows.append([title(name, summary["from_stage_a"].get(name, True))]
                + ([_cell(row["held_in_val"])] if val else [])
                + [_cell(row["held_in"]), _cell(row["unseen"])]
                + [_cell(row[c]) for c in CLUSTERS] + [_cell(row["held_out"])])
  parts = [_table(head, rows)]
  if summary["differences"]:
    t = lambda n: title(n, summary["from_stage_a"].get(n, True))
    rows = [[f"{t(d['a'])} - {t(d['b'])}", d["cluster"], _cell(d, True), d["verdict"]]
            for d in summary["differences"]]
    parts += ["", _table(["comparison", "held-out cluster", "difference [95% CI]", "verdict"],
                         rows)]
  if summary["curve"]:
    counts = sorted({n for c in summary["curve"].values() for n in c["tasks"]})
    rows = []
    for n in counts:
      cells = [str(n)]
      for style in ("instructions", "no_template", "task_id"):
        c = summary["curve"].get(style)
        cells.append(_cell(c["held_out"][c["tasks"].index(n)]) if c and n in c["tasks"] else "-")
      rows.append(cells)
    pre = "P+" if any(summary["from_stage_a"].values()) else ""
    parts += ["", "Held-out accuracy (mean of 4 clusters) against the number of training tasks:",
              _table(["training tasks"] + [pre + TITLES[s] for s in
                                           ("instructions", "no_template", "task_id")], rows)]
  return "\n".join(parts)


def plot(summary: dict, path: str) -> str:
  """Held-out accuracy against training tasks (log scale) per style, 95% error bars; P and majority lines."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, ax = plt.subplots(figsize=(6.5, 4.5))
  for style, c in summary["curve"].items():
    ys = [d["score"] for d in c["held_out"]]
    err = [[d["score"] - d["low"] for d in c["held_out"]],
           [d["high"] - d["score"] for d in c["held_out"]]]
    ax.errorbar(c["tasks"], ys, yerr=err, marker="o", capsize=3, label=TITLES[style])
  p = summary["scores"].get("pretrained")
  if p:
    ax.axhline(p["held_out"]["score"], color="grey", linestyle=":", label="P (stage A only)")
  ax.axhline(np.mean([summary["majority"][c] for c in CLUSTERS]), color="k", linestyle="--",
             label="majority class")
  ax.set_xscale("log", base=2)
  ax.set_xlabel("training tasks")
  ax.set_ylabel("held-out exact match (mean of 4 clusters), 95% CI")
  ax.set_title("compositional: unseen pairings of trained primitives")
  ax.legend(fontsize=8)
  fig.tight_layout()
  with atomic.writing(path, suffix=".png") as tmp:
    fig.savefig(tmp, dpi=90)
  plt.close(fig)
  return path


def write(config, runs: dict, workdir: str, **extra) -> dict:
  """WORKDIR/results.json, results.md, results.png; prints the tables, verdicts and plot path."""
  summary = summarize(runs)
  lines = verdicts(summary)
  timing = [f"- `{n}` seed {r.get('seed')}: train {r['train_seconds']:.0f} s, eval"
            f" {r['eval_seconds']:.0f} s" + (f", final train loss {r['final_train_loss']:.3f}"
                                           if r.get("final_train_loss") is not None else "")
            for n, seeds in runs.items() for r in seeds]
  try:
    png = plot(summary, os.path.join(workdir, "results.png"))
  except ImportError as e:  # no matplotlib: the curve's numbers are in results.json
    png = f"not drawn ({e}); the curve's data is in results.json under statistics.curve"
  head = [f"compositional ({config.setting}): exact match x100 (yes / no parts by rank"
          " classification); [95% interval, bootstrap over examples"
          + (" and seeds" if len(config.compositional.seeds) > 1 else "") + "]"]
  if "cpu" in extra:
    head.append(f"machine: {extra['cpu']}; wall time {extra.get('wall_seconds', math.nan):.0f} s")
  text = "\n".join(head + [tables(summary), ""] + lines + [""] + timing)
  atomic.write_text(os.path.join(workdir, "results.md"), text + "\n")
  out = {"setting": config.setting, "statistics": summary, "verdicts": lines, **extra,
         "runs": runs, "config": config.to_dict()}
  atomic.write_text(os.path.join(workdir, "results.json"), json.dumps(out, indent=1, default=str))
  print()
  print(text)
  print()
  print(f"results: {os.path.join(workdir, 'results.json')}")
  print(f"plot: {png}")
  return out
