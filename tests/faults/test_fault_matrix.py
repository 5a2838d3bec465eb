"""The fault matrix (tests/faults/matrix.py): exit code, a first stderr line naming the fix, no
traceback, and every file that existed before byte-identical after; plus kill -9 mid-write.

Most rows fail in validation, before a model is built or compiled; each row runs in a fork of
one process that has imported the libraries (tests/cli.py).
"""
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import safetensors.numpy

from t5tune import errors
from t5tune.convert import loading
from t5tune.convert import model_dir
from t5tune.models import config as model_config
from t5tune.models import t5
from tests import cli
from tests.faults import matrix
from tests.faults import quiet

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ENV = cli.ENV  # as a user runs it: no TF_CPP_MIN_LOG_LEVEL set, the CLI's quiet default applies


def _tree(root):
  """{relative path: sha256} of every file under root."""
  out = {}
  for dirpath, _, names in os.walk(root):
    for name in names:
      path = os.path.join(dirpath, name)
      with open(path, "rb") as f:
        out[os.path.relpath(path, root)] = hashlib.sha256(f.read()).hexdigest()
  return out


def _corrupt(directory):
  """Flips one byte of the largest array file under params/."""
  files = [os.path.join(d, n) for d, _, ns in os.walk(os.path.join(directory, "params"))
           for n in ns]
  target = max(files, key=os.path.getsize)
  with open(target, "r+b") as f:
    f.seek(os.path.getsize(target) // 2)
    byte = f.read(1)
    f.seek(-1, 1)
    f.write(bytes([byte[0] ^ 0xFF]))
  return target


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
  root = tmp_path_factory.mktemp("scene")
  cfg = model_config.preset("tiny")
  model = t5.build_model(cfg, seed=0)
  loading.save_model(model, str(root / "model"))
  loading.write_hf_dir(str(root / "hf"), cfg, loading.merged_params(model))
  shutil.copytree(root / "model", root / "corrupt")
  _corrupt(str(root / "corrupt"))
  (root / "empty").mkdir()
  (root / "bin_only").mkdir()
  (root / "bin_only" / "config.json").write_text('{"model_type": "t5"}')
  (root / "bin_only" / "pytorch_model.bin").write_bytes(b"\x80\x02pickle")
  (root / "badjson").mkdir()
  (root / "badjson" / "config.json").write_text('{"model_type": "t5",\n oops')
  (root / "bert").mkdir()
  (root / "bert" / "config.json").write_text(json.dumps({"model_type": "bert"}))
  safetensors.numpy.save_file({"x": np.zeros(2, np.float32)}, str(root / "bert" / "model.safetensors"))
  (root / "user_files").mkdir()
  (root / "user_files" / "notes.txt").write_text("the user's notes\n")
  (root / "afile").write_text("a regular file\n")
  (root / "in.jsonl").write_text('{"inputs": "a"}\n"b"\n')
  (root / "bad.jsonl").write_text('{"inputs": "a"}\n{"inputs": "b"\n')
  (root / "noinputs.jsonl").write_text('{"text": "a"}\n')
  (root / "long.jsonl").write_text('{"inputs": "a"}\n' + json.dumps("y" * 600) + "\n")
  (root / "prev.jsonl").write_text('{"line": 1, "inputs": "a", "prediction": "x", "score": 0.0}\n')
  (root / "prev.jsonl.producer.json").write_text(json.dumps(
      {"checkpoint": str(root / "model"), "options": {"method": "greedy"}}))
  _task_modules(root)
  _tried_task_modules(root)
  _big_vocabulary(root, cfg.vocab_size)
  _sharded_hf(root)
  step = root / "old_run" / "checkpoints" / "5"
  step.mkdir(parents=True)
  (step / "config.json").write_text(json.dumps(
      model_dir.config_document(cfg.replace(d_model=32).to_dict())))
  (root / "old_run" / "config.json").write_text("{}")
  return root


_TASK = ('from t5tune import data\n'
         'data.register_task({name!r}, source={source}, fields=["q", "a"],'
         ' templates=[data.Template("t", {inputs!r}, "{{a}}")]{extra})\n')
_RECORDS = '{"train": [{"q": "a", "a": "b", "options": "x,y"}]}'


def _task_modules(root):
  """Task modules with the user's mistakes (fm_NAME registers task fm_NAME)."""
  modules = {
      "fm_field": dict(inputs="{q} {zz}"),
      "fm_opts": dict(source=_RECORDS,
                      fields='["q", "a", "options"]'),
      "fm_glob": dict(source='{"train": "nothing-*.jsonl"}'),
      "fm_latin": dict(source='{"train": "latin1.jsonl"}'),
      "fm_metric": dict(extra=", metric_fns=[lambda x: {}]"),
      "fm_vocab": dict(extra=', vocabulary="afile"'),
      "fm_ext": dict(source='{"train": "notes.txt"}'),
      "fm_dedup": dict(extra=', dedup="nearr"'),
  }
  for name, kw in modules.items():
    text = _TASK.format(name=name, source=kw.get("source", '{"train": [{"q": "a", "a": "b"}]}'),
                        inputs=kw.get("inputs", "{q}"), extra=kw.get("extra", ""))
    if "fields" in kw:
      text = text.replace('fields=["q", "a"]', f'fields={kw["fields"]}')
    (root / f"{name}.py").write_text(text)
  (root / "latin1.jsonl").write_bytes(b'{"q": "caf\xe9", "a": "b"}\n')
  (root / "fm_syntax.py").write_text("from t5tune import data\nx = (\ndef\n")
  (root / "fm_raise.py").write_text("SETTINGS = {}\nx = SETTINGS['nokey']\n")
  (root / "fm_eval.py").write_text(
      "from t5tune import data\nfrom t5tune.infer import metrics\n"
      "rec = [{'q': 'a', 'a': 'b'}]\n"
      "data.register_task('fm_nosplit', source={'train': rec}, fields=['q', 'a'],"
      " templates=[data.Template('t', '{q}', '{a}')], metric_fns=[metrics.accuracy])\n"
      "data.register_task('fm_nometric', source={'train': rec, 'validation': rec},"
      " fields=['q', 'a'], templates=[data.Template('t', '{q}', '{a}')])\n"
      "data.register_task('fm_long', source={'validation': [{'q': 'y' * 600, 'a': 'b'}]},"
      " fields=['q', 'a'], templates=[data.Template('t', '{q}', '{a}')],"
      " metric_fns=[metrics.accuracy])\n")


_TRIED = {  # fx_NAME registers task fx_NAME with one mistake: (source, fields, inputs, extra)
    "fx_brace": dict(inputs="{q"),
    "fx_twice": dict(extra=")\ndata.register_task('fx_twice', source={'train': [{'q': 'a', 'a': 'b'}]},"
                     " fields=['q', 'a'], templates=[data.Template('t', '{q}', '{a}')]"),
    "fx_fields": dict(fields='"q, a"'),
    "fx_csv": dict(source='{"train": "cols.csv"}'),
    "fx_emptyfile": dict(source='{"train": "empty.jsonl"}'),
    "fx_badline": dict(source='{"train": "badline.jsonl"}'),
    "fx_rate": dict(extra=")\ndata.register_mixture('fx_rate_mix', ['fx_rate'], rate={'fx_rate': -1}"),
    "fx_mixtypo": dict(extra=")\ndata.register_mixture('fx_mixtypo_mix', ['fx_mixtypoo']"),
    "fx_noopts": dict(inputs="{q} {options_}"),
    "fx_fewshot": dict(extra=", few_shot=data.FewShot(k=-1)"),
    "fx_vocabmissing": dict(extra=', vocabulary="nope.model"'),
    "fx_postproc": dict(extra=", postprocess_fn=3"),
    "fx_src_type": dict(source='"train.jsonl"'),
    "fx_on_bad": dict(extra=', on_bad_record="ignore"'),
    "fx_bigvocab": dict(source='{"train": [{"q": "a", "a": "b"}], "validation": [{"q": "a", "a": "b"}]}',
                        extra=', vocabulary="big.model"'),
}


def _tried_task_modules(root):
  for name, kw in _TRIED.items():
    text = _TASK.format(name=name, source=kw.get("source", '{"train": [{"q": "a", "a": "b"}]}'),
                        inputs=kw.get("inputs", "{q}"), extra=kw.get("extra", ""))
    if "fields" in kw:
      text = text.replace('fields=["q", "a"]', f'fields={kw["fields"]}')
    (root / f"{name}.py").write_text(text)
  (root / "fx_notemplates.py").write_text(
      "from t5tune import data\ndata.register_task('fx_notemplates', source={'train':"
      " [{'q': 'a', 'a': 'b'}]}, fields=['q', 'a'], templates=[])\n")
  (root / "cols.csv").write_text("q,b\nx,y\n")
  (root / "empty.jsonl").write_text("")
  (root / "badline.jsonl").write_text('{"q": "a", "a": "b"}\n{"q": "a", "a": \n')
  (root / "eval_cfg.py").write_text(
      "from t5tune.infer import evaluation\n\n\ndef get_config(arg=None):\n"
      "  c = evaluation.default_config()\n  c.modules = ('t5tune.demo_tasks',)\n"
      "  c.tasks = ('t5tune_demo_sentiment',)\n  return c\n")
  (root / "cfg_import.py").write_text("import nosuch_pkg_x\n\n\ndef get_config(arg=None):\n  return None\n")


def _big_vocabulary(root, model_vocab_size):
  """big.model: a SentencePiece vocabulary with more ids than the tiny model's embedding."""
  import random
  from t5tune.data import vocab as vocab_lib
  rng = random.Random(0)
  words = lambda: " ".join("".join(rng.choice("abcdefghijklmnopqrstuvwxyz")
                                   for _ in range(rng.randint(2, 7))) for _ in range(12))
  path = vocab_lib.train_sentencepiece([words() for _ in range(2000)], str(root / "big"),
                                       vocab_size=model_vocab_size + 116)
  assert path == str(root / "big.model")


def _sharded_hf(root):
  """A HF directory whose index names two shards, of which only the first is there."""
  tensors = safetensors.numpy.load_file(str(root / "hf" / "model.safetensors"))
  (root / "sharded").mkdir()
  for name in ("config.json",):
    shutil.copy(root / "hf" / name, root / "sharded" / name)
  keys = sorted(tensors)
  half = {k: tensors[k] for k in keys[:len(keys) // 2]}
  safetensors.numpy.save_file(half, str(root / "sharded" / "model-00001-of-00002.safetensors"))
  weight_map = {k: ("model-00001-of-00002.safetensors" if k in half
                    else "model-00002-of-00002.safetensors") for k in keys}
  (root / "sharded" / "model.safetensors.index.json").write_text(
      json.dumps({"metadata": {}, "weight_map": weight_map}))


@pytest.fixture(scope="module")
def busy_port():
  """A port some other program listens on, for as long as the module runs."""
  import socket
  with socket.socket() as listener:
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    _BUSY[0] = listener.getsockname()[1]
    yield _BUSY[0]


_BUSY = [0]


def _format(arg, scene):
  return arg.format(scene=scene, repo=REPO, busy_port=_BUSY[0])


def _first_line(stderr):
  """The first line of `stderr` that is not one of t5tune's own log records."""
  return (quiet.not_own_log_lines(stderr) or [""])[0]


@pytest.mark.parametrize("command", sorted({r.command for r in matrix.CLI}))
def test_cli_rows(scene, busy_port, command):
  rows = [r for r in matrix.CLI if r.command == command]
  before = _tree(scene)
  for row in rows:
    # No __pycache__ from the scene's task modules: the scene must stay byte-identical.
    result = cli.run([_format(a, scene) for a in row.argv], cwd=scene,
                     env=dict(ENV, PYTHONDONTWRITEBYTECODE="1"), timeout=900)
    # t5tune's own log lines may come first (a task's records read before a bad one is found)
    first = _first_line(result.stderr)
    assert result.returncode == row.code, (row.id, result.returncode, result.stderr[-2000:])
    assert first.startswith("t5tune"), (row.id, result.stderr[-2000:])
    assert ": error: " in first and row.expect in first, (row.id, first)
    assert "Traceback" not in result.stderr, (row.id, result.stderr[-2000:])
  assert _tree(scene) == before  # nothing created, replaced or deleted


def _resume_other(scene):
  from t5tune.train import checkpoints
  checkpoints.check_resumable(str(scene / "old_run"), model_config.preset("tiny").to_dict())


def _api_calls(scene):
  from t5tune import data
  from t5tune.infer import predict
  (scene / "latin1.jsonl").write_bytes(b'"caf\xe9"\n') if not (scene / "latin1.jsonl").exists() else None
  return {
      "api-load-corrupt": lambda: loading.load_model(str(scene / "corrupt")),
      "api-save-exists": lambda: loading.save_model(
          t5.build_model(model_config.preset("tiny")), str(scene / "user_files")),
      "api-task-option": lambda: data.register_task(
          "fault_matrix_task", source={"train": [{"q": "a", "a": "b"}]}, fields=["q", "a"],
          templates=[data.Template("t", "{q}", "{a}")], vocabularyy="byte"),
      "api-mixture": lambda: data.register_mixture("fault_matrix_mix", ["no_such_task_xyz"]),
      "api-utf8": lambda: predict.read_inputs(str(scene / "latin1.jsonl")),
      "api-resume-other": lambda: _resume_other(scene),
      "api-vocab-too-big": lambda: __import__("t5tune").generate(
          loading.load_model(str(scene / "model")), ["a"], vocabulary=str(scene / "big.model")),
  }


def test_api_rows(scene):
  calls = _api_calls(scene)
  before = _tree(scene)
  for row in matrix.API:
    with pytest.raises(errors.T5tuneError) as info:
      calls[row.id]()
    assert info.value.exit_code == row.code, row.id
    assert row.expect in str(info.value), (row.id, str(info.value))
  assert _tree(scene) == before


# The disk fills up after the first checkpoint: every file the process writes from then on is
# limited to 64 KiB, so TensorStore's write of the next step's arrays fails in the OS (as on a
# full disk, with EFBIG instead of ENOSPC; SIGXFSZ ignored, so the write returns the error).
_DISK_FULL = """
import resource, signal, sys
from t5tune.train import checkpoints
real_save = checkpoints.Checkpointer.save
def save(self, step, **kw):
  if step > 2:
    self.manager.wait_until_finished()  # step 2 is on the disk; then the disk is full
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 << 10, resource.RLIM_INFINITY))
  return real_save(self, step, **kw)
checkpoints.Checkpointer.save = save
from t5tune import main
main.run(["t5tune"] + sys.argv[1:])
"""


def test_disk_full_during_checkpoint_save_is_one_line_and_the_rerun_resumes(scene, tmp_path):
  (row,) = [r for r in matrix.DISKS if r.id == "disk-full-ckpt"]
  argv = [a.format(scene=tmp_path, repo=REPO) for a in row.argv]
  env = dict(ENV, JAX_NUM_CPU_DEVICES="1", T5TUNE_ALLOCATOR="system")
  full = subprocess.run([sys.executable, "-c", _DISK_FULL] + argv, cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=600)
  # t5tune's own log lines (the step's compile time), then the one line; nothing else: not orbax's
  # writer threads logging the failure with tracebacks, not the failed write's other chunks
  # (tensorstore's callbacks into orbax's closed event loop), not orbax's threads failing as the
  # process exits.
  assert full.returncode == row.code, full.stderr[-3000:]
  (first,) = quiet.not_own_log_lines(full.stderr) or [""]
  assert first.startswith("t5tune train: error: ") and row.expect in first, full.stderr[-3000:]
  assert "File too large" in first and str(tmp_path / "full" / "checkpoints") in first
  assert "resumes from step 2, which is intact" in first
  ckpt = tmp_path / "full" / "checkpoints"
  assert sorted(os.listdir(ckpt)) == ["2"]  # no partial step left behind
  assert model_dir.verify_checksums(str(ckpt / "2"))
  before = _tree(ckpt / "2")
  rerun = cli.run(argv, env=env, timeout=600)
  assert rerun.returncode == 0, rerun.stderr[-3000:]
  assert json.loads(rerun.stdout.strip().splitlines()[-1])["step"] == 4
  assert sorted(os.listdir(ckpt)) == ["2", "4"]
  assert _tree(ckpt / "2") == before  # the resumed run read step 2, and left it as it was
  steps = [json.loads(l)["step"] for l in (tmp_path / "full" / "metrics.jsonl").open()]
  assert steps == sorted(set(steps)) and steps[-1] == 4


def test_out_of_space_is_told_from_other_write_errors():
  import errno as errno_lib
  assert errors.out_of_space(OSError(errno_lib.ENOSPC, "No space left on device")) == 28
  wrapped = ValueError("Error writing ...: Failed to write 4 bytes: No space left on device"
                       " [os_error_code='28']")
  assert errors.out_of_space(wrapped) == 28
  tf_style = RuntimeError("/ck/4.orbax-checkpoint-tmp/data/x.tempstate1; File too large [Op:SaveV2]")
  assert errors.out_of_space(tf_style) == errno_lib.EFBIG
  try:
    try:
      raise OSError(errno_lib.EDQUOT, "Disk quota exceeded")
    except OSError as e:
      raise RuntimeError("orbax: save failed") from e
  except RuntimeError as e:
    assert errors.out_of_space(e) == errno_lib.EDQUOT
  assert errors.out_of_space(OSError(errno_lib.EACCES, "Permission denied")) is None
  # safetensors (Rust) words it in its own exception type: still the one DiskFullError, exit 2.
  rust = RuntimeError('Error while serializing: IoError(Os { code: 28, kind: StorageFull,'
                      ' message: "No space left on device" })')
  full = errors.disk_full(rust, where="/out/model.safetensors")
  assert isinstance(full, errors.DiskFullError) and full.exit_code == 2
  assert str(full).startswith("the disk is full: No space left on device (/out/model.safetensors)")
  assert errors.disk_full(ValueError("bad value")) is None
  assert errors.out_of_space(ValueError("[os_error_code='13']")) is None


def test_kill_during_convert_leaves_old_or_new_complete(scene, tmp_path):
  out = tmp_path / "out"
  shutil.copytree(scene / "model", out)
  old = _tree(out)
  proc = subprocess.Popen(
      [sys.executable, "-m", "t5tune", "convert", "hf-to-t5tune", f"--input={scene / 'hf'}",
       f"--output={out}", "--overwrite"], cwd=REPO, env=ENV,
      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  deadline = time.time() + 240
  while time.time() < deadline and proc.poll() is None:
    if any(n.startswith(".tmp-t5tune-") for n in os.listdir(tmp_path)):
      break  # the new model is being written
    time.sleep(0.005)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  now = _tree(out)
  if now != old:  # then the new one, complete and verified
    assert model_dir.verify_checksums(str(out)) and model_dir.is_t5tune_dir(str(out))


_EVAL_KILL = """
import json, os, sys, types
from t5tune.infer import evaluation
out = sys.argv[1]
real_write = os.write
def dying_write(fd, data):
  real_write(fd, data[:len(data) // 2])
  os._exit(9)
os.write = dying_write
real_dump = json.dump
def dying_dump(obj, f, **kw):
  f.write(json.dumps(obj)[:10]); f.flush(); os._exit(9)
json.dump = dying_dump if sys.argv[2] == "json" else real_dump
if sys.argv[2] == "json":  # dies with the new metrics.json written out but not yet in place
  os.fsync = lambda fd: os._exit(9)
fake = types.SimpleNamespace(output_dir=out)
evaluation.TaskEvaluator._write_metrics(fake, 2, {"a": {"accuracy": 1.0}, "b": {"f1": 0.5}})
"""


@pytest.mark.parametrize("where", ["json", "jsonl"])
def test_kill_during_evaluation_write(tmp_path, where):
  (tmp_path / "metrics.json").write_text('{"step": 1, "tasks": {}}')
  (tmp_path / "metrics.jsonl").write_text('{"step": 1, "task": "a", "accuracy": 0.0}\n')
  before = _tree(tmp_path)
  proc = subprocess.run([sys.executable, "-c", _EVAL_KILL, str(tmp_path), where], cwd=REPO,
                        env=ENV, capture_output=True, text=True, timeout=120)
  assert proc.returncode == 9, proc.stderr[-2000:]
  summary = json.loads((tmp_path / "metrics.json").read_text())  # whole: old or new
  if where == "json":
    assert _tree(tmp_path)["metrics.json"] == before["metrics.json"]
  else:
    assert summary["step"] == 2
  old_row = '{"step": 1, "task": "a", "accuracy": 0.0}\n'
  assert (tmp_path / "metrics.jsonl").read_text().startswith(old_row)
  # The next write cuts the torn tail the kill left, so every row is whole.
  from t5tune.infer import evaluation
  import types
  evaluation.TaskEvaluator._write_metrics(types.SimpleNamespace(output_dir=str(tmp_path)), 2,
                                          {"a": {"accuracy": 1.0}})
  rows = (tmp_path / "metrics.jsonl").read_text().splitlines()
  assert [json.loads(r)["step"] for r in rows] == [1, 2]


def test_a_rerun_of_a_step_replaces_its_metrics_rows(tmp_path):
  """`t5tune evaluate` twice into one output appended a second row per task (issue 43)."""
  import types
  from t5tune.infer import evaluation
  fake = types.SimpleNamespace(output_dir=str(tmp_path))
  evaluation.TaskEvaluator._write_metrics(fake, 1, {"a": {"accuracy": 0.0}})
  evaluation.TaskEvaluator._write_metrics(fake, 2, {"a": {"accuracy": 0.5}, "b": {"f1": 0.1}})
  evaluation.TaskEvaluator._write_metrics(fake, 2, {"a": {"accuracy": 1.0}, "b": {"f1": 0.2}})
  rows = [json.loads(r) for r in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert [(r["step"], r["task"]) for r in rows] == [(1, "a"), (2, "a"), (2, "b")]
  assert rows[1]["accuracy"] == 1.0 and rows[2]["f1"] == 0.2


# The kill -9 rows whose evidence is a heavier test elsewhere (it needs a real predict run or
# an asynchronous checkpoint save, which those modules already pay for): row -> that test.
COVERED_KILLS = {
    "kill-predict": ("tests/infer/test_predict.py",
                     "def test_killed_and_rerun_gives_exactly_one_line_per_input("),
    "kill-ckpt-save": ("tests/train/test_resume.py",
                       "def test_kill_9_part_way_and_during_async_save_resume_exactly("),
}


def test_covered_interruptions_exist():
  """Every kill row has its test: here, or the named one elsewhere (still there, same name)."""
  here = {"kill-convert", "kill-eval-write"}
  assert {r.id for r in matrix.KILLS} == here | set(COVERED_KILLS)
  for row_id, (path, test) in COVERED_KILLS.items():
    with open(os.path.join(REPO, path)) as f:
      assert test in f.read(), (row_id, path, test)


def test_troubleshooting_page_is_the_matrix():
  with open(os.path.join(REPO, matrix.PAGE)) as f:
    page = f.read()
  start, end = page.find(matrix.BEGIN), page.find(matrix.END)
  assert start >= 0 and end > start, f"{matrix.PAGE} lacks the generated Troubleshooting table"
  assert page[start:end + len(matrix.END)] == matrix.markdown(), (
      f"{matrix.PAGE}'s table differs from tests/faults/matrix.py; regenerate it with"
      " `python -m tests.faults.matrix`")


def test_enough_rows():
  assert len(matrix.ROWS) >= 30 and len({r.id for r in matrix.ROWS}) == len(matrix.ROWS)
  assert len(matrix.TRIED) >= 20  # issue 23: at least 20 more found by trying
  assert all(r in matrix.CLI for r in matrix.TRIED)  # each run by test_cli_rows


def test_show_config_describes_every_key_and_help_lists_flags():
  from t5tune.cli import config_help
  from t5tune.infer import evaluation
  from t5tune.train import experiment
  table = config_help.descriptions(experiment.default_config, evaluation.default_config)
  lines = config_help.render(experiment.default_config(), table)
  undescribed = [l for l in lines if "  # " not in l]
  assert not undescribed, undescribed
  assert "optimizer.learning_rate = 0.001  # float: the peak learning rate" in lines
  proc = subprocess.run([sys.executable, "-m", "t5tune", "predict", "--help"], cwd=REPO, env=ENV,
                        capture_output=True, text=True, timeout=120)
  assert proc.returncode == 0 and "--[no]overwrite" in proc.stdout and "--num_beams" in proc.stdout
  assert proc.stderr == ""
  # `data` delegates near-duplicates, label-issues, ... to data_quality: its help lists their flags.
  proc = subprocess.run([sys.executable, "-m", "t5tune", "data", "--help"], cwd=REPO, env=ENV,
                        capture_output=True, text=True, timeout=120)
  assert proc.returncode == 0 and proc.stderr == "", proc.stderr
  for flag in ("--module", "--vocab_size", "--threshold", "--ngram", "--fold_steps", "--seed_tasks"):
    assert flag in proc.stdout, flag


def test_quiet_predict_prints_no_library_noise(scene, tmp_path):
  """As a user runs it (no TF_CPP_MIN_LOG_LEVEL, stderr piped): no TF/absl/orbax lines, no bar.

  (`t5tune train`'s stderr gets the same check in tests/train/test_resume.py, whose
  reference run pays for a training process already.)
  """
  (tmp_path / "in.jsonl").write_text('{"inputs": "a"}\n{"inputs": "bb"}\n')
  predict = subprocess.run(
      [sys.executable, "-m", "t5tune", "predict", f"--checkpoint={scene / 'model'}",
       f"--input={tmp_path / 'in.jsonl'}", f"--output={tmp_path / 'out.jsonl'}", "--vocab=byte",
       "--max_decode_len=4", "--batch_size=2"],
      cwd=REPO, env=dict(ENV, JAX_NUM_CPU_DEVICES="1"), capture_output=True, text=True,
      timeout=600)
  assert predict.returncode == 0, predict.stderr[-3000:]
  assert len((tmp_path / "out.jsonl").read_text().splitlines()) == 2
  quiet.assert_quiet(predict.stderr, "predict")


@pytest.mark.parametrize("losses, grads, expect", [
    ([2.0, 1.5, 1.5, 1.5, 1.5, 1.5, 1.5], [1.0] * 7, "has not changed for 6 logs"),
    ([2.0, 1.9, 1.8, 1.7, 1.6], [0.0] * 5, "gradient norm has been exactly 0 for 5 logs"),
    ([2.0, 1.0, 0.5, 80.0], [1.0] * 4, "rose to 80, over 100x"),
])
def test_divergence_is_reported_with_its_step(losses, grads, expect):
  from t5tune.train import divergence
  from t5tune.train import hooks
  hook = divergence.Divergence()
  loop = hooks.LoopState(state={}, step=0, total=100)
  with pytest.raises(errors.TrainingFault, match=expect) as info:
    for i, (loss, grad) in enumerate(zip(losses, grads)):
      loop.step = 10 * (i + 1)
      loop.train_metrics = {"loss": loss, "grad_norm": grad}
      hook.after_step(loop)
      hook.after_step(loop)  # a step without a new log changes nothing
  assert info.value.where == f"step {10 * len(losses)}"


def test_healthy_noisy_loss_is_not_divergence():
  from t5tune.train import divergence
  from t5tune.train import hooks
  hook = divergence.Divergence()
  loop = hooks.LoopState(state={}, step=0, total=100)
  for i, loss in enumerate([5.0, 3.0, 3.2, 2.9, 3.1, 2.5, 4.0, 2.4]):
    loop.step, loop.train_metrics = i + 1, {"loss": loss, "grad_norm": 0.5}
    hook.after_step(loop)


def test_a_full_disk_is_one_line_exit_2_leaves_nothing_partial_and_the_rerun_completes(scene,
                                                                                      tmp_path):
  """predict, convert, data report and evaluate on a disk that fills up (every file the command
  writes stops at a few KiB): the one disk-full line, exit 2, no part of an output left (predict
  keeps whole lines, which its rerun continues from), and the same command completes later."""
  (tmp_path / "many.jsonl").write_text("".join(json.dumps(f"line {i}") + "\n" for i in range(48)))
  assert {r.id for r in matrix.DISKS} == {"disk-full-ckpt"} | {f"disk-full-{c}" for c in (
      "predict", "convert", "data", "evaluate")}  # the rows this test is the evidence of
  out = tmp_path / "out"
  out.mkdir()
  cases = [  # (command line, file size limit, what it writes)
      (["predict", f"--checkpoint={scene / 'model'}", f"--input={tmp_path / 'many.jsonl'}",
        f"--output={out / 'p.jsonl'}", "--vocab=byte", "--max_decode_len=2", "--batch_size=8",
        "--chunk_size=8"], 2048, out / "p.jsonl"),
      (["convert", "t5tune-to-hf", f"--input={scene / 'model'}", f"--output={out / 'hf'}"], 8192,
       out / "hf"),
      (["data", "report", "t5tune_demo_sentiment", "--module=t5tune.demo_tasks",
        f"--output={out / 'report'}"], 4096, out / "report"),
      (["evaluate", f"--config={scene / 'eval_cfg.py'}", f"--checkpoint={scene / 'model'}",
        f"--output={out / 'eval'}", "--config.num_examples=8", "--config.batch_size=8",
        "--config.decoding.max_decode_len=4"], 1024, out / "eval"),
  ]
  for argv, limit, written in cases:
    full = cli.run(argv, env=dict(ENV, **{cli.FILE_SIZE_LIMIT: str(limit)}), timeout=600)
    first = _first_line(full.stderr)
    assert full.returncode == 2, (argv[0], full.returncode, full.stderr[-3000:])
    assert first.startswith(f"t5tune {argv[0]}: error: the disk is full: File too large"), (
        argv[0], full.stderr[-3000:])
    assert "free space there" in first and "Traceback" not in full.stderr, first
    assert len(quiet.not_own_log_lines(full.stderr)) == 1, full.stderr[-3000:]
    left = sorted(os.listdir(out)) if out.exists() else []
    if argv[0] == "predict":  # whole lines only, each a prediction the rerun keeps
      lines = (out / "p.jsonl").read_text().splitlines()
      assert 0 < len(lines) < 48 and all(json.loads(l)["line"] for l in lines), lines[-1:]
    else:
      assert written.name not in left and not [n for n in left if n.startswith(".tmp-")], left
    rerun = cli.run(argv, env=ENV, timeout=600)
    assert rerun.returncode == 0, (argv[0], rerun.stderr[-3000:])
    assert written.exists()
  # Issue 43: what the commands wrote has the user's modes (it was 0600 / 0700), under umask 022.
  assert cli.wrong_modes(out) == []
  assert [json.loads(l)["line"] for l in (out / "p.jsonl").read_text().splitlines()] == \
      list(range(1, 49))
