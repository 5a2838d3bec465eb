"""MkDocs hooks: the reference pages, generated at build time so they cannot drift from the code.

- reference/{t5tune,data,infer,train,models-config}.md: mkdocstrings directives (`::: NAME`)
  for the public API in `API` below; the top level and `t5tune.data` list what their lazy
  export tables offer, so a name added there appears here.
- reference/cli.md: every sub-command of `t5tune.main.COMMANDS` with the flags its modules
  define (`t5tune.cli.common.flag_modules`, the same list `--help` prints), defaults and help.
- reference/config.md: the experiment config (`experiment.default_config`), the evaluation
  config and `T5Config`, each key with its default, its meaning (`t5tune.cli.config_help`,
  as `--show_config` prints it) and its allowed range (`experiment.RANGES`, T5Config metadata).

tests/docs/test_docstrings.py reads `API` to find public functions without docstrings.
"""
from __future__ import annotations

import dataclasses
import importlib

from mkdocs.structure.files import File

# page -> (title, introduction, objects documented: a module documents its public members).
API = {
    "reference/t5tune.md": (
        "t5tune", "The top-level names (`t5tune.NAME`, loaded lazily so `import t5tune` stays"
        " cheap), documented where they are defined.", None),
    "reference/data.md": (
        "t5tune.data", "Templates, sources, the task registry and mixtures: the names"
        " `t5tune.data` offers (imported on first use), then the modules behind them.", None),
    "reference/infer.md": (
        "t5tune.infer", "Decoding, scoring, evaluation, prediction, statistics and the"
        " lm-evaluation-harness backend.",
        ["t5tune.infer.api", "t5tune.infer.decoding", "t5tune.infer.scoring",
         "t5tune.infer.evaluation", "t5tune.infer.predict", "t5tune.infer.ensemble",
         "t5tune.infer.metrics", "t5tune.infer.compare", "t5tune.infer.harness",
         "t5tune.infer.local_tasks", "t5tune.infer.cluster_means", "t5tune.infer.ni_eval"]),
    "reference/train.md": (
        "t5tune.train", "The entry points of training: the experiment schema, the trainer and"
        " its hooks, loss-term plug-ins, checkpoints and continual stages.",
        ["t5tune.train.experiment", "t5tune.train.trainer", "t5tune.train.hooks",
         "t5tune.train.steps", "t5tune.train.checkpoints", "t5tune.train.continual"]),
    "reference/models-config.md": (
        "t5tune.models.config", "The frozen model description, its presets and tables;"
        " the experiment config's `model.overrides` set its fields"
        " ([the fields with their ranges](config.md#t5config)).",
        ["t5tune.models.config"]),
}

LEGEND = ("Array arguments and results carry their shape as a suffix of capital letters"
          " (`logits_BTV`, `enc_tokens_BL`): B batch, L encoder (input) length, T decoder"
          " (target) length, V vocabulary, D d_model, H heads, K key/value size or options,"
          " S cache length, N examples.")


def api_objects(page: str) -> list[str]:
  """The dotted names a reference page documents (lazy export tables resolved)."""
  objects = API[page][2]
  if objects is not None:
    return list(objects)
  if page == "reference/t5tune.md":
    import t5tune
    table = t5tune._LAZY  # pylint: disable=protected-access
    return [f"{module}.{name}" for module, names in table.items() for name in names]
  from t5tune import data
  table = data._EXPORTS  # pylint: disable=protected-access
  names = [f"{module}.{name}" for module, names in table.items() for name in names]
  return names + ["t5tune.data.formats"]


def api_page(page: str) -> str:
  title, intro, _ = API[page]
  lines = [f"# `{title}`", "", intro, "", LEGEND, ""]
  for name in api_objects(page):
    lines += [f"::: {name}", ""]
  return "\n".join(lines)


def _cell(text) -> str:
  return str(text).replace("|", "\\|").replace("\n", " ")


def cli_page() -> str:
  from absl import flags

  from t5tune import main
  from t5tune.cli import common
  lines = ["# Command line", "",
           "Every sub-command of `t5tune` (or `python -m t5tune`) with the flags it reads,"
           " generated from the flag definitions in `t5tune/cli/` (what `t5tune COMMAND"
           " --help` prints). Flags take the form `--name=value`.", "", "```text",
           main.USAGE, "```", ""]
  for command, module_name in main.COMMANDS.items():
    module = importlib.import_module(module_name)
    doc = (module.__doc__ or "").strip()
    lines += [f"## `t5tune {command}`", "", doc.split("\n\n")[0], ""]
    if command == "harness":
      lines += ["Every argument is lm-evaluation-harness's own (`lm_eval --help`); see"
                " [Evaluation](../evaluation.md).", ""]
      continue
    lines += ["| flag | default | meaning |", "|---|---|---|"]
    seen = set()
    for name in common.flag_modules(module):
      for flag in flags.FLAGS.get_flags_for_module(name):
        if flag.name in seen:
          continue
        seen.add(flag.name)
        default = "" if flag.default is None else f"`{flag.default_as_str.strip(chr(39))}`"
        choices = getattr(flag.parser, "enum_values", None)
        text = flag.help.split(">: ", 1)[-1] if choices else flag.help  # absl's "<a|b>: " prefix
        more = f" One of: {', '.join(choices)}." if choices else ""
        lines.append(f"| `--{flag.name}` | {_cell(default)} | {_cell(text)}{more} |")
    lines.append("")
  return "\n".join(lines)


def _rows(config, table, ranges, prefix=""):
  from t5tune.cli import config_help
  for key, value in config.items():
    path = f"{prefix}{key}"
    if hasattr(value, "items") and not isinstance(value, dict):
      yield from _rows(value, table, ranges, path + ".")
    else:
      yield (f"| `{path}` | `{_cell(repr(value))}` | {_cell(config_help.describe(path, table))}"
             f" | {ranges.get(path, '')} |")


def config_page() -> str:
  from t5tune.cli import config_help
  from t5tune.infer import evaluation
  from t5tune.models import config as model_config
  from t5tune.train import experiment
  table = config_help.descriptions(experiment.default_config, evaluation.default_config)
  fields = {f.name: f for f in dataclasses.fields(model_config.T5Config)}
  ranges = dict(experiment.RANGES)
  for name, field in fields.items():
    if "range" in field.metadata:
      ranges[f"model.overrides.{name}"] = field.metadata["range"].text
  head = ["| key | default | meaning | allowed range |", "|---|---|---|---|"]
  lines = ["# Experiment config", "",
           "The keys of an experiment config (`ml_collections`, `get_config(arg)`; see"
           " [Training and configs](../training.md)), generated from"
           " `t5tune.train.experiment.default_config`, the comments beside its keys (what"
           " `t5tune train --config=FILE --show_config` prints) and `experiment.RANGES`. A value"
           " outside its range is refused before anything is written.", "",
           "## Experiment", "", *head,
           *_rows(experiment.default_config(), table, ranges), "",
           "## Evaluation", "", "The `evaluation` section of an evaluation config"
           " (`t5tune.infer.evaluation.default_config`; `t5tune evaluate`).", "", *head,
           *_rows(evaluation.default_config(), table, ranges, "evaluation."), "",
           "## T5Config", "", "`model.overrides.FIELD` replaces a field of the preset's"
           " [`T5Config`](models-config.md); ranges are the fields' metadata.", "",
           "| field | default | meaning | allowed range |", "|---|---|---|---|"]
  notes = config_help.field_descriptions(model_config.T5Config)
  for name, field in fields.items():
    default = field.default if field.default is not dataclasses.MISSING else ""
    rng = field.metadata["range"].text if "range" in field.metadata else ""
    lines.append(f"| `{name}` | `{_cell(repr(default))}` | {_cell(notes.get(name, ''))} | {rng} |")
  return "\n".join(lines) + "\n"


def on_files(files, config):
  pages = {page: (lambda page=page: api_page(page)) for page in API}
  pages["reference/cli.md"] = cli_page
  pages["reference/config.md"] = config_page
  for page, make in pages.items():
    files.append(File.generated(config, page, content=make()))
  return files
