"""Prompt ensembling: each example asked under several templates of its task, the answers combined.

    result = ensemble.evaluate(model, "flan2021_rte", split="test", num_templates=4)
    result.single   # {template name: {metric: value}}  each template on its own
    result.ensemble  # {metric: value}                   the combination

How an example is answered is `t5tune.infer.judging`'s rule, per task: one
with options (and a task that allows ranking) is rank-classified under every
template, and the ensemble's choice is the option with the highest *mean*
log-likelihood over the templates (`combine_scores`); otherwise each template's
input is decoded and the ensemble's answer is the most frequent output, ties
going to the earliest template (`vote`). Only templates whose targets are the
answer take part (not inverted or chain-of-thought ones). The task's
postprocessor and metric functions score single templates and ensemble alike.
"""
from __future__ import annotations

import collections
import dataclasses
from typing import Any, Mapping, Sequence

import numpy as np

from t5tune import ranges
from t5tune.infer import api
from t5tune.infer import judging


@dataclasses.dataclass
class EnsembleResult:
  """A task's scores per template (`single`) and combined (`ensemble`), with how it was judged."""
  templates: list[str]
  method: str  # judging.RANK_CLASSIFICATION or the decoding method
  single: dict[str, dict[str, float]]
  ensemble: dict[str, float]
  predictions: list[Any]  # the ensemble's, one per example


def combine_scores(per_template: Sequence[Sequence[Sequence[float]]]) -> tuple[np.ndarray, np.ndarray]:
  """(`[example]` best option, `[example, option]` mean score) from `[template][example][option]` log-likelihoods."""
  mean = np.mean(np.asarray(per_template, dtype=np.float64), axis=0)
  return mean.argmax(axis=-1), mean


def vote(per_template: Sequence[Sequence[str]]) -> list[str]:
  """Per example, the most frequent output over templates (ties: the earliest template's)."""
  out = []
  for outputs in zip(*per_template):
    counts = collections.Counter(outputs)
    top = max(counts.values())
    out.append(next(o for o in outputs if counts[o] == top))
  return out


def renderings(task: str, split: str, num_templates: int | None = None,
               num_examples: int | None = None) -> tuple[list, list[dict[str, Any]], list[list[tuple[str, str]]]]:
  """(templates, records, `[template][example]` (inputs, targets)) of a t5tune task, every template per record."""
  from t5tune.data import tasks as tasks_lib  # pylint: disable=g-import-not-at-top
  from t5tune.data import templates as templates_lib  # pylint: disable=g-import-not-at-top
  source = tasks_lib.get_info(task, tasks_lib.INSTRUCTION).source
  ranges.check("num_templates", num_templates, "[1, inf)")  # None: all; -1 once dropped the last
  chosen = [t for t in source.templates if t.kind not in judging.NOT_RANKED_KINDS][:num_templates]
  if not chosen:
    raise ValueError(f"task {task!r} has no template whose targets are the answer to ensemble")
  records = source.records(split)[0][:num_examples]
  rendered = [[templates_lib.render(t, r, source.spec.options_style) for r in records] for t in chosen]
  return chosen, records, rendered


def evaluate(model, task: str, split: str = "validation", *, num_templates: int | None = None,
             num_examples: int | None = None, vocabulary: Any = None, batch_size: int = 16,
             rank_classification: bool = True, max_decode_len: int = 64,
             length_normalize: bool = False) -> EnsembleResult:
  """Every template of `task` on `split`, alone and ensembled, scored by the task's metrics."""
  import seqio  # pylint: disable=g-import-not-at-top
  from t5tune.data import tasks as tasks_lib  # pylint: disable=g-import-not-at-top
  seqio_task = seqio.get_mixture_or_task(task)
  if vocabulary is None:
    vocabulary = seqio_task.output_features["inputs"].vocabulary
  chosen, records, rendered = renderings(task, split, num_templates, num_examples)
  options = [list(r.get("options") or []) for r in records]
  ranks = judging.task_ranks(tasks_lib.get_info(task).metadata, rank_classification) and all(options)
  targets = [t for _, t in rendered[0]]
  per_template: list[list[str]] = []
  if ranks:
    scores = []
    from t5tune.data import templates as templates_lib  # pylint: disable=g-import-not-at-top
    # Each template's options read as its targets do (after the sentinel for infilling ones).
    options_of = lambda t: [[templates_lib.infill_target(t, o) for o in opts] for opts in options]
    for template, rows in zip(chosen, rendered):
      c = api.classify(model, [i for i, _ in rows], options_of(template), vocabulary=vocabulary,
                       batch_size=batch_size, length_normalize=length_normalize)
      scores.append(c.scores)  # summed log-likelihoods (length_normalize only picks the single winner)
      per_template.append(c.predictions)
    width = max(len(o) for o in options)
    padded = [[s + [-np.inf] * (width - len(s)) for s in per_example] for per_example in scores]
    best, _ = combine_scores(padded)
    predictions = [options_of(chosen[0])[i][int(b)] for i, b in enumerate(best)]
    method = judging.RANK_CLASSIFICATION
  else:
    for rows in rendered:
      per_template.append(api.generate(model, [i for i, _ in rows], vocabulary=vocabulary,
                                       batch_size=batch_size, max_decode_len=max_decode_len))
    predictions = vote(per_template)
    method = "greedy"

  def score(preds):
    t, p = judging.postprocess(seqio_task.postprocess_fn, targets, preds)
    return judging.metrics(seqio_task.metric_fns, t, p)

  return EnsembleResult(templates=[t.name for t in chosen], method=method,
                        single={t.name: score(p) for t, p in zip(chosen, per_template)},
                        ensemble=score(predictions), predictions=predictions)


def table(results: Mapping[str, EnsembleResult]) -> str:
  """A markdown table: per task, each template's first metric, their mean and the ensemble's."""
  lines = ["| task | method | templates | single (mean) | best single | ensemble |", "|---|---|---|---|---|---|"]
  for task, r in results.items():
    metric = next(iter(r.ensemble))
    singles = [s[metric] for s in r.single.values()]
    lines.append(f"| {task} | {r.method} | {len(singles)} | {np.mean(singles):.4f} |"
                 f" {max(singles):.4f} | {r.ensemble[metric]:.4f} ({metric}) |")
  return "\n".join(lines)
