"""Who trains and who is evaluated when a cluster is held out (FLAN's exclusions, as facts).

For a held-out cluster C (Wei et al., 2021, section 2.3 and appendix):

  training    every dataset with a train split whose cluster is neither C nor
              a cluster RELATED to C (reading comprehension and commonsense <->
              reading comprehension with commonsense, paraphrase <-> NLI), and
              that does not OVERLAP a dataset of C (its training data shares a
              source with C's test data, see `Overlap`).
  evaluation  C's datasets on their test split, in two variants:
                rank      `EVAL_RANK`: the non-inverted templates; an example with
                          options is rank-classified (every option scored,
                          `t5tune.infer.judging` decides per example), others decoded.
                generate  `EVAL_GENERATE`: the answer is decoded; a dataset with
                          options shows them (its options templates), so a
                          decoded answer can be one of them.
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

from t5tune.data import templates as templates_lib

# FLAN's exclusions: holding out one cluster of a pair also drops the other from training.
RELATED_CLUSTERS = (
    ("reading_comprehension", "reading_comprehension_commonsense"),
    ("commonsense", "reading_comprehension_commonsense"),
    ("paraphrase", "nli"),
)

# The evaluation variants; a task's metadata["evaluation"] tells the evaluator which
# (`t5tune.infer.judging.task_ranks`).
EVAL_RANK, EVAL_GENERATE = "eval_rank", "eval_gen"
EVALUATION = {EVAL_RANK: "rank_classification", EVAL_GENERATE: "generate"}
TEMPLATE_COUNTS_ALL = 10


@dataclasses.dataclass(frozen=True)
class Overlap:
  """A fact: `dataset`'s data shares a source with each of `overlaps` (so one trains on the other's test)."""
  dataset: str
  overlaps: tuple[str, ...]
  reason: str


def related(cluster: str) -> set[str]:
  """The clusters FLAN also leaves out of training when `cluster` is held out."""
  out = set()
  for a, b in RELATED_CLUSTERS:
    if cluster == a:
      out.add(b)
    elif cluster == b:
      out.add(a)
  return out


def training_clusters(clusters: Sequence[str], held_out: str) -> list[str]:
  """The clusters a model held out on `held_out` trains on (FLAN's exclusions applied)."""
  if held_out not in clusters:
    raise ValueError(f"cluster {held_out!r} is not one of {list(clusters)}")
  drop = {held_out} | related(held_out)
  return [c for c in clusters if c not in drop]


def overlapping(name: str, overlaps: Sequence[Overlap]) -> set[str]:
  """The datasets whose data shares a source with `name` (the relation is symmetric)."""
  out = set()
  for o in overlaps:
    if o.dataset == name:
      out.update(o.overlaps)
    elif name in o.overlaps:
      out.add(o.dataset)
  return out


def training_datasets(specs, clusters: Sequence[str], held_out: str,
                      overlaps: Sequence[Overlap] = ()) -> list:
  """The specs a model held out on `held_out` trains on: clusters kept, overlaps with C's datasets dropped."""
  keep = set(training_clusters(clusters, held_out))
  evaluated = {s.name for s in specs if s.cluster == held_out}
  touching = set().union(*[overlapping(n, overlaps) for n in evaluated]) if evaluated else set()
  return [s for s in specs if s.cluster in keep and s.has_train and s.name not in touching]


def check_overlaps(specs, overlaps: Sequence[Overlap]) -> None:
  """Every overlap names datasets of the collection (a typo would silently exclude nothing)."""
  names = {s.name for s in specs}
  for o in overlaps:
    unknown = [n for n in (o.dataset,) + tuple(o.overlaps) if n not in names]
    if unknown:
      raise ValueError(f"overlap of {o.dataset!r} names datasets not in the collection: {unknown}")


def heldout_names(collection: str, cluster: str, templates: int | None = None,
                  suffix: str = "") -> tuple[str, str]:
  """(training mixture, evaluation mixture) names for a held-out cluster.

  `templates`: the template-count variant of the training mixture (None or
  the full count: none); `suffix`: a training format (e.g. "f22") or an
  evaluation variant (`EVAL_RANK`, `EVAL_GENERATE`). Without a suffix the
  evaluation mixture `..._eval` holds the cluster's plain tasks (all
  templates, every carved split: for `data report`, not a held-out score).
  """
  k = f"_t{templates}" if templates is not None and templates != TEMPLATE_COUNTS_ALL else ""
  extra = f"_{suffix}" if suffix else ""
  eval_extra = f"_{suffix.removeprefix('eval_')}" if suffix else ""  # eval_rank -> ..._eval_rank
  return (f"{collection}_heldout_{cluster}_train{k}{extra}",
          f"{collection}_heldout_{cluster}_eval{eval_extra}")


def evaluation_templates(spec, variant: str) -> tuple:
  """The templates an evaluation variant renders a dataset with (see the module docstring)."""
  if variant not in EVALUATION:
    raise ValueError(f"evaluation variant {variant!r} is not one of {tuple(EVALUATION)}")
  plain = tuple(t for t in spec.templates if t.kind != templates_lib.INVERTED)
  if variant == EVAL_GENERATE:
    shown = tuple(t for t in plain if "{" + templates_lib.OPTIONS_PLACEHOLDER + "}" in t.inputs)
    return shown or plain
  return plain


def evaluation_split(carved: dict) -> str:
  """The carved split a dataset is evaluated on: test, or validation when it has no test."""
  return "test" if "test" in carved else "validation"
