"""The fault matrix: bad inputs and interruptions, what t5tune must answer, and the README table.

Each CLI row is (id, command, what the user did, argv, exit code, text the
first stderr line must contain, what to do). `{scene}` is a directory of
prepared inputs (see test_fault_matrix.scene), `{repo}` the repository root.
The README's Troubleshooting table is `markdown()`; a test keeps them equal.
"""
import dataclasses


@dataclasses.dataclass(frozen=True)
class Row:
  id: str
  command: str  # the sub-command (one process runs each command's rows), or "api" / "kill"
  case: str
  argv: tuple = ()
  code: int = 2
  expect: str = ""  # must appear in the first stderr line (or the exception text)
  fix: str = ""


CLI = [
    Row("cmd-typo", "info", "misspelt command", ("infoo",), 2, "Did you mean 'info'",
        "use the suggested command"),
    Row("info-preset", "info", "unknown model preset", ("info", "--config=tinyy"), 2,
        "Did you mean 'tiny'", "use a preset `t5tune info --help` names"),
    Row("info-file", "info", "model config file missing", ("info", "--config=nope.py"), 2,
        "no such config file", "check the path"),
    Row("info-args", "info", "stray positional argument", ("info", "--config=tiny", "extra"), 2,
        "unexpected arguments extra", "flags take the form --name=value"),
    Row("info-flag", "info", "unknown flag", ("info", "--config=tiny", "--inputs_lenn=3"), 2,
        "Unknown command line flag 'inputs_lenn'", "`t5tune info --help` lists the flags"),
    Row("conv-direction", "convert", "unknown direction",
        ("convert", "hf-to-t5", "--input=a", "--output=b"), 2, "expected a direction",
        "hf-to-t5tune or t5tune-to-hf"),
    Row("conv-required", "convert", "--output missing",
        ("convert", "hf-to-t5tune", "--input={scene}/hf"), 2, "--output is required",
        "give --output"),
    Row("conv-no-input", "convert", "input directory missing",
        ("convert", "hf-to-t5tune", "--input={scene}/nope", "--output={scene}/o1"), 2,
        "no such directory", "check --input"),
    Row("conv-empty", "convert", "input is not a model (empty directory)",
        ("convert", "hf-to-t5tune", "--input={scene}/empty", "--output={scene}/o2"), 1,
        "no config.json", "point --input at a Hugging Face T5 directory"),
    Row("conv-pickle", "convert", "only pytorch_model.bin (pickle)",
        ("convert", "hf-to-t5tune", "--input={scene}/bin_only", "--output={scene}/o3"), 1,
        "never unpickles", "re-save with safe_serialization=True"),
    Row("conv-badjson", "convert", "config.json is not JSON",
        ("convert", "hf-to-t5tune", "--input={scene}/badjson", "--output={scene}/o4"), 1,
        "invalid JSON", "restore config.json"),
    Row("conv-not-t5", "convert", "a BERT checkpoint",
        ("convert", "hf-to-t5tune", "--input={scene}/bert", "--output={scene}/o5"), 1,
        "is not a T5 model", "convert T5, Flan-T5, mT5 or ByT5 weights"),
    Row("conv-exists", "convert", "--output holds the user's files",
        ("convert", "hf-to-t5tune", "--input={scene}/hf", "--output={scene}/user_files"), 2,
        "the output exists", "choose another --output"),
    Row("conv-overwrite-other", "convert", "--overwrite onto a directory that is not a model",
        ("convert", "hf-to-t5tune", "--input={scene}/hf", "--output={scene}/user_files",
         "--overwrite"), 2, "is not a t5tune model directory; refusing",
        "--overwrite replaces only a model dir of the same kind"),
    Row("conv-t5x-exists", "convert", "T5X import onto an existing --output",
        ("convert", "t5x-to-t5tune", "--input={scene}/hf", "--output={scene}/user_files"), 2,
        "the output exists", "choose another --output, or --overwrite for a model dir"),
    Row("conv-t5x-overwrite-other", "convert", "T5X import --overwrite onto a directory that is"
        " not a model", ("convert", "t5x-to-t5tune", "--input={scene}/hf",
                         "--output={scene}/user_files", "--overwrite"), 2,
        "is not a t5tune model directory; refusing", "choose another --output"),
    Row("conv-parent-file", "convert", "--output inside a regular file",
        ("convert", "hf-to-t5tune", "--input={scene}/hf", "--output={scene}/afile/out"), 2,
        "parent is a file", "choose an output inside a directory"),
    Row("conv-same", "convert", "--output is --input",
        ("convert", "t5tune-to-hf", "--input={scene}/model", "--output={scene}/model",
         "--overwrite"), 2, "the output is the input", "write to another directory"),
    Row("conv-corrupt", "convert", "array file of the model changed on disk",
        ("convert", "t5tune-to-hf", "--input={scene}/corrupt", "--output={scene}/o6"), 1,
        "checksum mismatch", "restore the file, or use an earlier checkpoint step"),
    Row("pred-required", "predict", "--checkpoint missing",
        ("predict", "--input={scene}/in.jsonl", "--output={scene}/p.jsonl"), 2,
        "--checkpoint is required", "give --checkpoint"),
    Row("pred-no-ckpt", "predict", "checkpoint directory missing",
        ("predict", "--checkpoint={scene}/nope", "--input={scene}/in.jsonl",
         "--output={scene}/p.jsonl"), 2, "no such model directory", "check --checkpoint"),
    Row("pred-no-input", "predict", "input file missing",
        ("predict", "--checkpoint={scene}/model", "--input={scene}/nope.jsonl",
         "--output={scene}/p.jsonl"), 2, "no such input file", "check --input"),
    Row("pred-bad-line", "predict", "input line 2 is not JSON",
        ("predict", "--checkpoint={scene}/model", "--input={scene}/bad.jsonl",
         "--output={scene}/p.jsonl"), 2, "bad.jsonl:2", "fix that line"),
    Row("pred-no-field", "predict", "input object without 'inputs'",
        ("predict", "--checkpoint={scene}/model", "--input={scene}/noinputs.jsonl",
         "--output={scene}/p.jsonl"), 2, "no string field 'inputs'", "add it or pass --template"),
    Row("pred-template", "predict", "--template names a field the lines lack",
        ("predict", "--checkpoint={scene}/model", "--input={scene}/in.jsonl",
         "--output={scene}/p.jsonl", "--template={{question}}"), 2,
        "the template needs field(s) ['question']", "change --template or the data"),
    Row("pred-top-p", "predict", "--top_p out of range",
        ("predict", "--checkpoint={scene}/model", "--input={scene}/in.jsonl",
         "--output={scene}/p.jsonl", "--top_p=0"), 2, "--top_p=0.0 must be in (0, 1]",
        "give 0 < top_p <= 1"),
    Row("pred-method", "predict", "misspelt --method",
        ("predict", "--checkpoint={scene}/model", "--input={scene}/in.jsonl",
         "--output={scene}/p.jsonl", "--method=bean"), 2, "value should be one of",
        "greedy, sample or beam"),
    Row("pred-vocab", "predict", "--vocab file missing",
        ("predict", "--checkpoint={scene}/model", "--input={scene}/in.jsonl",
         "--output={scene}/p.jsonl", "--vocab={scene}/nope.model"), 2,
        "no such SentencePiece model file", "give 'byte' or the model's .model file"),
    Row("pred-out-parent", "predict", "--output inside a regular file",
        ("predict", "--checkpoint={scene}/model", "--input={scene}/in.jsonl",
         "--output={scene}/afile/p.jsonl"), 2, "parent is not a directory",
        "choose another --output"),
    Row("pred-other-producer", "predict", "rerun onto an output of another checkpoint/method",
        ("predict", "--checkpoint={scene}/model", "--input={scene}/in.jsonl",
         "--output={scene}/prev.jsonl", "--method=beam"), 2, "produced by other settings",
        "same settings to continue; --overwrite to start over"),
    Row("pred-foreign-output", "predict", "--output is a file t5tune did not write",
        ("predict", "--checkpoint={scene}/model", "--input={scene}/in.jsonl",
         "--output={scene}/user_files/notes.txt", "--overwrite"), 2,
        "not a t5tune predictions file", "choose another --output"),
    Row("pred-corrupt", "predict", "array file of the checkpoint changed on disk",
        ("predict", "--checkpoint={scene}/corrupt", "--input={scene}/in.jsonl",
         "--output={scene}/p.jsonl"), 1, "checksum mismatch", "restore the file"),
    Row("data-none", "data", "no sub-command", ("data",), 2, "expected a sub-command",
        "list, report or train-vocab"),
    Row("data-typo", "data", "misspelt sub-command", ("data", "lisst"), 2,
        "Did you mean 'list'", "use the suggestion"),
    Row("data-module", "data", "--module that does not exist",
        ("data", "list", "--module=no_such.tasks_module"), 2, "no Python module",
        "a module importable from the current directory"),
    Row("data-report-args", "data", "report without a name", ("data", "report"), 2,
        "report takes one task or mixture name", "t5tune data report NAME"),
    Row("data-vocab-args", "data", "train-vocab without --tasks", ("data", "train-vocab"), 2,
        "--tasks is required", "give --tasks and --output"),
    Row("data-flag-other", "data", "a train-vocab flag given to report",
        ("data", "report", "t5tune_demo_mix", "--module=t5tune.demo_tasks", "--vocab_size=8"), 2,
        "--vocab_size is not a flag of `t5tune data report`", "drop it (the error names who reads it)"),
    Row("data-flag-old", "data", "report's old --output_dir given to near-duplicates",
        ("data", "near-duplicates", "t5tune_demo_mix", "--module=t5tune.demo_tasks",
         "--output_dir={scene}/nd"), 2,
        "--output_dir is not a flag of `t5tune data near-duplicates`", "use --output"),
    Row("data-output-both", "data", "--out and --output disagree",
        ("data", "near-duplicates", "t5tune_demo_mix", "--module=t5tune.demo_tasks",
         "--out={scene}/a.jsonl", "--output={scene}/b.jsonl"), 2,
        "disagree", "give only --output"),
    Row("train-file", "train", "config file missing",
        ("train", "--config=nope.py", "--workdir={scene}/w"), 2, "no such config file",
        "check --config"),
    Row("train-nested-key", "train", "misspelt nested key --config.optimizer.lr",
        ("train", "--config={repo}/configs/experiments/tiny.py", "--workdir={scene}/w",
         "--config.optimizer.lr=0.1"), 2, "closest: optimizer.learning_rate",
        "use the closest key (`--show_config` lists all)"),
    Row("train-dropout", "train", "dropout rate out of range (1.5 trained to accuracy 1.0, zero gradients)",
        ("train", "--config={repo}/configs/experiments/tiny.py", "--workdir={scene}/w",
         "--config.model.overrides.dropout_rate=1.5"), 2,
        "model.overrides.dropout_rate=1.5 is out of range: allowed [0, 1)", "give a value in [0, 1)"),
    Row("train-lr", "train", "negative learning rate (trained to loss 43)",
        ("train", "--config={repo}/configs/experiments/tiny.py", "--workdir={scene}/w",
         "--config.optimizer.learning_rate=-1"), 2,
        "config.optimizer.learning_rate=-1.0 is out of range: allowed (0, inf)", "give a positive rate"),
    Row("train-smoothing", "train", "label smoothing of 1 or more",
        ("train", "--config={repo}/configs/experiments/tiny.py", "--workdir={scene}/w",
         "--config.train.label_smoothing=1.0"), 2,
        "config.train.label_smoothing=1.0 is out of range: allowed [0, 1)", "give a value in [0, 1)"),
    Row("train-type", "train", "wrong type for a key",
        ("train", "--config={repo}/configs/experiments/tiny.py", "--workdir={scene}/w",
         "--config.train.steps=many"), 2, "invalid literal for int", "give an integer"),
    Row("train-workdir", "train", "--workdir missing",
        ("train", "--config={repo}/configs/experiments/tiny.py"), 2, "--workdir is required",
        "give --workdir"),
    Row("train-other-model", "train", "resume in a workdir of another model size",
        ("train", "--config={repo}/configs/experiments/tiny.py", "--workdir={scene}/old_run",
         "--config.model.overrides.d_model=128"), 1, "hold another model (d_model: 32 -> 128",
        "start a new --workdir"),
    Row("eval-required", "evaluate", "--checkpoint missing",
        ("evaluate", "--config={repo}/configs/experiments/tiny.py"), 2,
        "--checkpoint is required", "give --checkpoint"),
    Row("eval-no-ckpt", "evaluate", "checkpoint directory missing",
        ("evaluate", "--config={repo}/configs/experiments/tiny.py", "--checkpoint={scene}/nope"),
        2, "no such model directory", "check --checkpoint"),
    Row("eval-task", "evaluate", "misspelt task name",
        ("evaluate", "--config={repo}/configs/experiments/tiny.py", "--checkpoint={scene}/model",
         "--tasks=t5tune_demo_sentimant"), 2, "Did you mean 't5tune_demo_sentiment'",
        "use a registered task (`t5tune data list`)"),
]

# Library calls (run in the test process) and interruptions (each its own process).
API = [
    Row("api-load-corrupt", "api", "t5tune.load_model on a changed array file", code=1,
        expect="checksum mismatch", fix="restore the file"),
    Row("api-save-exists", "api", "t5tune.save_model onto a directory of the user's", code=2,
        expect="the output exists", fix="another path, or overwrite=True for a model dir"),
    Row("api-task-option", "api", "register_task(vocabularyy=...)", code=2,
        expect="Did you mean 'vocabulary'", fix="use the suggested option"),
    Row("api-mixture", "api", "register_mixture with an unregistered task", code=2,
        expect="are not registered tasks or mixtures", fix="register or import it first"),
    Row("api-utf8", "api", "predict input that is not UTF-8", code=2, expect="not UTF-8",
        fix="save the file as UTF-8"),
    Row("api-resume-other", "api", "Trainer on a workdir of another model", code=1,
        expect="hold another model", fix="start a new workdir"),
]
KILLS = [
    Row("kill-convert", "kill", "kill -9 during `convert --overwrite`", code=-9,
        expect="old model dir intact or new one complete", fix="rerun the command"),
    Row("kill-eval-write", "kill", "kill -9 while evaluation writes metrics", code=-9,
        expect="metrics.json old or new, metrics.jsonl whole rows", fix="rerun the evaluation"),
    Row("kill-predict", "kill", "kill -9 during predict (tests/infer/test_predict.py)", code=-9,
        expect="whole lines; the rerun continues", fix="rerun the same command"),
    Row("kill-ckpt-save", "kill", "kill -9 during a checkpoint save (tests/train/test_resume.py)",
        code=-9, expect="the last complete step restores", fix="rerun train"),
]
ROWS = CLI + API + KILLS

BEGIN = "<!-- fault-matrix:begin (generated by tests/faults/matrix.py; a test checks it) -->"
END = "<!-- fault-matrix:end -->"


def markdown() -> str:
  lines = [BEGIN, "| command | what happened | exit | the error says (first line) | what to do |",
           "|---|---|---|---|---|"]
  for row in ROWS:
    where = {"api": "Python API", "kill": "interrupted"}.get(row.command, f"`{row.command}`")
    code = "killed" if row.code < 0 else str(row.code)
    expect = row.expect.replace("|", "\\|")
    lines.append(f"| {where} | {row.case} | {code} | {expect} | {row.fix} |")
  lines.append(END)
  return "\n".join(lines)


if __name__ == "__main__":
  print(markdown())
