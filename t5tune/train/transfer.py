"""Continual-learning measurements from the accuracy matrix: ACC, BWT, FWT, forgetting; table and heatmap.

R[i][j] is the score on stage j's tasks after training stage i (0-based,
T stages); b[j] is the score of the starting model on stage j's tasks.
With T stages (Lopez-Paz & Ranzato 2017, "Gradient Episodic Memory"):

    ACC = 1/T       sum_j        R[T-1][j]
    BWT = 1/(T-1)   sum_{j<T-1}  R[T-1][j] - R[j][j]
    FWT = 1/(T-1)   sum_{j>=1}   R[j-1][j] - b[j]

and the forgetting of task j < T-1 (Chaudhry et al. 2018, "Riemannian
Walk"): max_{l<T-1} R[l][j] - R[T-1][j]. BWT, FWT and forgetting are
undefined (None) for a single stage.
"""
from __future__ import annotations

from typing import Sequence

from t5tune import atomic


def summarize(R: Sequence[Sequence[float]], b: Sequence[float]) -> dict:
  """ACC, BWT, FWT and per-task forgetting from the T x T matrix R and the initial row b."""
  t = len(R)
  if t == 0 or any(len(row) != t for row in R) or len(b) != t:
    raise ValueError(f"R must be T x T and b of length T; got {[len(r) for r in R]} and {len(b)}")
  last = R[t - 1]
  out = {"acc": sum(last) / t, "bwt": None, "fwt": None, "forgetting": [None] * t}
  if t > 1:
    out["bwt"] = sum(last[j] - R[j][j] for j in range(t - 1)) / (t - 1)
    out["fwt"] = sum(R[j - 1][j] - b[j] for j in range(1, t)) / (t - 1)
    out["forgetting"] = [max(R[l][j] for l in range(t - 1)) - last[j] for j in range(t - 1)] + [None]
  return out


def table(names: Sequence[str], R, b, summary: dict) -> str:
  """The matrix as markdown (a row per stage trained, a column per stage's tasks) plus the scalars."""
  def cell(x):
    return "—" if x is None else f"{x:.1f}"
  lines = ["| after \\ on | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|",
           "| start | " + " | ".join(cell(x) for x in b) + " |"]
  lines += [f"| {name} | " + " | ".join(cell(x) for x in row) + " |" for name, row in zip(names, R)]
  lines.append("| forgetting | " + " | ".join(cell(x) for x in summary["forgetting"]) + " |")
  lines.append("")
  lines.append(f"ACC {cell(summary['acc'])}   BWT {cell(summary['bwt'])}   FWT {cell(summary['fwt'])}")
  return "\n".join(lines)


def heatmap(path: str, names: Sequence[str], R, b) -> None:
  """R (with the starting row on top) as an annotated heatmap PNG, written atomically."""
  import matplotlib
  matplotlib.use("Agg")
  from matplotlib import pyplot as plt
  rows = [list(b)] + [list(r) for r in R]
  labels = ["start"] + list(names)
  fig, ax = plt.subplots(figsize=(1.2 * len(names) + 2, 0.8 * len(rows) + 1.5))
  im = ax.imshow(rows, cmap="viridis", vmin=0, vmax=100)
  ax.set_xticks(range(len(names)), names)
  ax.set_yticks(range(len(rows)), labels)
  ax.set_xlabel("evaluated on the tasks of stage")
  ax.set_ylabel("after training stage")
  for i, row in enumerate(rows):
    for j, x in enumerate(row):
      ax.text(j, i, f"{x:.1f}", ha="center", va="center", color="w" if x < 60 else "k")
  fig.colorbar(im, ax=ax, label="score")
  fig.tight_layout()
  with atomic.writing(path, suffix=".png") as tmp:
    fig.savefig(tmp, dpi=100)
  plt.close(fig)
