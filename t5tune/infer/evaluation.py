"""Evaluation of a model on seqio tasks: seqio's Evaluator applies each task's postprocessor and metrics.

    evaluator = evaluation.TaskEvaluator(["my_nli", "my_nli_fs3"], output_dir="runs/x/eval")
    results = evaluator.evaluate(model, step=1000)   # {task: {metric: value}}
    trainer.train(config, workdir, eval_fns=[evaluation.make_eval_fn(["my_nli"])])

What each example needs is decided per example by `t5tune.infer.judging`'s
rule (the one experiments share): one that carries answer options
(`options`, from the data layer) and whose template is not chain-of-thought
or inverted is rank-classified (every option scored as the target, the most
likely one is the prediction, as FLAN evaluates); every other example is
decoded (`t5tune.infer.decoding`). The predicted tokens go
through `seqio.Evaluator`, which decodes them with the task's vocabulary,
applies its `postprocess_fn` and its predict metrics; tasks with score metrics
get the log-likelihood of their targets. A task without metric functions is
an error (register it with e.g. `metric_fns=[t5tune.infer.metrics.accuracy]`).

Written under `output_dir`: `predictions/TASK.step_N.jsonl` (input, target,
prediction, score, method, options per example), `metrics.json` (the latest
evaluation), `metrics.jsonl` (every evaluation, one line per task) and
TensorBoard summaries under `tb/` (seqio's TensorBoardLogger, one run per task).

Clean-subset scores (FLAN's contamination analysis): with `clean_masks`
({task: one bool per example, True = clean}, from
`t5tune.quality.contamination.clean_mask`; the config's `contamination_train`
computes them) every predict metric is also reported on the clean examples
only, as `clean/METRIC`, with `clean_examples`.

Zero-shot and few-shot side by side: `eval_tasks.resolve_tasks` expands base
tasks (or clusters, from the tasks' `metadata["cluster"]`) into their variants
(`""`, `"fs3"`, ... registered with `t5tune.data.register_variants`), and
`side_by_side` prints one column per variant.
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Callable, Mapping, Sequence

from absl import logging
import jax
import ml_collections
import numpy as np

from t5tune import atomic
from t5tune.infer import api
from t5tune.infer import batching
from t5tune.infer import by_method
from t5tune.infer import decoding
from t5tune.infer import eval_tasks
from t5tune.infer import judging
from t5tune import jsonl_append
from t5tune import progress
from t5tune import ranges
from t5tune.infer import scoring

METRICS_FILE = "metrics.json"


def default_config() -> ml_collections.ConfigDict:
  """Keys of `t5tune evaluate --config=...` (also usable as an experiment's `evaluation` section)."""
  c = ml_collections.ConfigDict()
  c.modules = ()  # python modules imported first (they register tasks and mixtures)
  c.tasks = ()  # tasks or mixtures (a mixture means its tasks)
  c.clusters = ()  # held-out clusters: every base task whose metadata["cluster"] is listed
  c.variants = ("",)  # e.g. ("", "fs3"): each base task's variants, side by side
  c.split = "validation"
  c.inputs_length = 0  # 0: the longest example (nothing truncated); N: inputs cut to N tokens
  c.max_inputs_length = 512  # with inputs_length 0: a longer input is refused, naming its task
  c.truncate = False  # with inputs_length 0: cut inputs to max_inputs_length instead of refusing
  c.targets_length = 0
  c.num_examples = 0  # per task; 0 = all
  c.batch_size = 16
  c.rank_classification = True  # rank-classify examples with answer options
  c.length_normalize = False  # rank by per-token mean instead of sum
  # Prompt ensembling (t5tune.infer.ensemble): each task also under its first N answer-bearing
  # templates, alone and combined, reported beside the single-template scores; 0 = off.
  c.ensemble_templates = 0
  c.seed = 0  # sampling
  # Training tasks/mixtures: also score each task on its examples without an
  # n-gram overlap with them (clean/METRIC beside METRIC).
  c.contamination_train = ()
  c.contamination_ngram = 13
  c.mesh_shape = (-1, 1, 1)
  c.decoding = ml_collections.ConfigDict(
      {f: getattr(decoding.DecodeOptions(), f)
       for f in decoding.DecodeOptions.__dataclass_fields__})
  c.lock()
  return c


# Allowed ranges of the evaluation config's numbers (t5tune.ranges); the decoding section's are
# DecodeOptions' declarations. Checked by `validate`, before anything is read or written.
RANGES = {
    "inputs_length": "[0, inf)", "max_inputs_length": "[2, inf)", "targets_length": "[0, inf)",
    "num_examples": "[0, inf)", "batch_size": "[1, inf)", "ensemble_templates": "[0, inf)",
    "seed": decoding.SEED_RANGE, "contamination_ngram": "[1, inf)",
}


def validate(config: ml_collections.ConfigDict) -> None:
  """A UsageError naming the first config key whose number is out of its declared range."""
  for key, spec in RANGES.items():
    if key in config:
      ranges.check(f"config.{key}", config[key], spec)
  for key, value in config.decoding.to_dict().items():
    if key in decoding.DecodeOptions().numbers():
      ranges.check(f"config.decoding.{key}", value, ranges.of_field(decoding.DecodeOptions, key))


def decode_options(config: ml_collections.ConfigDict) -> decoding.DecodeOptions:
  """The `DecodeOptions` of an evaluation config's `decoding` section."""
  return decoding.DecodeOptions(**config.decoding.to_dict())


@dataclasses.dataclass
class Predictions:
  """One task's predictions, one entry per example in example order."""
  tokens: list[np.ndarray]  # int32, padded to one length (seqio's Evaluator wants that)
  scores: list[float]  # the chosen option's log-likelihood, or the decoding score
  methods: list[str]  # "rank_classification" or the decoding method
  texts: list[str]  # the predicted text (tokens up to EOS, detokenized)


def _examples(task_dataset) -> list[dict[str, Any]]:
  out = []
  for ex in task_dataset.as_numpy_iterator():
    text = lambda k: ex[k].decode("utf-8") if k in ex else ""
    options = [o.decode("utf-8") for o in ex.get("options", [])]
    kind = ex["template_kind"].decode("utf-8") if "template_kind" in ex else ""
    out.append({"input": text("inputs_pretokenized"), "target": text("targets_pretokenized"),
                "options": options, "template_kind": kind, "template": text("template_name")})
  return out


def _collect(model_dataset) -> tuple[list[int], dict[str, np.ndarray]]:
  indices, feats = [], {}
  for i, ex in model_dataset.as_numpy_iterator():
    indices.append(int(i))
    for k, v in ex.items():
      feats.setdefault(k, []).append(v)
  return indices, {k: np.stack(v) for k, v in feats.items()}


class TaskEvaluator:
  """Evaluates a model on tasks; datasets are read once and reused at every call."""

  def __init__(self, tasks: Sequence[str], *, split: str = "validation",
               feature_lengths: Mapping[str, int] | None = None, batch_size: int = 16,
               options: decoding.DecodeOptions = decoding.DecodeOptions(),
               rank_classification: bool = True, length_normalize: bool = False,
               num_examples: int | None = None, output_dir: str | None = None, seed: int = 0,
               clean_masks: Mapping[str, Sequence[bool]] | None = None):
    import seqio
    self.tasks = eval_tasks.expand_mixtures(tasks)
    self.batch_size = batch_size
    self.options = options
    self.rank_classification = rank_classification
    self.length_normalize = length_normalize
    self.seed = seed
    self.output_dir = output_dir
    self.clean_masks = dict(clean_masks or {})
    self._last_texts: dict[str, list[str]] = {}  # each task's predictions of the last evaluate()
    self.judged: dict[str, dict] = {}  # by_method.describe of each task in the last evaluate()
    for task in self.tasks:  # before anything is written
      eval_tasks.check_evaluable(task, split)
    loggers = ()
    tb_dir = None
    if output_dir:
      tb_dir = os.path.join(output_dir, "tb")
      os.makedirs(tb_dir, exist_ok=True)  # seqio's Evaluator needs it to exist
      os.makedirs(os.path.join(output_dir, "predictions"), exist_ok=True)
      if jax.process_index() == 0:
        loggers = (seqio.TensorBoardLogger,)
    lengths = {k: v for k, v in (feature_lengths or {}).items() if v}
    self._evaluators, self._examples = {}, {}
    for task in self.tasks:
      t = seqio.get_mixture_or_task(task)
      ev = seqio.Evaluator(
          task, feature_converter=seqio.EncDecFeatureConverter(pack=False), eval_split=split,
          sequence_length=lengths or None, num_examples=num_examples or None,
          logger_cls=loggers, log_dir=tb_dir, use_memory_cache=True,
          async_compute_metrics=False)
      self._evaluators[task] = ev
      self._examples[task] = _examples(ev.cached_task_datasets[task])

  # -- model calls --------------------------------------------------------------

  def _generate(self, model, enc: np.ndarray, example_ids: Sequence[int]):
    tokens, scores = [], []
    b = self.batch_size
    for start in range(0, len(example_ids), b):
      ids = list(example_ids[start:start + b])
      rows = batching.pad_rows(enc[ids], b)
      # Example i samples with row_key(seed, i), its index in the task, as in every command.
      keys = np.stack([decoding.row_key(self.seed, i) for i in ids + [0] * (b - len(ids))])
      out = decoding.decode(model, rows, self.options, rng=keys)
      tokens.extend(out.tokens[:len(ids)])
      scores.extend(out.scores[:len(ids)].tolist())
    return tokens, scores

  def _rank(self, model, vocab, enc: np.ndarray, examples, example_ids: Sequence[int]):
    width = max(len(examples[i]["options"]) for i in example_ids)
    tokens, scores = [], []
    b = self.batch_size
    for start in range(0, len(example_ids), b):
      ids = list(example_ids[start:start + b])
      opts = [examples[i]["options"] for i in ids]
      r = scoring.rank_classify(
          model, batching.pad_rows(enc[ids], b),
          api.option_tokens(vocab, opts, rows=b, width_options=width),
          length_normalize=self.length_normalize)
      for row, i in enumerate(ids):
        best = int(r.best[row])
        tokens.append(np.asarray(list(vocab.encode(opts[row][best])) + [vocab.eos_id]))
        scores.append(float(r.scores[row, best]))
    return tokens, scores

  def methods(self, task: str) -> list[str]:
    """Each example's method: "rank_classification" or the decoding method (`judging.methods`)."""
    from t5tune.data import tasks as tasks_lib
    try:
      metadata = tasks_lib.get_info(task).metadata
    except KeyError:
      metadata = None  # a plain seqio task
    return judging.methods(self._examples[task], self.options.method,
                           rank_classification=judging.task_ranks(metadata, self.rank_classification))

  def _predict(self, model, task: str, enc: np.ndarray) -> Predictions:
    import seqio
    vocab = seqio.get_mixture_or_task(task).output_features["targets"].vocabulary
    examples = self._examples[task]
    chosen = self.methods(task)
    ranked = [i for i, m in enumerate(chosen) if m == judging.RANK_CLASSIFICATION]
    generated = [i for i, m in enumerate(chosen) if m != judging.RANK_CLASSIFICATION]
    tokens: dict[int, np.ndarray] = {}
    scores: dict[int, float] = {}
    if ranked:
      t, s = self._rank(model, vocab, enc, examples, ranked)
      tokens.update(zip(ranked, t))
      scores.update(zip(ranked, s))
    if generated:
      t, s = self._generate(model, enc, generated)
      tokens.update(zip(generated, t))
      scores.update(zip(generated, s))
    # seqio's Evaluator wants token lists of one length.
    padded = list(batching.stack_rows([tokens[i] for i in range(len(examples))]))
    return Predictions(tokens=padded, scores=[scores[i] for i in range(len(examples))],
                       methods=chosen, texts=[api.decode_tokens(vocab, p) for p in padded])

  def _target_scores(self, model, feats):
    out = []
    b = self.batch_size
    n = feats["encoder_input_tokens"].shape[0]
    for start in range(0, n, b):
      enc = batching.pad_rows(feats["encoder_input_tokens"][start:start + b], b)
      tgt = batching.pad_rows(feats["decoder_target_tokens"][start:start + b], b)
      out.extend(scoring.score(model, enc, tgt).sum[:min(b, n - start)].tolist())
    return out

  # -- evaluation ----------------------------------------------------------------

  def evaluate(self, model, step: int = 0) -> dict[str, dict[str, float]]:
    """Runs every task; returns {task: {metric: value}} and writes the output files."""
    results = {}
    tasks_bar = progress.bar(total=len(self.tasks), desc=f"evaluate step {step}", unit="task")
    for task in self.tasks:
      tasks_bar.set_postfix_str(task, refresh=False)
      ev = self._evaluators[task]
      record: list[Predictions] = []  # filled by predict_fn, absent for score-only tasks

      def predict_fn(ds, model_feature_shapes=None, task=task, record=record):
        del model_feature_shapes
        indices, feats = _collect(ds)
        if indices != list(range(len(indices))):
          raise AssertionError("seqio's cached evaluation dataset is not in example order")
        predictions = self._predict(model, task, feats["encoder_input_tokens"])
        record.append(predictions)
        return list(zip(indices, [t.tolist() for t in predictions.tokens]))

      def score_fn(ds, model_feature_shapes=None):
        del model_feature_shapes
        indices, feats = _collect(ds)
        return list(zip(indices, self._target_scores(model, feats)))

      future, _ = ev.evaluate(compute_metrics=True, step=step, predict_fn=predict_fn,
                              score_fn=score_fn)
      metrics = future.result()[task]
      results[task] = {k: float(getattr(v, "value", v)) for k, v in metrics.items()}
      if record:
        self._last_texts[task] = record[0].texts
        results[task].update(self._by_method(task, record[0]))
      if task in self.clean_masks and record:
        results[task].update(self._clean_subset(task, record[0].texts))
      logging.info("step %d %s: %s", step, task, results[task])
      if self.output_dir and jax.process_index() == 0 and record:
        self._write_predictions(task, step, record[0])
      tasks_bar.update(1)
    tasks_bar.close()
    if self.output_dir and jax.process_index() == 0:
      self._write_metrics(step, results)
    return results

  def _by_method(self, task: str, predictions: Predictions) -> dict[str, float]:
    """classification/METRIC and generation/METRIC when the task holds both kinds (by_method)."""
    import seqio
    t = seqio.get_mixture_or_task(task)
    self.judged[task] = by_method.describe(t.predict_metric_fns, predictions.methods)
    return by_method.split(t.predict_metric_fns, t.postprocess_fn,
                           [ex["target"] for ex in self._examples[task]], predictions.texts,
                           predictions.methods)

  def _clean_subset(self, task: str, texts: Sequence[str]) -> dict[str, float]:
    """The task's predict metrics on its clean examples only (postprocessed as seqio does)."""
    import seqio
    t = seqio.get_mixture_or_task(task)
    mask = self.clean_masks[task]
    keep = [i for i in range(len(texts)) if i < len(mask) and mask[i]]
    out = {"clean_examples": float(len(keep))}
    if not keep:
      return out
    targets, preds = judging.postprocess(
        t.postprocess_fn, [self._examples[task][i]["target"] for i in keep], [texts[i] for i in keep])
    out.update({f"clean/{k}": v
                for k, v in judging.metrics(t.predict_metric_fns, targets, preds).items()})
    return out

  def per_example(self, task: str, metric: str = "") -> list[float]:
    """Each example's `metric` (default: the task's first) in the last evaluate(), in example order.

    For paired statistics over examples: the task's predict metrics on one
    example at a time (`judging.per_example`, the scorer experiments share).
    """
    import seqio
    t = seqio.get_mixture_or_task(task)
    if task not in self._last_texts:
      raise ValueError(f"task {task!r} has no predictions yet: call evaluate() first")
    targets, preds = judging.postprocess(
        t.postprocess_fn, [ex["target"] for ex in self._examples[task]], self._last_texts[task])
    return judging.per_example(t.predict_metric_fns, targets, preds, metric)

  def _write_predictions(self, task: str, step: int, predictions: Predictions) -> None:
    path = os.path.join(self.output_dir, "predictions", f"{task}.step_{step}.jsonl")
    with atomic.writing(path) as tmp, open(tmp, "w") as f:
      for i, ex in enumerate(self._examples[task]):
        line = {"index": i, "input": ex["input"], "target": ex["target"],
                "prediction": predictions.texts[i], "score": predictions.scores[i],
                "method": predictions.methods[i]}
        if ex["options"]:
          line["options"] = ex["options"]
        if ex["template"]:  # which template rendered the example (its name), for per-template analysis
          line["template"] = ex["template"]
        f.write(json.dumps(line, ensure_ascii=False) + "\n")

  def _write_metrics(self, step: int, results: Mapping[str, Mapping[str, float]]) -> None:
    path = os.path.join(self.output_dir, METRICS_FILE)
    document = {"step": step, "tasks": results}
    if getattr(self, "judged", None):  # how each task's examples were judged (by_method)
      document["judged"] = {t: self.judged[t] for t in results if t in self.judged}
    atomic.write_json(path, document, indent=2, sort_keys=True)
    # One write of whole lines: a kill leaves every earlier row and no torn one.
    rows = "".join(json.dumps({"step": step, "task": task, **values}) + "\n"
                   for task, values in results.items())
    jsonl = os.path.join(self.output_dir, "metrics.jsonl")
    lines = jsonl_append.drop_torn_tail(jsonl).splitlines(keepends=True)
    # A rerun of this step (`t5tune evaluate` into the same output): its rows replace the old
    # ones instead of joining them as duplicates.
    fresh = [line for line in lines if _step_and_task(line) not in {(step, t) for t in results}]
    if len(fresh) < len(lines):
      atomic.write_bytes(jsonl, b"".join(fresh))
    jsonl_append.append_lines(jsonl, [rows])


def _step_and_task(line: bytes) -> tuple[Any, Any]:
  try:
    row = json.loads(line)
  except ValueError:
    return None, None
  return (row.get("step"), row.get("task")) if isinstance(row, dict) else (None, None)


def side_by_side(results: Mapping[str, Mapping[str, float]],
                 resolved: Sequence[tuple[str, str, str]]) -> str:
  """A markdown table: one row per (base task, metric), one column per variant."""
  variants = list(dict.fromkeys(v for _, v, _ in resolved))
  bases = list(dict.fromkeys(b for b, _, _ in resolved))
  names = {(b, v): n for b, v, n in resolved}
  header = ["task", "metric"] + [v or "zero-shot" for v in variants]
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  for base in bases:
    metric_names = list(dict.fromkeys(
        m for v in variants for m in results.get(names.get((base, v), ""), {})))
    for metric in metric_names:
      cells = []
      for v in variants:
        value = results.get(names.get((base, v), ""), {}).get(metric)
        cells.append("" if value is None else f"{value:.2f}")
      lines.append("| " + " | ".join([base, metric] + cells) + " |")
  return "\n".join(lines)


def evaluator_from_config(config: ml_collections.ConfigDict,
                          output_dir: str | None = None) -> tuple[TaskEvaluator, list]:
  """The TaskEvaluator an evaluation config describes, and its resolved (base, variant, task)."""
  validate(config)
  resolved = eval_tasks.resolve_tasks(config.tasks, config.clusters, config.variants)
  from t5tune.data.collections import prepare  # pylint: disable=g-import-not-at-top
  prepare.check_tasks([name for _, _, name in resolved], reader="evaluation")  # before TFDS downloads
  inputs_length = config.inputs_length
  limit = config.get("max_inputs_length", 512)
  if not inputs_length and config.get("truncate", False):
    inputs_length = limit
  elif not inputs_length:  # the longest example, as long as it is within the limit
    for _, _, name in resolved:
      eval_tasks.check_input_lengths(name, config.split, limit)
  masks = None
  if config.contamination_train:
    from t5tune.quality import contamination
    from t5tune.data import tasks as tasks_lib
    masks = {name: contamination.clean_mask(name, config.split, list(config.contamination_train),
                                             n=config.contamination_ngram)
             for _, _, name in resolved if name in tasks_lib.task_names()}
  evaluator = TaskEvaluator(
      [name for _, _, name in resolved], split=config.split,
      feature_lengths={"inputs": inputs_length, "targets": config.targets_length},
      batch_size=config.batch_size, options=decode_options(config),
      rank_classification=config.rank_classification,
      length_normalize=config.length_normalize,
      num_examples=config.num_examples or None, output_dir=output_dir, seed=config.seed,
      clean_masks=masks)
  return evaluator, resolved


def make_eval_fn(tasks: Sequence[str], *, output_dir: str | None = None,
                 **kwargs: Any) -> Callable[[Any, int], dict[str, float]]:
  """`fn(model, step) -> {"TASK/METRIC": value}` for the trainer's periodic evaluation.

  `kwargs` are `TaskEvaluator` arguments (split, batch_size, options, ...).
  The datasets are read at the first call and kept.
  """
  holder: list[TaskEvaluator] = []

  def eval_fn(model, step: int) -> dict[str, float]:
    if not holder:
      holder.append(TaskEvaluator(tasks, output_dir=output_dir, **kwargs))
    results = holder[0].evaluate(model, step)
    return {f"{task}/{metric}": value
            for task, values in results.items() for metric, value in values.items()}

  return eval_fn
