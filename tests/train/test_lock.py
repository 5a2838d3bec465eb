"""One writer per workdir: a second holder is refused at once; a killed holder never blocks."""
import os
import signal
import subprocess
import sys

import pytest

from t5tune import errors
from t5tune.train import lock

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HOLD = ("import sys, time; from t5tune.train import lock\n"
        "with lock.hold(sys.argv[1], 'train'):\n"
        "  print('held', flush=True); time.sleep(60)\n")


def _holder(workdir):
  proc = subprocess.Popen([sys.executable, "-c", HOLD, str(workdir)], cwd=REPO,
                          env=dict(os.environ, PYTHONPATH=REPO), stdout=subprocess.PIPE, text=True)
  assert proc.stdout.readline().strip() == "held"
  return proc


def test_second_holder_is_refused_naming_the_first(tmp_path):
  first = _holder(tmp_path)
  try:
    before = sorted(os.listdir(tmp_path))
    with pytest.raises(errors.UsageError, match=f"in use by pid {first.pid} on .*train") as e:
      with lock.hold(str(tmp_path), "continual"):
        pytest.fail("the lock was taken twice")
    assert e.value.exit_code == 2
    assert sorted(os.listdir(tmp_path)) == before  # the refused run wrote nothing
  finally:
    first.kill()
    first.wait()


def test_a_killed_holder_does_not_block_the_next_run(tmp_path):
  first = _holder(tmp_path)
  os.kill(first.pid, signal.SIGKILL)
  first.wait()
  assert os.path.exists(tmp_path / lock.LOCK_NAME)  # the stale file is still there
  with lock.hold(str(tmp_path), "train"):  # non-blocking: it raises if the dead holder counted
    assert (tmp_path / lock.LOCK_NAME).read_text().find(f'"pid": {os.getpid()}') >= 0


def test_only_process_zero_locks(tmp_path):
  first = _holder(tmp_path)
  try:
    with lock.hold(str(tmp_path), "train", process_index=1):  # another host of the same run
      pass
  finally:
    first.kill()
    first.wait()


def test_ctrl_c_asks_for_a_save_and_a_second_ctrl_c_stops_at_once():
  """Ctrl-C is handled as SIGTERM is (save at the next step boundary, then stop); twice, at once."""
  from t5tune.train import hooks
  # What SIGINT did before: Python's KeyboardInterrupt, or SIG_IGN where the test run was
  # started in the background of a non-interactive shell (as CI scripts may start it).
  before = signal.getsignal(signal.SIGINT)
  preemption = hooks.Preemption()
  try:
    assert not preemption.reached(1)
    os.kill(os.getpid(), signal.SIGINT)
    assert preemption.reached(1)  # the loop's own check: save, then stop
    with pytest.raises(KeyboardInterrupt):
      os.kill(os.getpid(), signal.SIGINT)
  finally:
    preemption.close()
  assert signal.getsignal(signal.SIGINT) == before  # handlers restored


def test_a_second_trainer_on_a_locked_workdir_is_refused_before_writing(tmp_path):
  from t5tune.train import trainer
  from tests.train import test_train_step  # its tiny synthetic config
  first = _holder(tmp_path)
  try:
    with pytest.raises(errors.UsageError, match="in use by pid"):
      trainer.Trainer(test_train_step._config(), str(tmp_path))
    assert sorted(os.listdir(tmp_path)) == [lock.LOCK_NAME]  # no config.json, no checkpoints/
  finally:
    first.kill()
    first.wait()
