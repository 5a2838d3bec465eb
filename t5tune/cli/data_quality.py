"""`t5tune data near-duplicates | contamination | label-issues | generate`: dataset quality with a model.

    t5tune data near-duplicates MIXTURE --module=my.tasks --threshold=0.8 --output=pairs.jsonl
    t5tune data contamination TRAIN_MIXTURE EVAL_MIXTURE --module=my.tasks --ngram=13 \\
        --output=overlaps.jsonl
    t5tune data label-issues TASK_OR_MIXTURE --module=my.tasks --checkpoint=runs/x/model \\
        --output=issues.jsonl                     # or --folds=5: train 5 folds with t5tune first
    t5tune data generate --checkpoint=runs/x/model --seed_tasks=seed.jsonl --num=500 \\
        --output=new.jsonl --temperature=0.7 --top_p=0.9

The quality tools (`t5tune.quality.neardup`, `contamination`, `label_issues`,
`generate`) does not import the model code; this module wires it to
t5tune's rank classification and scoring (`t5tune.infer.api.classify`,
`score`), its sampling decoder (`generate`) and its trainer (the
cross-validation folds of `label-issues`).
"""
from __future__ import annotations

import json
import os
import sys
from typing import Any, Sequence

from absl import flags

from t5tune import atomic
from t5tune import errors
from t5tune.cli import arguments

_THRESHOLD = flags.DEFINE_float("threshold", 0.8, "near-duplicates: shingle Jaccard threshold.", allow_override=True)
_NGRAM = flags.DEFINE_integer("ngram", 13, "contamination: n-gram length in words.", allow_override=True)
_MIN_NGRAM = flags.DEFINE_integer(
    "min_ngram", 8, "contamination: fields shorter than --ngram but at least this long are matched whole.", allow_override=True)
_TRAIN_SPLIT = flags.DEFINE_string("train_split", "train", "contamination: split of the training tasks.", allow_override=True)
_EVAL_SPLIT = flags.DEFINE_string("eval_split", "validation", "contamination: split of the evaluation tasks.", allow_override=True)
# One --output for every `t5tune data` sub-command (`data` reads it through OUTPUT);
# the old spellings --out (these commands) and --output_dir (report) still work.
OUTPUT = arguments.output_flag(
    "near-duplicates / contamination / label-issues / generate: output JSONL; report: output"
    " directory (default ./data_reports); train-vocab: output prefix (writes PREFIX.model).",
    old_names=("out", "output_dir"))
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "replace an existing --output instead of refusing.", allow_override=True)
_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "label-issues / generate: model directory (t5tune or HF).", allow_override=True)
_VOCABULARY = flags.DEFINE_string("vocabulary", None, "the model's vocabulary: 'byte' or an spm .model path.", allow_override=True)
_FOLDS = flags.DEFINE_integer(
    "folds", 0, "label-issues: train this many cross-validation folds with t5tune (0: score with --checkpoint).", allow_override=True)
_FOLD_STEPS = flags.DEFINE_integer("fold_steps", 300, "label-issues: training steps per fold.", allow_override=True)
_FOLD_BATCH = flags.DEFINE_integer("fold_batch_size", 32, "label-issues: batch size per fold.", allow_override=True)
_FOLD_LR = flags.DEFINE_float("fold_learning_rate", 3e-3, "label-issues: AdamW learning rate per fold.", allow_override=True)
_FOLD_PRESET = flags.DEFINE_string("fold_preset", "tiny", "label-issues: model preset when no --checkpoint.", allow_override=True)
_LOSS_TOP = flags.DEFINE_float(
    "loss_top", 0.05, "label-issues: share of highest-loss targets flagged in tasks without options.", allow_override=True)
_SEED_TASKS = flags.DEFINE_string("seed_tasks", None, "generate: JSONL of seed tasks (field 'instruction').", allow_override=True)
_NUM = flags.DEFINE_integer("num", 100, "generate: records to keep.", allow_override=True)
_K = flags.DEFINE_integer("k", 4, "generate: seed instructions shown per prompt.", allow_override=True)
_TEMPERATURE = flags.DEFINE_float("temperature", 0.7, "generate: sampling temperature.", allow_override=True)
_TOP_P = flags.DEFINE_float("top_p", 0.9, "generate: nucleus sampling threshold.", allow_override=True)
_MAX_DECODE = flags.DEFINE_integer("max_decode_len", 128, "generate: longest generation in tokens.", allow_override=True)
_PRESENCE = flags.DEFINE_float("presence_penalty", 0.0, "generate: minus p for a token emitted before (OpenAI's, in [-2, 2]; Self-Instruct used 2).", allow_override=True)
_FREQUENCY = flags.DEFINE_float("frequency_penalty", 0.0, "generate: minus f times a token's count so far (OpenAI's, in [-2, 2]).", allow_override=True)
_MIN_WORDS = flags.DEFINE_integer("min_words", 3, "generate: shortest valid instruction in words.", allow_override=True)
_MAX_WORDS = flags.DEFINE_integer("max_words", 150, "generate: longest valid instruction in words.", allow_override=True)
_SEED = flags.DEFINE_integer("seed", 0, "generate / label-issues: random seed.", allow_override=True)
_BATCH = flags.DEFINE_integer("batch_size", 16, "generate / label-issues: model batch size.", allow_override=True)

_NEAR = flags.DEFINE_float(
    "near_threshold", 0.8, "report: near-duplicate threshold on the train split (0: skip).", allow_override=True)
_CONT_EVAL = flags.DEFINE_string(
    "contamination_eval", None, "report: evaluation mixture to check the report's tasks against.", allow_override=True)
_LABEL_ISSUES = flags.DEFINE_string("label_issues", None, "report: a label-issues JSONL to count.", allow_override=True)

COMMANDS = ("near-duplicates", "contamination", "label-issues", "generate")

# The flags each of COMMANDS reads (see t5tune.cli.data.FLAGS_OF).
FLAGS_OF = {
    "near-duplicates": ("threshold", "split", "output", "out", "overwrite"),
    "contamination": ("ngram", "min_ngram", "train_split", "eval_split", "output", "out", "overwrite"),
    "label-issues": ("split", "output", "out", "overwrite", "checkpoint", "vocabulary", "folds",
                     "fold_steps", "fold_batch_size", "fold_learning_rate", "fold_preset",
                     "loss_top", "seed", "batch_size", "inputs_length", "targets_length"),
    "generate": ("output", "out", "overwrite", "checkpoint", "vocabulary", "seed_tasks", "num", "k",
                 "temperature", "top_p", "max_decode_len", "presence_penalty", "frequency_penalty",
                 "min_words", "max_words", "seed", "batch_size"),
}


def _output() -> str | None:
  return arguments.resolve_output("data", ("out",))


# -- the pieces that need a model (also called by tests and notebooks) --------------

def option_scores(model, items, *, vocabulary: Any = None, batch_size: int = 16,
                  max_input_len: int | None = None) -> list[list[float]]:
  """Log-likelihood of every option of every item: t5tune's rank classification."""
  from t5tune.infer import api  # pylint: disable=g-import-not-at-top
  if not items:
    return []
  result = api.classify(model, [i.inputs for i in items], [list(i.options) for i in items],
                        vocabulary=vocabulary, batch_size=batch_size, max_input_len=max_input_len)
  return result.scores


def target_losses(model, items, *, vocabulary: Any = None, batch_size: int = 16,
                  max_input_len: int | None = None) -> list[float]:
  """Per-token negative log-likelihood of every item's target (t5tune scoring)."""
  from t5tune.infer import api  # pylint: disable=g-import-not-at-top
  if not items:
    return []
  s = api.score(model, [i.inputs for i in items], [i.targets for i in items],
                vocabulary=vocabulary, batch_size=batch_size, max_input_len=max_input_len)
  return [-float(x) for x in s.mean]


def fold_config(*, steps: int, batch_size: int, learning_rate: float, inputs_length: int,
                targets_length: int, preset: str = "tiny", init_from: str = "", seed: int = 0,
                model_overrides: dict | None = None):
  """The experiment config one cross-validation fold trains with."""
  from t5tune.train import experiment  # pylint: disable=g-import-not-at-top
  c = experiment.default_config()
  c.seed = seed
  c.model.preset = preset
  c.init_from = init_from or ""
  for key, value in (model_overrides or {}).items():
    c.model.overrides[key] = value
  c.data.inputs_length, c.data.targets_length = inputs_length, targets_length
  c.data.batch_size = batch_size
  c.optimizer.name = "adamw"
  c.optimizer.learning_rate = learning_rate
  c.train.steps = steps
  c.train.log_every = max(1, steps)
  c.checkpoint.every = steps
  c.checkpoint.keep = 1
  c.checkpoint.async_save = False
  return c


def train_on_items(items, config, workdir: str, *, vocabulary: Any = "byte", mesh=None):
  """Trains a model with t5tune's trainer on items (inputs -> targets); returns the model."""
  from flax import nnx  # pylint: disable=g-import-not-at-top
  from t5tune import data  # pylint: disable=g-import-not-at-top
  from t5tune.train import trainer as trainer_lib  # pylint: disable=g-import-not-at-top
  name = "t5tune_fold_" + format(data.templates.stable_hash(os.path.abspath(workdir)), "x")[:12]
  rows = [{"inputs": i.inputs, "targets": i.targets} for i in items]
  data.register_task(
      name, source=data.sources.function({"train": lambda: rows}), fields=["inputs", "targets"],
      templates=[data.Template("as_is", "{inputs}", "{targets}")], vocabulary=vocabulary,
      dedup=None, overwrite=True)
  config.data.mixture = name
  trainer = trainer_lib.Trainer(config, workdir, mesh=mesh)
  result = trainer.run()
  return nnx.merge(trainer.graphdef, result.state["params"])


def crossval_option_scores(items, folds: int, config, workdir: str, *, vocabulary: Any = None,
                           batch_size: int = 16, mesh=None) -> list[list[float]]:
  """Out-of-sample option scores: fold f is scored by a model trained on the other folds."""
  from t5tune.data import templates  # pylint: disable=g-import-not-at-top
  if folds < 2:
    raise errors.UsageError(f"--folds={folds}: cross-validation needs at least 2 folds",
                            fix="pass --folds=5, or --folds=0 with --checkpoint")
  fold_of = [templates.stable_hash("fold", i.task, i.record) % folds for i in items]
  scores: list[list[float] | None] = [None] * len(items)
  for f in range(folds):
    train = [it for it, k in zip(items, fold_of) if k != f]
    held = [i for i, k in enumerate(fold_of) if k == f]
    if not held:
      continue
    model = train_on_items(train, config.copy_and_resolve_references(),
                           os.path.join(workdir, f"fold_{f}"), vocabulary=vocabulary or "byte",
                           mesh=mesh)
    for i, s in zip(held, option_scores(model, [items[i] for i in held], vocabulary=vocabulary,
                                        batch_size=batch_size)):
      scores[i] = s
  return scores


# -- commands -------------------------------------------------------------------------

def _check_out(path: str | None, flag: str = "--output") -> str | None:
  if path is None:
    return None
  parent = os.path.dirname(os.path.abspath(path))
  if not os.path.isdir(parent):
    raise errors.OutputNotWritableError("the output's directory does not exist", where=path,
                                        fix=f"create {parent} or choose another {flag}")
  if os.path.exists(path) and not _OVERWRITE.value:
    raise errors.OutputExistsError("the output exists", where=path,
                                   fix="choose another --output or pass --overwrite")
  return path


def report_options() -> dict[str, Any]:
  """The quality-section arguments of `t5tune data report` (`report.build(**...)`)."""
  return {"near_threshold": _NEAR.value or None, "contamination_eval": _CONT_EVAL.value,
          "eval_split": _EVAL_SPLIT.value, "ngram": _NGRAM.value,
          "label_issues_path": _LABEL_ISSUES.value}


def check_outputs(command: str) -> None:
  """Refuses an existing --output (unless --overwrite) before any work; generate resumes instead.

  A --threshold out of range is refused here too, before the tasks are read.
  """
  if command == "near-duplicates":
    from t5tune.data import cleaning  # pylint: disable=g-import-not-at-top
    cleaning.check_threshold(_THRESHOLD.value)
  if command == "label-issues":
    _check_out(_output() or "label_issues.jsonl")
  elif command != "generate":
    _check_out(_output())


def _write_lines(path: str, lines) -> int:
  text = [json.dumps(line, ensure_ascii=False) + "\n" for line in lines]
  atomic.write_text(path, "".join(text))
  return len(text)


def _near_duplicates(name: str, split: str):
  from t5tune.quality import contamination  # pylint: disable=g-import-not-at-top
  from t5tune.quality import neardup  # pylint: disable=g-import-not-at-top
  out = _check_out(_output())
  records = contamination.task_records([name], split)
  result = neardup.mixture_pairs(records, _THRESHOLD.value, max_pairs=sys.maxsize)
  print(f"near-duplicates of {name} [{split}] at shingle Jaccard >= {_THRESHOLD.value}")
  for task, w in result["within"].items():
    print(f"  {task}: {w['pairs']} pairs within ({w['records_involved']} records)")
  print(f"  across tasks: {result['across']['pairs']} pairs")
  for pair, n in list(result["across"]["by_task_pair"].items())[:20]:
    print(f"    {pair.replace('|', ' ~ ')}: {n}")
  if out:
    print(f"wrote {_write_lines(out, result['examples'])} pairs to {out}")


def _contamination(train: str, evaluation: str):
  from t5tune.quality import contamination  # pylint: disable=g-import-not-at-top
  out = _check_out(_output())
  eval_sets = contamination.task_records([evaluation], _EVAL_SPLIT.value)
  train_sets = contamination.task_records([train], _TRAIN_SPLIT.value)
  if not eval_sets or not train_sets:
    raise errors.UsageError(
        f"no t5tune task of {evaluation!r} has split {_EVAL_SPLIT.value!r}" if not eval_sets else
        f"no t5tune task of {train!r} has split {_TRAIN_SPLIT.value!r}",
        fix="check --eval_split / --train_split")
  result = contamination.find(eval_sets, train_sets, _NGRAM.value, _MIN_NGRAM.value)
  summary = result.summary()
  print(f"contamination: {evaluation} [{_EVAL_SPLIT.value}] vs {train} [{_TRAIN_SPLIT.value}],"
        f" {result.n}-grams (whole fields of {result.min_n}+ words)")
  for task, s in summary["tasks"].items():
    top = ", ".join(f"{t} {n}" for t, n in sorted(s["by_train_task"].items(), key=lambda x: -x[1])[:3])
    print(f"  {task}: {s['contaminated']}/{s['records']} = {100 * s['rate']:.1f}%"
          f" (checkable {s['checked']})" + (f"  by {top}" if top else ""))
  print(f"  total: {summary['contaminated']}/{summary['records']} evaluation records overlap")
  if out:
    n = _write_lines(out, contamination.overlap_lines(result, eval_sets, train_sets))
    print(f"wrote {n} overlaps to {out}")


def _label_issues(name: str, split: str):
  from t5tune.quality import contamination  # pylint: disable=g-import-not-at-top
  from t5tune.quality import label_issues  # pylint: disable=g-import-not-at-top
  out = _check_out(_output() or "label_issues.jsonl")
  if not _CHECKPOINT.value and _FOLDS.value < 2:
    raise errors.UsageError("label-issues needs a model", fix="pass --checkpoint=DIR or --folds=K (K >= 2)")
  tasks = list(contamination.task_records([name], split))
  items = [it for t in tasks for it in label_issues.classification_items(t, split)]
  ranked_tasks = {it.task for it in items}
  gen_items = [it for t in tasks if t not in ranked_tasks
               for it in label_issues.generation_items(t, split)]
  model = None
  if _CHECKPOINT.value:
    import t5tune  # pylint: disable=g-import-not-at-top
    model = t5tune.load_model(_CHECKPOINT.value)
  rows = []
  if items:
    if _FOLDS.value >= 2:
      flag = flags.FLAGS
      config = fold_config(steps=_FOLD_STEPS.value, batch_size=_FOLD_BATCH.value,
                           learning_rate=_FOLD_LR.value, inputs_length=flag.inputs_length,
                           targets_length=flag.targets_length, preset=_FOLD_PRESET.value,
                           init_from=_CHECKPOINT.value or "", seed=_SEED.value)
      scores = crossval_option_scores(items, _FOLDS.value, config, out + ".folds",
                                      vocabulary=_VOCABULARY.value, batch_size=_BATCH.value)
    else:
      scores = option_scores(model, items, vocabulary=_VOCABULARY.value, batch_size=_BATCH.value)
    rows += label_issues.rank(items, scores)
  if gen_items and model is None:
    print(f"  {len(gen_items)} examples without options not scored: the loss filter needs"
          " --checkpoint")
  if gen_items and model is not None:
    losses = target_losses(model, gen_items, vocabulary=_VOCABULARY.value, batch_size=_BATCH.value)
    rows += label_issues.loss_outliers(gen_items, losses, top_fraction=_LOSS_TOP.value)
  n = label_issues.write_jsonl(rows, out)
  for task, c in sorted(label_issues.counts(rows).items()):
    print(f"  {task}: {c['issues']} suspected of {c['scored']} scored")
  print(f"wrote {n} suspected label issues to {out}, most suspicious first")


def generate_file(model, checkpoint: str, seed_tasks: str, out: str, *, num: int, seed: int = 0,
                  k: int = 4, batch_size: int = 16, temperature: float = 0.7, top_p: float = 0.9,
                  max_decode_len: int = 128, vocabulary: str | None = None, min_words: int = 3,
                  max_words: int = 150, overwrite: bool = False, on_batch=None,
                  presence_penalty: float = 0.0, frequency_penalty: float = 0.0) -> dict:
  """`t5tune.quality.generate.run` with t5tune's sampling decoder; the settings go in every record."""
  from t5tune.quality import generate  # pylint: disable=g-import-not-at-top
  seeds = generate.seed_instructions(seed_tasks)
  settings = generate.Settings(num=num, seed=seed, k=k, batch_size=batch_size,
                               min_words=min_words, max_words=max_words)
  generator = {"checkpoint": os.path.abspath(checkpoint), "method": "sample",
               "temperature": temperature, "top_p": top_p, "max_decode_len": max_decode_len,
               "vocabulary": vocabulary or "auto"}
  # Only penalties that are on join the record, so an output from before they existed resumes.
  penalties = {k: v for k, v in (("presence_penalty", presence_penalty),
                                 ("frequency_penalty", frequency_penalty)) if v}
  generator.update(penalties)
  return generate.run(lambda prompts, rng: sample_texts(
      model, prompts, rng, vocabulary=vocabulary, temperature=temperature, top_p=top_p,
      max_decode_len=max_decode_len, batch_size=batch_size, **penalties),
      seeds, out, settings, generator=generator, overwrite=overwrite, on_batch=on_batch)


def _generate():
  if not (_CHECKPOINT.value and _SEED_TASKS.value and _output()):
    raise errors.UsageError("generate needs --checkpoint, --seed_tasks and --output")
  arguments.decode_options("data generate", method="sample", temperature=_TEMPERATURE.value,
                        top_p=_TOP_P.value, max_decode_len=_MAX_DECODE.value,
                        presence_penalty=_PRESENCE.value, frequency_penalty=_FREQUENCY.value)
  import t5tune  # pylint: disable=g-import-not-at-top
  model = t5tune.load_model(_CHECKPOINT.value)
  stats = generate_file(
      model, _CHECKPOINT.value, _SEED_TASKS.value, _output(), num=_NUM.value, seed=_SEED.value,
      k=_K.value, batch_size=_BATCH.value, temperature=_TEMPERATURE.value, top_p=_TOP_P.value,
      max_decode_len=_MAX_DECODE.value, vocabulary=_VOCABULARY.value,
      presence_penalty=_PRESENCE.value, frequency_penalty=_FREQUENCY.value,
      min_words=_MIN_WORDS.value, max_words=_MAX_WORDS.value, overwrite=_OVERWRITE.value,
      on_batch=lambda p: print(f"  attempts {p['attempts']}  kept {p['records']}", flush=True))
  print(f"{stats['records']} records in {_output()} after {stats['attempts']} attempts;"
        f" {stats['counts']}")


def sample_texts(model, prompts: Sequence[str], seed: int, *, vocabulary=None, temperature=0.7,
                 top_p=0.9, max_decode_len=128, batch_size=16, **penalties) -> list[str]:
  """t5tune's sampling decoder on strings (the generate_fn of `t5tune.quality.generate`).

  `penalties`: `presence_penalty`, `frequency_penalty` (t5tune.infer.penalties).
  """
  from t5tune.infer import api  # pylint: disable=g-import-not-at-top
  return api.generate(model, list(prompts), method="sample", temperature=temperature, top_p=top_p,
                      max_decode_len=max_decode_len, vocabulary=vocabulary,
                      batch_size=batch_size, rng=seed, **penalties)


def main(command: str, args: Sequence[str]) -> None:
  """Runs one of COMMANDS with its positional arguments (flags are parsed already)."""
  split = flags.FLAGS.split
  if command == "near-duplicates" and len(args) == 1:
    _near_duplicates(args[0], split)
  elif command == "contamination" and len(args) == 2:
    _contamination(args[0], args[1])
  elif command == "label-issues" and len(args) == 1:
    _label_issues(args[0], split)
  elif command == "generate" and not args:
    _generate()
  else:
    raise errors.UsageError(
        f"t5tune data {command}: wrong arguments {list(args)}",
        fix="usage: near-duplicates NAME | contamination TRAIN EVAL | label-issues NAME | generate")
