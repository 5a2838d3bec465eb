"""Fault injection for the continual tests: CONTINUAL_STALL=NAME:STEP stalls stage NAME after saving STEP.

Named in `data.modules` by the overrides of tests/train/test_continual.py, so
the child process of a test stalls there and the test can kill it with SIGKILL.
"""
import os
import time

from t5tune.train import hooks

_WHERE = os.environ.get("CONTINUAL_STALL", "")
if _WHERE and not getattr(hooks.Save, "_stall_installed", False):
  _stage, _step = _WHERE.split(":")
  _after_step = hooks.Save.after_step

  def _stalling_after_step(self, loop):
    _after_step(self, loop)
    workdir = self.save.__self__.workdir
    if loop.step == int(_step) and workdir.endswith(os.path.join("stages", _stage)):
      time.sleep(600)

  hooks.Save.after_step = _stalling_after_step
  hooks.Save._stall_installed = True
