"""The flan_mini report: tables with 95% intervals and chance, paired verdicts, confusion matrices, the plot.

    groups = {"nli": {"held_out": ["nli"], "tasks": {"nli": [...]},
                      "runs": {"pretrained": [eval], "instructions": [eval_seed0, ...]}}}
    text, summary = report.render(groups)

A group is one held-out setting (one cluster held out, FLAN's design); its
runs are evaluated on the same examples, so they compare example by example
(`stats.compare`). A verdict says "helped" or "hurt" only when the 95%
interval of the difference excludes 0, else "inconclusive".
"""
from __future__ import annotations

from typing import Any

from experiments.flan_mini import stats
from t5tune import atomic

EV = "held_out_zs"
# The comparisons the experiment exists for: (a, b) means "a minus b".
COMPARISONS = (("instructions", "no_template"), ("instructions", "pretrained"),
               ("instructions", "instructions_scratch"), ("mixed", "instructions"))
TITLES = {"pretrained": "P (stage A only)", "no_template": "P+NT", "instructions": "P+IT",
          "instructions_scratch": "IT from scratch", "mixed": "P+IT mixed few-shot"}


def _title(run: str) -> str:
  return TITLES.get(run, run)


def _fmt_table(head: list[str], rows: list[list[str]]) -> str:
  widths = [max(len(x) for x in col) for col in zip(head, *rows)]
  fmt = lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"
  return "\n".join([fmt(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
                   + [fmt(r) for r in rows])


def summarize(groups: dict[str, dict]) -> dict[str, Any]:
  """Scores with intervals per group/run/cluster/rule, comparisons, confusion matrices."""
  out = {}
  for label, g in groups.items():
    runs, held_out, tasks = g["runs"], g["held_out"], g["tasks"]
    scores, comparisons, confusions = {}, [], {}
    for run, seed_evals in runs.items():
      evs = [e for e in ("held_out_zs", "held_out_fs") if e in seed_evals[0]["evals"]]
      for ev in evs:
        for c in held_out:
          for rule in stats.RULES:
            if stats.has_rule(seed_evals, ev, rule):
              scores[f"{run}|{ev}|{c}|{rule}"] = stats.cluster_scores(
                  seed_evals, ev, c, rule, tasks[c])
      for c in held_out:
        m = stats.confusion(seed_evals, EV, tasks[c])
        if m is not None:
          confusions[f"{run}|{c}"] = m
    for a, b in COMPARISONS:
      if a not in runs or b not in runs:
        continue
      for c in held_out:
        for rule in stats.RULES:
          if stats.has_rule(runs[a], EV, rule) and stats.has_rule(runs[b], EV, rule):
            d = stats.compare(runs[a], runs[b], EV, c, rule, tasks[c])
            comparisons.append({"a": a, "b": b, "cluster": c, "rule": rule, **d})
    out[label] = {"held_out": held_out, "scores": scores, "comparisons": comparisons,
                  "confusions": confusions}
  return out


def flan_effect(summary: dict) -> list[str]:
  """Sentences: per cluster, did instructions beat both baselines (intervals excluding 0)?"""
  lines, shown = [], 0
  for label, s in summary.items():
    for c in s["held_out"]:
      plain = {(d["a"], d["b"]): d for d in s["comparisons"]
               if d["cluster"] == c and d["rule"] == "plain"}
      parts = []
      for key in (("instructions", "no_template"), ("instructions", "pretrained")):
        if key in plain:
          d = plain[key]
          parts.append(f"{_title(key[0])} - {_title(key[1])} {stats.format_interval(d, True)}"
                       f" -> {d['verdict']}")
      both = [plain.get(k, {}).get("verdict") for k in
              (("instructions", "no_template"), ("instructions", "pretrained"))]
      if both == ["helped", "helped"]:
        shown += 1
      if parts:
        lines.append(f"{c} (held out): " + "; ".join(parts))
      sc = s["scores"].get(f"instructions_scratch|{EV}|{c}|plain")
      if sc:
        near = sc["low"] <= sc["chance"] <= sc["high"]
        lines.append(f"  control, IT from scratch: {stats.format_interval(sc)} vs chance"
                     f" {sc['chance']:.1f} -> " + ("at chance (interval covers it)" if near
                                                    else "NOT at chance"))
  if lines:
    lines.append(f"FLAN's effect (P+IT above both P+NT and P, intervals excluding 0) on {shown}"
                 " held-out cluster(s); the goal is at least two of four at the larger setting.")
  return lines


def tables(summary: dict) -> str:
  """Markdown: scores with intervals and chance; differences with verdicts; confusion matrices."""
  parts = []
  head = ["held out", "run", "0-shot [95% CI]", "length-norm.", "calibrated", "few-shot",
          "chance", "seeds x examples"]
  rows = []
  for label, s in summary.items():
    runs = list(dict.fromkeys(k.split("|")[0] for k in s["scores"]))
    for c in s["held_out"]:
      for run in runs:
        get = lambda ev, rule: s["scores"].get(f"{run}|{ev}|{c}|{rule}")
        zs = get(EV, "plain")
        if zs is None:
          continue
        cell = lambda d: stats.format_interval(d) if d else "-"
        rows.append([c, _title(run), cell(zs), cell(get(EV, "length_normalized")),
                     cell(get(EV, "calibrated")), cell(get("held_out_fs", "plain")),
                     f"{zs['chance']:.1f}", f"{zs['seeds']} x {zs['examples']}"])
  parts.append(_fmt_table(head, rows))
  head = ["held out", "comparison", "rule", "difference [95% CI]", "verdict", "McNemar p"]
  rows = []
  for s in summary.values():
    for d in s["comparisons"]:
      p = d.get("mcnemar", {}).get("pvalue")
      rows.append([d["cluster"], f"{_title(d['a'])} - {_title(d['b'])}", d["rule"],
                   stats.format_interval(d, True), d["verdict"],
                   "-" if p is None else f"{p:.3g}"])
  if rows:
    parts += ["", _fmt_table(head, rows)]
  for s in summary.values():
    for key, m in s["confusions"].items():
      run, c = key.split("|")
      if run in ("instructions", "no_template", "pretrained"):
        parts += ["", f"Confusion matrix, {_title(run)} on held-out {c} (0-shot, all seeds):",
                  "```", stats.format_confusion(m), "```"]
  return "\n".join(parts)


def plot(summary: dict, loss_curves: dict[str, tuple], path: str) -> str:
  """Bars per held-out cluster and run with 95% error bars and a chance line; training losses."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  fig, (ax, ax_loss) = plt.subplots(1, 2, figsize=(13, 4.5))
  clusters = [(label, c) for label, s in summary.items() for c in s["held_out"]]
  runs = list(dict.fromkeys(k.split("|")[0] for s in summary.values() for k in s["scores"]))
  width = 0.8 / max(1, len(runs))
  for j, run in enumerate(runs):
    xs, ys, err = [], [], [[], []]
    for i, (label, c) in enumerate(clusters):
      d = summary[label]["scores"].get(f"{run}|{EV}|{c}|plain")
      if d:
        xs.append(i + j * width)
        ys.append(d["score"])
        err[0].append(d["score"] - d["low"])
        err[1].append(d["high"] - d["score"])
    ax.bar(xs, ys, width, yerr=np.array(err), capsize=3, label=_title(run))
  for i, (label, c) in enumerate(clusters):
    chance = next((d["chance"] for k, d in summary[label]["scores"].items()
                   if k.endswith(f"|{EV}|{c}|plain")), None)
    if chance:
      ax.hlines(chance, i - width / 2, i + width * (len(runs) - 0.5), colors="k",
                linestyles="--", label="chance" if i == 0 else None)
  ax.set_xticks([i + width * (len(runs) - 1) / 2 for i in range(len(clusters))],
                [c for _, c in clusters])
  ax.set_ylabel("held-out 0-shot score (template average), 95% CI")
  ax.set_title("flan_mini: one cluster held out at a time")
  ax.legend(fontsize=8)
  for name, (steps, losses) in loss_curves.items():
    if steps:
      ax_loss.plot(steps, losses, label=name)
  ax_loss.set_xlabel("step")
  ax_loss.set_ylabel("train loss")
  ax_loss.set_yscale("log")
  ax_loss.set_title("training loss")
  if loss_curves:
    ax_loss.legend(fontsize=7)
  fig.tight_layout()
  with atomic.writing(path, suffix=".png") as tmp:
    fig.savefig(tmp, dpi=90)
  plt.close(fig)
  return path
