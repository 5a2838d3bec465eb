"""Training checkpoints: orbax CheckpointManager items, the data-iterator item, resume.

A training checkpoint `workdir/checkpoints/<step>/` holds these orbax items:

  params/     the model parameters as an `nnx.State` (the layout of a t5tune
              model directory, so `t5tune.convert.loading.load_model` reads it
              once `config.json` is there)
  state/      step, optimizer state and RNG key
  data/       the data iterator's position, one sub-directory per process
  experiment/ the full resolved experiment config (JSON)
  config.json the model config in the t5tune model-directory format, written
              into finalised steps (after orbax's rename: at the next save,
              at the end of training, and when a run resumes)

orbax writes every item of a step into a temporary directory and renames it
when all processes have finished, so an interrupted save is never restored
(the manager lists only finalised steps).

A save that runs out of disk space (the write fails with ENOSPC, EDQUOT or
EFBIG, in Python or in TensorStore) is a `t5tune.errors.DiskFullError` naming
the directory, the step and the step a rerun resumes from; the partial
temporary directory is removed (it holds space the user needs back) and every
finalised step stays as it was.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import shutil
import threading
import time
from typing import Any, Mapping

import jax
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers

from t5tune import atomic
from t5tune import errors
from t5tune.convert import model_dir
from t5tune.models import config as model_config_lib


class DataIteratorHandler(ocp.CheckpointHandler):
  """Saves and restores a data iterator with `save(dir)` / `restore(dir)` methods.

  Synchronous on purpose: the iterator's position must be captured at the
  moment of the save call, before training consumes the next batch. Each
  process writes its own shard's position.
  """

  def save(self, directory, args: "DataIteratorSave"):
    """Saves this process's data-iterator state under `directory`."""
    path = os.path.join(os.fspath(directory), f"process_{jax.process_index()}")
    os.makedirs(path, exist_ok=True)
    args.iterator.save(path)

  def restore(self, directory, args: "DataIteratorRestore"):
    """Restores this process's data-iterator state (FileNotFoundError if another process count wrote it)."""
    path = os.path.join(os.fspath(directory), f"process_{jax.process_index()}")
    if not os.path.isdir(path):
      raise FileNotFoundError(
          f"{path}: no data-iterator state for process {jax.process_index()};"
          " was this checkpoint written with a different number of processes?")
    args.iterator.restore(path)
    return args.iterator


@ocp.args.register_with_handler(DataIteratorHandler, for_save=True)
@dataclasses.dataclass
class DataIteratorSave(ocp.args.CheckpointArgs):
  """orbax's save argument for a data iterator."""
  iterator: Any


@ocp.args.register_with_handler(DataIteratorHandler, for_restore=True)
@dataclasses.dataclass
class DataIteratorRestore(ocp.args.CheckpointArgs):
  """orbax's restore argument for a data iterator."""
  iterator: Any


def write_model_config(step_dir: str, model_config: Mapping[str, Any]) -> None:
  """Writes `config.json` (t5tune model-directory format) atomically into a finalised step."""
  path = os.path.join(step_dir, "config.json")
  if os.path.exists(path) or not os.path.isdir(step_dir):
    return
  # Checksums first: a step with config.json always has its manifest.
  model_dir.write_checksums(step_dir, CHECKSUMMED_ITEMS)
  atomic.write_json(path, model_dir.config_document(model_config), indent=2)


# T5Config fields that change numerics only; a checkpoint restores under new values.
_NUMERICS_ONLY = ("dtype", "dropout_rate", "remat_policy")
# Items whose files t5tune.convert.model_dir checksums (orbax verifies no bytes).
CHECKSUMMED_ITEMS = ("params", "state")


def check_resumable(workdir: str, model_config: Mapping[str, Any]) -> None:
  """Refuses to resume a workdir whose checkpoints hold another model, naming the differing keys.

  Called before anything in the workdir is written (its config.json included),
  so an incompatible run changes nothing.
  """
  directory = os.path.join(workdir, "checkpoints")
  steps = sorted((int(n) for n in os.listdir(directory) if n.isdigit()), reverse=True) if (
      os.path.isdir(directory)) else []
  for step in steps:
    path = os.path.join(directory, str(step), model_dir.CONFIG_FILE)
    if not os.path.isfile(path):
      continue
    with open(path) as f:
      saved = json.load(f).get("model", {})
    # A field added to T5Config after the step was written has its default there.
    saved = {**model_config_lib.T5Config().to_dict(), **saved}
    new = json.loads(json.dumps(dict(model_config)))  # tuples as lists, as saved
    differ = sorted(k for k in set(saved) | set(new)
                    if k not in _NUMERICS_ONLY and saved.get(k) != new.get(k))
    if differ:
      changes = ", ".join(f"{k}: {saved.get(k)!r} -> {new.get(k)!r}" for k in differ[:5])
      fix = ("start a new --workdir for the new model, or restore the old model settings to"
             " resume")
      if differ == ["scan_layers"]:
        # The weights convert between layouts; the optimizer state is not converted.
        fix = (f"resume with model.scan_layers={saved.get('scan_layers')!r}, or start a new"
               " --workdir with --config.init_from=<a step dir of this one> (the weights load"
               " in either layout; the optimizer state starts afresh)")
      raise errors.CheckpointError(
          f"the workdir's checkpoints hold another model ({changes})",
          where=os.path.join(directory, str(step)), fix=fix)
    return


def _join_orbax_threads(timeout: float = 60.0) -> None:
  """Waits for orbax's helper threads: after a save fails they still write the step's metadata
  (e.g. `_sharding`), which would recreate the partial directory once it is removed."""
  deadline = time.monotonic() + timeout
  for thread in threading.enumerate():
    if thread is not threading.current_thread() and type(thread).__module__.startswith("orbax."):
      with contextlib.suppress(Exception):  # orbax's join re-raises the thread's error: the same
        thread.join(max(0.0, deadline - time.monotonic()))  # failure, being reported already


class Checkpointer:
  """The trainer's view of orbax: keep-last-N plus best-N, async saves, exact resume."""

  def __init__(self, directory: str, *, model_config: Mapping[str, Any],
               keep: int = 3, keep_best: int = 0, best_metric: str = "",
               best_mode: str = "min", async_save: bool = True):
    self.directory = os.path.abspath(directory)
    self._model_config = dict(model_config)
    self._pending = None  # the step whose save may still be running
    self._failed: errors.DiskFullError | None = None
    self._async = async_save
    if keep < 1:
      raise errors.UsageError(f"keep={keep}: a run keeps at least its latest checkpoint",
                              where="config.checkpoint.keep", fix="give 1 or more")
    policies = [checkpoint_managers.LatestN(n=keep)]
    if keep_best and best_metric:
      policies.append(checkpoint_managers.BestN(
          get_metric_fn=lambda metrics: metrics[best_metric],
          # BestN keeps the last n after sorting; descending order keeps the lowest.
          reverse=(best_mode == "min"), n=keep_best,
          keep_checkpoints_without_metrics=False))
    options = ocp.CheckpointManagerOptions(
        preservation_policy=checkpoint_managers.AnyPreservationPolicy(policies),
        enable_async_checkpointing=async_save,
        async_options=(ocp.AsyncOptions(post_finalization_callback=self._after_finalize)
                       if async_save else None),
        create=True)
    self.manager = ocp.CheckpointManager(
        self.directory, options=options,
        item_handlers={
            "params": ocp.StandardCheckpointHandler(),
            "state": ocp.StandardCheckpointHandler(),
            "data": DataIteratorHandler(),
            "experiment": ocp.JsonCheckpointHandler(),
        })

  def _after_finalize(self):
    if jax.process_index() != 0:
      return
    # Finalised steps are directories named by the bare step number (orbax
    # renames `<step>.orbax-checkpoint-tmp*` into place when a save commits).
    for name in os.listdir(self.directory):
      if name.isdigit():
        write_model_config(os.path.join(self.directory, name), self._model_config)

  def latest_step(self) -> int | None:
    """The newest complete checkpoint step, or None."""
    self._after_finalize()
    return self.manager.latest_step()

  def all_steps(self) -> list[int]:
    """Every checkpoint step kept."""
    return list(self.manager.all_steps())

  def step_dir(self, step: int) -> str:
    """The directory of checkpoint `step`."""
    return os.path.join(self.directory, str(step))

  def save(self, step: int, *, params: Any, state: Any, iterator: Any | None,
           experiment: Mapping[str, Any], metrics: Mapping[str, float] | None = None,
           force: bool = False) -> bool:
    """Starts an asynchronous save of `step`; returns whether one was started."""
    self._after_finalize()  # config.json for steps finalised since the last save
    items = {
        "params": ocp.args.StandardSave(params),
        "state": ocp.args.StandardSave(state),
        "experiment": ocp.args.JsonSave(dict(experiment)),
    }
    if iterator is not None:
      items["data"] = DataIteratorSave(iterator)
    # orbax finishes the previous save before it starts this one: waited for apart, so that a
    # failure is told with the step it belongs to.
    with self._out_of_space(self._pending):
      self.manager.wait_until_finished()
    self._pending = None
    with self._out_of_space(step):
      started = self.manager.save(step, args=ocp.args.Composite(**items),
                                  metrics=dict(metrics) if metrics else None, force=force)
    if started:
      self._pending = step
    if not self._async:
      self._after_finalize()
    return started

  @contextlib.contextmanager
  def _out_of_space(self, step: int | None):
    """Turns a save that ran out of space into one DiskFullError; removes its partial directory."""
    if self._failed is not None:
      raise self._failed
    try:
      yield
    except Exception as e:
      code = errors.out_of_space(e)
      if code is None:
        raise
      failed = step if step is not None else self._pending
      _join_orbax_threads()
      for name in os.listdir(self.directory):
        if re.fullmatch(r"\d+\.orbax-checkpoint-tmp.*", name):
          shutil.rmtree(os.path.join(self.directory, name), ignore_errors=True)
      good = self.manager.latest_step()
      resumes = (f"it resumes from step {good}, which is intact" if good is not None
                 else "it starts again from step 0 (no checkpoint was complete)")
      self._failed = errors.DiskFullError(
          f"checkpoint step {failed} could not be written: {os.strerror(code)}",
          where=self.directory,
          fix=f"free space there (or lower --config.checkpoint.keep) and rerun the same"
          f" command: {resumes}")
      raise self._failed from None

  def restore(self, step: int, *, abstract_params: Any, abstract_state: Any,
              iterator: Any | None) -> tuple[Any, Any]:
    """Restores params and state onto the shardings of the abstract targets (any mesh)."""
    model_dir.verify_checksums(self.step_dir(step))
    items = {
        "params": ocp.args.StandardRestore(abstract_params),
        "state": ocp.args.StandardRestore(abstract_state),
    }
    if iterator is not None:
      items["data"] = DataIteratorRestore(iterator)
    restored = self.manager.restore(step, args=ocp.args.Composite(**items))
    return restored["params"], restored["state"]

  def wait(self) -> None:
    """Waits for a background save to finish (a full disk is reported here)."""
    with self._out_of_space(self._pending):
      self.manager.wait_until_finished()
    self._pending = None
    self._after_finalize()

  def close(self) -> None:
    """Waits for pending saves and closes the manager."""
    if self._failed is not None:  # reported already; orbax would raise the same failure again
      with contextlib.suppress(Exception):
        self.manager.close()
      return
    self.wait()
    self.manager.close()
