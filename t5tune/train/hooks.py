"""The parts the training loop calls at step boundaries: metrics window, logging, evaluation, saving.

`Trainer.run` only steps; everything else is a `Hook` whose `after_step` is
called once per step (in order) and `at_end` once after the last step. A new
behaviour (a continual-tuning stage boundary, an export at the end) is a new
hook passed to the trainer, not an edit of the loop:

    class ExportAtEnd(hooks.Hook):
      def at_end(self, loop):
        export(loop.state["params"])

    trainer.train(config, workdir, extra_hooks=[ExportAtEnd()])

`EarlyStopping` is an action in the style of t5x's `StopTrainingAction`: it
sees every evaluation and tells the loop to stop.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import signal
import threading
import time
from typing import Any, Callable

import jax
import numpy as np

from t5tune import atomic


class NonFiniteError(FloatingPointError):
  """The loss or the gradients of a step were NaN or infinite."""


@dataclasses.dataclass
class LoopState:
  """What the hooks see and may change (only `stop_reason` and the metrics fields)."""
  state: dict  # the train state after `step` steps
  step: int
  total: int
  stop_reason: str = "completed"  # "completed" | "early_stopping" | "preempted"
  train_metrics: dict = dataclasses.field(default_factory=dict)  # the last logged
  eval_metrics: dict = dataclasses.field(default_factory=dict)  # the last evaluation
  step_eval_metrics: dict | None = None  # this step's evaluation, if one ran (saved with it)


def every(n: int, step: int, total: int) -> bool:
  """True at multiples of n and at the final step (never if n is 0)."""
  return bool(n) and (step % n == 0 or step == total)


class Hook:
  """A part of the loop. `due` steps need every dispatched step's metrics read first."""

  def due(self, step: int, total: int) -> bool:
    """Whether the hook acts at `step` of `total`."""
    del step, total
    return False

  def after_step(self, loop: LoopState) -> None:
    """Called after every step, in the order the hooks were given."""

  def at_end(self, loop: LoopState) -> None:
    """Called once after the last step (also after early stopping or preemption)."""


# -- metrics --------------------------------------------------------------------

class MetricsWindow:
  """Training metrics since the last log: read from the device lazily, averaged on demand.

  The loop dispatches step n+1 before reading step n's metrics, so the host
  never waits for the device except where a hook needs the numbers.
  """

  def __init__(self, *, tokens_per_step: float, flops_per_step: float = 0.0,
               peak_flops: float = 0.0, nonfinite: str = "stop",
               on_nonfinite: Callable[[int, dict], None] | None = None):
    self.tokens_per_step = tokens_per_step
    self.flops_per_step = flops_per_step
    self.peak_flops = peak_flops  # of all devices together; 0 = no MFU
    self.nonfinite = nonfinite
    self.on_nonfinite = on_nonfinite
    self._pending: list[tuple[int, Any]] = []  # dispatched steps whose metrics were not read
    self._host: list[dict] = []
    self.restart_clock()

  def restart_clock(self) -> None:
    """Time only training steps: called after anything slow (logging, eval, saving)."""
    self._t0 = time.perf_counter()
    self._steps = 0

  def dispatched(self, step: int, metrics: Any) -> None:
    """Records a step's metrics (still on the device) for the next summary."""
    self._pending.append((step, metrics))
    self._steps += 1

  def resolve(self, *, all_steps: bool) -> None:
    """Reads the dispatched metrics (all, or all but the newest); checks finiteness."""
    keep = 0 if all_steps else 1
    while len(self._pending) > keep:
      step, metrics = self._pending.pop(0)
      host = jax.device_get(metrics)
      if not bool(host["finite"]) and self.nonfinite == "stop" and self.on_nonfinite:
        self.on_nonfinite(step, host)
      self._host.append(host)

  def summary(self) -> dict:
    """Means over the window plus speed; empties the window. {} if nothing was read."""
    if not self._host:
      return {}
    window = self._host
    dt = (time.perf_counter() - self._t0) / max(self._steps, 1)
    out = {k: float(np.mean([w[k] for w in window])) for k in window[0]
           if k not in ("finite", "skipped_steps", "learning_rate")}
    out["learning_rate"] = float(window[-1]["learning_rate"])
    out["skipped_steps"] = float(window[-1]["skipped_steps"])
    out["step_seconds"] = dt
    out["tokens_per_second"] = self.tokens_per_step / dt
    if self.flops_per_step and self.peak_flops:
      out["mfu"] = self.flops_per_step / dt / self.peak_flops
    self._host = []
    return out


class Logger:
  """TensorBoard (t5tune/train/tb.py), metrics.jsonl and the console, written by process 0."""

  def __init__(self, workdir: str):
    self.primary = jax.process_index() == 0
    self.writer = None
    if self.primary:
      try:
        from t5tune.train import tb  # pylint: disable=g-import-not-at-top
      except ImportError as e:  # a machine without the tensorboard package
        logging.warning("no TensorBoard logs (%s); metrics go to metrics.jsonl only", e)
      else:
        self.writer = tb.Writer(os.path.join(workdir, "tb"))
    self._jsonl_path = os.path.join(workdir, "metrics.jsonl")
    self._jsonl = None  # opened by `start_at` (or the first write), after the rows are trimmed

  def start_at(self, step: int) -> None:
    """Drops rows of steps after `step` (the state the loop restarts from) before appending.

    A run killed after logging steps it never checkpointed logs them again on
    resume; without this, metrics.jsonl would hold those steps twice. The kept
    rows go to a temporary sibling that replaces the file, so a kill here
    leaves the old file or the trimmed one, never a torn one.
    """
    if not self.primary:
      return
    if self._jsonl is not None:
      self._jsonl.close()
      self._jsonl = None
    if os.path.exists(self._jsonl_path):
      with open(self._jsonl_path, "rb") as f:
        lines = f.read().split(b"\n")
      keep = [line for line in lines[:-1] if _row_step(line) <= step]  # [-1]: "" or a torn row
      if len(keep) != len(lines) - 1 or lines[-1]:
        atomic.write_bytes(self._jsonl_path, b"".join(line + b"\n" for line in keep))
    self._jsonl = open(self._jsonl_path, "a")

  def hparams(self, flat: dict):
    """Writes the flattened config as TensorBoard hyperparameters."""
    if self.writer:
      self.writer.hparams(flat)

  def scalars(self, step: int, values: dict):
    """Writes `values` at `step` to TensorBoard and, on the primary process, metrics.jsonl."""
    values = {k: float(v) for k, v in values.items()}
    if self.writer:
      self.writer.scalars(step, values)
    if self.primary and self._jsonl is None:
      self._jsonl = open(self._jsonl_path, "a")
    if self._jsonl:
      self._jsonl.write(json.dumps({"step": step, "time": time.time(), **values}) + "\n")
      self._jsonl.flush()

  def close(self):
    """Flushes and closes the writers."""
    if self.writer:
      self.writer.flush()
      self.writer.close()
    if self._jsonl:
      self._jsonl.close()


def _row_step(line: bytes) -> float:
  """The step of one metrics.jsonl row (infinity for a row that is not a JSON object with one)."""
  try:
    step = json.loads(line).get("step")
  except (ValueError, AttributeError):
    return float("inf")
  return step if isinstance(step, int) else float("inf")


# -- the standard hooks -----------------------------------------------------------

class ProgressBar(Hook):
  """A tqdm bar with the last logged loss and accuracy (process 0 only)."""

  def __init__(self, total: int, initial: int):
    self.bar = None
    if jax.process_index() == 0:
      from t5tune import progress
      self.bar = progress.bar(total=total, initial=initial, desc="train", unit="step")

  def after_step(self, loop):
    """Advances the bar by one step."""
    if self.bar is not None:
      self.bar.update(1)

  def show(self, metrics: dict):
    """Shows the latest loss and accuracy beside the bar."""
    if self.bar is not None:
      self.bar.set_postfix(loss=f"{metrics['loss']:.4f}", acc=f"{metrics['accuracy']:.3f}",
                           refresh=False)

  def close(self):
    """Closes the bar."""
    if self.bar is not None:
      self.bar.close()


class LogTrain(Hook):
  """Every `log_every` steps: the window's means as train/<name>."""

  def __init__(self, log_every: int, window: MetricsWindow, logger: Logger,
               bar: ProgressBar | None = None):
    self.log_every, self.window, self.logger, self.bar = log_every, window, logger, bar

  def due(self, step, total):
    """Every `log_every` steps and at the last."""
    return every(self.log_every, step, total)

  def after_step(self, loop):
    """Logs the window's summary of the training metrics when due."""
    if not self.due(loop.step, loop.total):
      return
    summary = self.window.summary()
    if not summary:
      return
    loop.train_metrics = summary
    self.logger.scalars(loop.step, {f"train/{k}": v for k, v in summary.items()})
    if self.bar is not None:
      self.bar.show(summary)
    self.window.restart_clock()


class EarlyStopping:
  """Stops when `metric` has not improved for `patience` evaluations (0 = never)."""

  def __init__(self, metric: str, mode: str, patience: int):
    self.metric, self.mode, self.patience = metric, mode, patience
    self.best = None
    self.evals_since_best = 0

  def run(self, step: int, metrics: dict) -> bool:
    """Records one evaluation; True when training should stop."""
    value = metrics.get(self.metric)
    if value is None:
      return False
    better = self.best is None or (value < self.best if self.mode == "min" else value > self.best)
    if better:
      self.best, self.evals_since_best = value, 0
    else:
      self.evals_since_best += 1
    if self.patience and self.evals_since_best >= self.patience:
      logging.info("early stopping at step %d: %s has not improved for %d evaluations"
                   " (best %.6g)", step, self.metric, self.evals_since_best, self.best)
      return True
    return False


class Evaluate(Hook):
  """Every `eval_every` steps: `evaluate(params, step) -> metrics`, logged, then the actions."""

  def __init__(self, eval_every: int, evaluate: Callable[[dict, int], dict], logger: Logger,
               window: MetricsWindow, actions: tuple[EarlyStopping, ...] = ()):
    self.eval_every, self.evaluate, self.logger = eval_every, evaluate, logger
    self.window, self.actions = window, actions

  def due(self, step, total):
    """Every `eval_every` steps and at the last."""
    return every(self.eval_every, step, total)

  def after_step(self, loop):
    """Evaluates the current parameters when due; the metrics go to the loop."""
    loop.step_eval_metrics = None
    if not self.due(loop.step, loop.total):
      return
    metrics = self.evaluate(loop.state["params"], loop.step)
    loop.eval_metrics = metrics
    if metrics:
      self.logger.scalars(loop.step, metrics)
      loop.step_eval_metrics = metrics
    for action in self.actions:
      if action.run(loop.step, metrics):
        loop.stop_reason = "early_stopping"
    self.window.restart_clock()


class Save(Hook):
  """Every `save_every` steps and whenever the loop stops early: a checkpoint."""

  def __init__(self, save_every: int, save: Callable[..., Any], window: MetricsWindow,
               saved_steps: Callable[[], list[int]]):
    self.save_every, self.save, self.window = save_every, save, window
    self.saved_steps = saved_steps

  def due(self, step, total):
    """Every `save_every` steps and at the last."""
    return every(self.save_every, step, total)

  def after_step(self, loop):
    """Saves a checkpoint when due, or when the loop stops early."""
    due = self.due(loop.step, loop.total)
    if due or loop.stop_reason != "completed":
      self.save(loop.state, metrics=loop.step_eval_metrics, force=True)
    if due:
      self.window.restart_clock()

  def at_end(self, loop):
    """After a preemption, saves the step reached if it is not saved yet."""
    # A preemption stops before stepping: the state may not be saved yet.
    if loop.stop_reason == "preempted":
      if loop.step not in self.saved_steps():
        self.save(loop.state, force=True)
      logging.info("preempted: checkpoint at step %d written", loop.step)


class Preemption:
  """SIGTERM or Ctrl-C -> save and stop at the next step boundary (all processes agree).

  A second Ctrl-C stops at once, without the checkpoint (KeyboardInterrupt).
  """

  def __init__(self):
    self.requested = False
    self._previous = {}
    if jax.process_count() == 1 and threading.current_thread() is threading.main_thread():
      self._previous[signal.SIGTERM] = signal.signal(signal.SIGTERM, self._handle)
      self._previous[signal.SIGINT] = signal.signal(signal.SIGINT, self._interrupt)

  def _handle(self, signum, frame):
    del signum, frame
    logging.warning("SIGTERM received: saving a checkpoint and stopping")
    self.requested = True

  def _interrupt(self, signum, frame):
    del signum, frame
    if self.requested:
      raise KeyboardInterrupt  # the second Ctrl-C: stop now
    logging.warning("Ctrl-C: saving a checkpoint and stopping (Ctrl-C again stops at once, unsaved)")
    self.requested = True

  def reached(self, step: int) -> bool:
    """Whether a stop was requested (SIGTERM, Ctrl-C), agreed by every process at the same step."""
    if jax.process_count() > 1:
      # jax.distributed's preemption notifier catches SIGTERM on any process;
      # every process reaches the same answer at the same step.
      from jax.experimental import multihost_utils
      return multihost_utils.reached_preemption_sync_point(step)
    return self.requested

  def close(self):
    """Restores the signal handlers it replaced."""
    for signum, previous in self._previous.items():
      signal.signal(signum, previous)
    self._previous = {}
