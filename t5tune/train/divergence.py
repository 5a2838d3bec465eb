"""A training-loop part that reports divergence that is not a NaN: a stuck loss, zero gradients,
a loss that grew by orders of magnitude.

It reads the logged window means (`loop.train_metrics`, set by the LogTrain
hook every `train.log_every` steps) and raises `t5tune.errors.TrainingFault`
naming the step, so the run stops with one line instead of training on to the
end. The thresholds are deliberately loose: each pattern is one that a healthy
run does not show.
"""
from __future__ import annotations

import math

from t5tune import errors
from t5tune.train import hooks

_FIX = ("check the learning rate and schedule (config.optimizer, config.schedule), what is"
        " frozen (config.optimizer.freeze / train_only) and the data; the last checkpoint"
        " before this step is intact")


class Divergence(hooks.Hook):
  """Raises TrainingFault when, over `patience` consecutive logs, the loss does not change or
  the gradient norm is exactly 0, or when a logged loss exceeds `blowup` x the lowest one."""

  def __init__(self, patience: int = 5, blowup: float = 100.0):
    self.patience, self.blowup = patience, blowup
    self._last_loss = None
    self._same_loss = 0
    self._zero_grads = 0
    self._lowest = math.inf
    self._seen = None  # the metrics dict last looked at (LogTrain replaces it when it logs)

  def after_step(self, loop: hooks.LoopState) -> None:
    metrics = loop.train_metrics
    if not metrics or metrics is self._seen or "loss" not in metrics:
      return
    self._seen = metrics
    loss = float(metrics["loss"])
    where = f"step {loop.step}"
    self._same_loss = self._same_loss + 1 if loss == self._last_loss else 0
    self._last_loss = loss
    if self._same_loss >= self.patience:
      raise errors.TrainingFault(
          f"the training loss has not changed for {self._same_loss + 1} logs (loss={loss:.6g})",
          where=where, fix=_FIX)
    grad = metrics.get("grad_norm")
    self._zero_grads = self._zero_grads + 1 if grad == 0.0 else 0
    if self._zero_grads >= self.patience:
      raise errors.TrainingFault(
          f"the gradient norm has been exactly 0 for {self._zero_grads} logs", where=where,
          fix=_FIX)
    if self._lowest < math.inf and loss > self.blowup * max(self._lowest, 1e-12):
      raise errors.TrainingFault(
          f"the training loss rose to {loss:.4g}, over {self.blowup:g}x its lowest"
          f" ({self._lowest:.4g})", where=where, fix=_FIX)
    self._lowest = min(self._lowest, loss)
