"""`t5tune data list | report NAME | train-vocab | ...`: inspect registered instruction data.

near-duplicates, contamination, label-issues and generate: `t5tune.cli.data_quality`.

Tasks live in user modules; `--module` (repeatable) imports them first:

    t5tune data list --module=t5tune.demo_tasks
    t5tune data list --collection=flan2021
    t5tune data prepare --collection=flan2021 --data_dir=~/tensorflow_datasets [--tasks=rte,cb] [--check]
    t5tune data report t5tune_demo_mix --module=t5tune.demo_tasks \\
        --inputs_length=256 --targets_length=64 --output=/tmp/report
    t5tune data train-vocab --module=my.tasks --tasks=task_a,mix_b \\
        --vocab_size=8000 --output=vocabs/mine
    t5tune data cache --module=t5tune.flan_tasks_mock --mixture=MIX --output=/data/cache \\
        [--splits=train] [--num_shards=64] [--overwrite] [--runner=DataflowRunner --project=...]

`data cache` hands every flag t5tune does not define to Apache Beam unchanged
(its pipeline options: --runner, --project, --region, --temp_location,
--num_workers, --setup_file, --requirements_file, ...); one Beam does not know
either is refused. The pipeline is `t5tune.data.cache`.
"""
import os
import textwrap

from absl import flags

from t5tune import atomic
from t5tune import errors
from t5tune.cli import arguments
from t5tune.cli import common
from t5tune.cli import data_quality

_MODULES = flags.DEFINE_multi_string(
    "module", [], "Python module(s) whose import registers tasks and mixtures.", allow_override=True)
_SPLITS = flags.DEFINE_list("splits", None, "report / cache: splits to include (default: all).",
                            allow_override=True)
_INPUTS_LENGTH = flags.DEFINE_integer("inputs_length", 512, "report: inputs feature length.", allow_override=True)
_TARGETS_LENGTH = flags.DEFINE_integer("targets_length", 128, "report: targets feature length.", allow_override=True)
_MAX_EXAMPLES = flags.DEFINE_integer(
    "max_examples", None, "report: measure lengths on at most this many examples per task and split.", allow_override=True)
_TASKS = flags.DEFINE_list(
    "tasks", None, "train-vocab: tasks or mixtures whose text trains the vocabulary; prepare: the"
    " collection's datasets to prepare (default: all); cache: regexes of the task names to cache.",
    allow_override=True)
_SPLIT = flags.DEFINE_string(
    "split", "train", "train-vocab / near-duplicates / label-issues: the split whose records are used.",
    allow_override=True)
_VOCAB_SIZE = flags.DEFINE_integer("vocab_size", 8000, "train-vocab: number of pieces.", allow_override=True)
_COLLECTION = flags.DEFINE_string(
    "collection", None, "list: show a collection's datasets instead (e.g. flan2021; registers nothing).",
    allow_override=True)
_DATA_DIR = flags.DEFINE_string(
    "data_dir", None, "prepare: the TFDS data directory the collection's datasets are (to be) in.",
    allow_override=True)
_CHECK = flags.DEFINE_bool(
    "check", False, "prepare: only report what is missing from --data_dir; write and download nothing.",
    allow_override=True)
_MIXTURE = flags.DEFINE_string("mixture", None, "cache: the mixture whose tasks are cached.",
                                allow_override=True)
_NUM_SHARDS = flags.DEFINE_integer(
    "num_shards", 64, "cache: TFRecord files per task and split (a multiple of the training hosts).",
    allow_override=True)
_MODEL_TYPE = flags.DEFINE_enum("model_type", "unigram", ["unigram", "bpe"], "train-vocab: model type.", allow_override=True)

USAGE = ("usage: t5tune data list|prepare|report NAME|train-vocab|cache|near-duplicates NAME|"
         "contamination TRAIN EVAL|label-issues NAME|generate [--module=pkg.tasks ...]")
SUB_COMMANDS = ("list", "prepare", "report", "train-vocab", "cache") + data_quality.COMMANDS

# The flags each sub-command reads (--module, --verbose, --quiet are everyone's);
# any other flag given to a sub-command that does not read it is refused.
FLAGS_OF = {
    "list": ("collection",),
    "prepare": ("collection", "data_dir", "check", "tasks"),
    "report": ("splits", "inputs_length", "targets_length", "output", "output_dir", "max_examples",
               "near_threshold", "contamination_eval", "eval_split", "ngram", "label_issues"),
    "train-vocab": ("tasks", "split", "vocab_size", "model_type", "output"),
    "cache": ("mixture", "tasks", "output", "splits", "overwrite", "num_shards"),
    **data_quality.FLAGS_OF,
}


def _list():
  import seqio  # pylint: disable=g-import-not-at-top
  from t5tune.data import tasks  # pylint: disable=g-import-not-at-top
  ours = set(tasks.task_names())
  print("tasks:")
  for name in sorted(seqio.TaskRegistry.names()):
    if name in ours:
      info = tasks.get_info(name)
      if info.kind == tasks.PRETRAINING:
        print(f"  {name}  kind={info.kind} objective={info.objective!r}"
              f" splits={list(info.source.splits)}"
              + (f" metadata={dict(info.metadata)}" if info.metadata else ""))
        continue
      src = info.source
      kinds = sorted({t.kind for t in src.templates})
      extra = []
      if src.spec.no_template:
        extra.append("no_template")
      if src.spec.few_shot:
        extra.append(f"few_shot k={src.spec.few_shot.k}")
      print(f"  {name}  splits={list(src.splits)} templates={len(src.templates)}"
            f" kinds={kinds} {' '.join(extra)} source={src.source.describe()}"
            + (f" metadata={dict(info.metadata)}" if info.metadata else ""))
    else:
      print(f"  {name}  (seqio task)")
  print("mixtures:")
  for name in sorted(seqio.MixtureRegistry.names()):
    names = [t.name for t in seqio.get_mixture_or_task(name).tasks]
    # A collection's mixtures hold dozens of tasks: one wrapped, indented block each.
    print(f"  {name}  ({len(names)} tasks)")
    print(textwrap.fill(", ".join(names), width=100, initial_indent="      ",
                        subsequent_indent="      ", break_on_hyphens=False))


def _prepare():
  from t5tune.data.collections import prepare  # pylint: disable=g-import-not-at-top
  arguments.require([_COLLECTION, _DATA_DIR], "data prepare")
  prepare.run(_COLLECTION.value, _TASKS.value, _DATA_DIR.value, check_only=_CHECK.value)


def _report_dir() -> str:
  """The report's output directory; one that cannot be made (a file on its path) is refused now,
  before the tasks are read."""
  path = arguments.resolve_output("data", ("output_dir",)) or "data_reports"
  atomic.check_parent(os.path.join(path, "report.json"), fix="choose another --output")
  return path


def _report(name, output_dir):
  from t5tune.quality import report  # pylint: disable=g-import-not-at-top
  lengths = {"inputs": _INPUTS_LENGTH.value, "targets": _TARGETS_LENGTH.value}
  out, json_path, png_path = report.write(
      name, output_dir, feature_lengths=lengths,
      splits=_SPLITS.value, max_examples=_MAX_EXAMPLES.value, **data_quality.report_options())
  print(report.format_text(out))
  print(f"wrote {json_path} and {png_path}")


def _train_vocab():
  from t5tune.data import mixtures  # pylint: disable=g-import-not-at-top
  from t5tune.data import tasks  # pylint: disable=g-import-not-at-top
  from t5tune.data import vocab  # pylint: disable=g-import-not-at-top
  arguments.require([_TASKS, data_quality.OUTPUT], "data")
  names = mixtures.leaf_task_names(_TASKS.value)

  def texts():
    for name in names:
      prepared = tasks.get_info(name, tasks.INSTRUCTION).source.prepared(_SPLIT.value)
      for ex in prepared.examples:
        yield ex["inputs"]
        yield ex["targets"]

  path = vocab.train_sentencepiece(texts(), data_quality.OUTPUT.value, _VOCAB_SIZE.value,
                                   model_type=_MODEL_TYPE.value)
  print(f"wrote {path} ({_VOCAB_SIZE.value} pieces from {len(names)} tasks);"
        f" use it with vocabulary={path!r}")


# `data cache`'s Beam pipeline options: the flags t5tune does not define, set aside by split_args.
_BEAM_ARGS: list[str] = []


def _defined(arg: str) -> bool:
  name = arg[2:].partition("=")[0]
  return (name in flags.FLAGS or (name.startswith("no") and name[2:] in flags.FLAGS)
          or name in ("help", "helpshort", "helpfull", "helpxml"))  # absl adds these when parsing


def split_args(args):
  """For `data cache`: the arguments absl parses; the others (Beam's options) kept unchanged.

  A Beam option given as `--name value` keeps its value. Called by
  `t5tune.cli.common` before absl parses the command line.
  """
  if next((a for a in args if not a.startswith("-")), None) != "cache":
    return args
  ours, expects_value = [], False
  _BEAM_ARGS.clear()
  for arg in args:
    if arg.startswith("--") and arg != "--" and not _defined(arg):
      _BEAM_ARGS.append(arg)
      expects_value = "=" not in arg
    elif expects_value and not arg.startswith("-") and "cache" in ours:
      _BEAM_ARGS.append(arg)
      expects_value = False
    else:
      ours.append(arg)
      expects_value = False
  return ours


def _cache():
  import logging  # pylint: disable=g-import-not-at-top
  from t5tune.data import cache  # pylint: disable=g-import-not-at-top
  if not flags.FLAGS.verbose:  # Beam's notices about its optional packages; --verbose shows them
    logging.getLogger("apache_beam").setLevel(logging.ERROR)
  arguments.require([data_quality.OUTPUT], "data cache")
  output = data_quality.OUTPUT.value
  atomic.check_parent(os.path.join(output, "COMPLETED"), fix="choose another --output")
  unknown = cache.unknown_beam_options(_BEAM_ARGS)
  if unknown:
    ours = sorted(set(FLAGS_OF["cache"]) | {"module"})
    raise errors.UsageError(
        f"--{unknown[0]} is neither a flag of `t5tune data cache` nor a Beam pipeline option"
        + errors.did_you_mean(unknown[0], ours), where=f"--{unknown[0]}",
        fix="`t5tune data cache --help` lists t5tune's flags; Beam's are its PipelineOptions")
  tasks_regex = "|".join(f"(?:{t})" for t in _TASKS.value) if _TASKS.value else None
  names = cache.select(mixture=_MIXTURE.value, tasks=tasks_regex)
  done = cache.run(names, output, splits=_SPLITS.value, beam_args=list(_BEAM_ARGS),
                   overwrite=flags.FLAGS.overwrite, modules=_MODULES.value,
                   num_shards=_NUM_SHARDS.value)
  written = [n for n, state in done.items() if state == "written"]
  skipped = [n for n, state in done.items() if state == "skipped"]
  print(f"cached {len(written)} tasks into {output}"
        + (f"; {len(skipped)} already complete there with the same settings, skipped: {skipped}"
           if skipped else ""))
  print(f"read them with --config.data.cache_dir={output}")


def main(argv):
  args = argv[1:]
  if not args or args[0] not in SUB_COMMANDS:
    got = repr(args[0]) + errors.did_you_mean(args[0], SUB_COMMANDS) if args else "none"
    raise errors.UsageError(f"expected a sub-command ({'|'.join(SUB_COMMANDS)}), got {got}",
                            where="command line", fix=USAGE)
  command = args[0]
  arguments.check_sub_command_flags("data", command, FLAGS_OF)
  if command == "report" and len(args) != 2:
    raise errors.UsageError("report takes one task or mixture name", where="command line",
                            fix="usage: t5tune data report TASK_OR_MIXTURE [--module=...]")
  if command in data_quality.COMMANDS:
    data_quality.check_outputs(command)  # a refused output is reported before any import
  output_dir = _report_dir() if command == "report" else None
  common.import_modules(_MODULES.value)
  if command in data_quality.COMMANDS:
    data_quality.main(command, args[1:])
  elif command == "prepare":
    _prepare()
  elif command == "cache":
    _cache()
  elif command == "list" and (_COLLECTION.value or _COLLECTION.present):  # `--collection=` too
    from t5tune.data.collections import protocol  # pylint: disable=g-import-not-at-top
    print(protocol.describe_named(_COLLECTION.value))
  elif command == "list":
    _list()
  elif command == "report":
    _report(args[1], output_dir)
  else:
    _train_vocab()
