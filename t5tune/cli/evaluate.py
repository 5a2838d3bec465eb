"""`t5tune evaluate`: a checkpoint on tasks, mixtures or held-out clusters, zero- and few-shot side by side.

    t5tune evaluate --config=configs/experiments/flan_mini.py \\
        --checkpoint=runs/flan_mini/checkpoints/2000 --tasks=my_nli,my_qa
    t5tune evaluate --config=my_eval.py --checkpoint=flan-t5-small/ \\
        --config.variants='("", "fs3")' --config.clusters='("nli",)'

--config is a file whose `get_config()` returns `t5tune.infer.evaluation.
default_config()` with changes, or an experiment config with an `evaluation`
section of that form (its `data.modules` are imported too). --checkpoint is a
t5tune model directory, a training checkpoint step, a training checkpoints/
directory (its latest step), or a Hugging Face T5 directory. Writes
predictions JSONL, metrics.json, metrics.jsonl, TensorBoard summaries and
summary.md (the side-by-side table) into --output (the old spelling
--output_dir is still accepted). By default a training run's checkpoint step
WORKDIR/checkpoints/N writes to WORKDIR/eval/N, beside the checkpoints and not
inside them (orbax deletes a step directory, and whatever it holds, when the
step falls out of `checkpoint.keep` as the run goes on); any other model
directory writes to MODEL_DIR/eval.
"""
import json
import os

from absl import flags
from ml_collections import config_flags

from t5tune import atomic
from t5tune import errors
from t5tune.cli import arguments
from t5tune.cli import common

_CONFIG = config_flags.DEFINE_config_file("config", None, "Evaluation (or experiment) config file.",
                                          allow_override=True)
_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "Model directory (see the module docstring).", allow_override=True)
_TASKS = flags.DEFINE_list("tasks", None, "Tasks or mixtures; replaces the config's tasks.", allow_override=True)
_OUTPUT = arguments.output_flag("Directory the outputs go to (default WORKDIR/eval/N for a checkpoint"
                             " step WORKDIR/checkpoints/N, else MODEL_DIR/eval).",
                             old_names=("output_dir",))
_MODULES = flags.DEFINE_multi_string("module", [], "Extra Python modules that register tasks.", allow_override=True)
_TRUNCATE = flags.DEFINE_bool("truncate", False, "Cut inputs longer than the config's max_inputs_length (512) instead of refusing the task.", allow_override=True)


def evaluation_config(config):
  """The evaluation section of a config, and the modules to import for its tasks.

  A training experiment config without an `evaluation` section evaluates its
  mixture's tasks on its eval split with the default evaluation settings.
  """
  modules = []
  if "evaluation" in config:
    modules = list(config.data.modules) if "data" in config else []
    config = config.evaluation
  elif "data" in config and "modules" not in config:
    from t5tune.infer import evaluation
    modules = list(config.data.modules)
    section = evaluation.default_config()
    with section.unlocked():
      section.tasks = (config.data.mixture,) if config.data.mixture else ()
      section.split = config.data.eval_split
    config = section
  return config, modules + list(config.modules)


def default_output(model_dir: str, step: int) -> str:
  """Where the outputs go without --output (see the module docstring): never inside a checkpoint step."""
  parent = os.path.dirname(os.path.normpath(os.path.abspath(model_dir)))
  if os.path.basename(parent) == "checkpoints" and os.path.basename(os.path.normpath(model_dir)).isdigit():
    return os.path.join(os.path.dirname(parent), "eval", str(step))
  return os.path.join(model_dir, "eval")


def _check_vocabulary(config, model_dir: str) -> None:
  """The tasks tokenise with the vocabulary the model directory carries (its spiece.model), if
  it carries one: checked before anything is read or written."""
  import seqio  # pylint: disable=g-import-not-at-top
  from t5tune.data import vocab  # pylint: disable=g-import-not-at-top
  from t5tune.infer import eval_tasks  # pylint: disable=g-import-not-at-top
  for _, _, name in eval_tasks.resolve_tasks(config.tasks, config.clusters, config.variants):
    for feature in seqio.get_mixture_or_task(name).output_features.values():
      vocab.check_agrees_with_model_dir(name, feature.vocabulary, model_dir, where="--checkpoint")


def run(config, checkpoint: str, output_dir: str | None = None, tasks=None, modules=(),
        truncate: bool = False):
  """Evaluates; returns ({task: {metric: value}}, side-by-side markdown table)."""
  from t5tune import sharding
  from t5tune.convert import loading
  from t5tune.infer import by_method
  from t5tune.infer import evaluation
  if not os.path.isdir(checkpoint):  # before any dataset is read
    raise errors.InputError("no such model directory", where=f"--checkpoint={checkpoint}",
                            fix="give a t5tune model dir, a checkpoint step, a checkpoints/ dir"
                            " or a Hugging Face T5 dir")
  config, config_modules = evaluation_config(config)
  common.import_modules(config_modules, where="--config (data.modules / modules)")
  common.import_modules(modules)
  if tasks or truncate:
    with config.unlocked():
      config.tasks = tuple(tasks) if tasks else config.tasks
      config.truncate = truncate or config.get("truncate", False)
  from t5tune.convert import model_dir as model_dir_lib
  model_dir, step = model_dir_lib.resolve_step(checkpoint)
  _check_vocabulary(config, model_dir)
  output_dir = output_dir or default_output(model_dir, step)
  with atomic.output(output_dir):  # a failed evaluation leaves no part of its outputs
    evaluator, resolved = evaluation.evaluator_from_config(config, output_dir)
    mesh = sharding.make_mesh(config.mesh_shape)
    model = loading.load_model(model_dir, mesh, dropout_rate=0.0)
    from t5tune.data import vocab  # pylint: disable=g-import-not-at-top
    vocab.check_tasks_fit([name for _, _, name in resolved], model.config.vocab_size, "--tasks")
    results = evaluator.evaluate(model, step=step)
    table = evaluation.side_by_side(results, resolved)
    from t5tune.data import tasks as tasks_lib  # pylint: disable=g-import-not-at-top
    from t5tune.infer import cluster_means  # pylint: disable=g-import-not-at-top
    ours = set(tasks_lib.task_names())
    clusters = cluster_means.table(results, resolved, {
        name: tasks_lib.get_info(name).metadata for _, _, name in resolved if name in ours})
    if clusters:  # FLAN reports held-out clusters by these means
      table += "\n\n" + clusters
    if config.get("ensemble_templates", 0):
      table += "\n\n" + _ensembles(config, model, [name for _, _, name in resolved], output_dir)
    elif os.path.exists(os.path.join(output_dir, "ensemble.json")):
      os.remove(os.path.join(output_dir, "ensemble.json"))  # an earlier run's, not this one's
    if evaluator.judged:  # which method and metric judged each kind of example (docs/evaluation.md)
      table += "\n\nHow each task's examples were judged:\n" + "\n".join(
          by_method.summary_lines(evaluator.judged))
    atomic.write_text(os.path.join(output_dir, "summary.md"),
                      f"checkpoint: {model_dir} (step {step})\n\n{table}\n")
  return results, table


def _ensembles(config, model, names, output_dir: str) -> str:
  """Prompt ensembles of the evaluated t5tune tasks: ensemble.json and a table beside the scores."""
  import dataclasses
  from t5tune.data import tasks as tasks_lib
  from t5tune.infer import ensemble
  ours = set(tasks_lib.task_names(lambda info: info.kind == tasks_lib.INSTRUCTION))
  results, skipped = {}, []
  for name in names:
    if name not in ours or tasks_lib.get_info(name).source.spec.formats is not None:
      skipped.append(name)  # plain seqio tasks, and Flan 2022 formats (their templates are not
      continue  # the whole prompt): named under the table, not left out silently
    results[name] = ensemble.evaluate(
        model, name, config.split, num_templates=config.ensemble_templates,
        num_examples=config.num_examples or None, batch_size=config.batch_size,
        rank_classification=config.rank_classification,
        max_decode_len=config.decoding.max_decode_len, length_normalize=config.length_normalize)
  atomic.write_text(os.path.join(output_dir, "ensemble.json"), json.dumps(
      {k: {f: v for f, v in dataclasses.asdict(r).items() if f != "predictions"}
       for k, r in results.items()}, indent=1))
  note = (f"\n\nnot ensembled (not a t5tune task, or Flan 2022 formats): {', '.join(skipped)}"
          if skipped else "")
  return "prompt ensembles:\n\n" + ensemble.table(results) + note


def main(argv):
  arguments.no_extra_args(argv, "evaluate")
  arguments.require([_CONFIG, _CHECKPOINT], "evaluate")
  _, table = run(_CONFIG.value, _CHECKPOINT.value, arguments.resolve_output("evaluate", ("output_dir",)), _TASKS.value,
                 _MODULES.value, truncate=_TRUNCATE.value)
  print(table)
