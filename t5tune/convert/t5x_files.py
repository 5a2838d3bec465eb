"""Reads the arrays of one T5X checkpoint step, in any of the three on-disk formats t5x writes.

1. msgpack, arrays inline: `checkpoint_N/checkpoint` holds
   `{"version", "optimizer": {"target": params, "state": {"step", "param_states"}}}`
   serialised by `flax.serialization` (numpy arrays as msgpack extension
   types; nothing is pickled).
2. msgpack + TensorStore: the same file, but each large array is replaced by
   the JSON spec of a zarr array written beside it, in a directory named by
   the array's path with `/` replaced by `.` (`target.encoder.layers_0...`,
   gzip-compressed chunks). The spec's path is relative to the step directory
   (a `gcs` spec keeps only the name; it is read from the same directory).
3. Orbax (newer t5x): `checkpoint_N/state/` is an orbax PyTree checkpoint
   (`_METADATA`, OCDBT) of the same `{"target", "state"}` tree.

Only the parameters (`target`) are read into memory; the optimizer state is
reported by name, not loaded.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any

import numpy as np

from t5tune import errors

MSGPACK_FILE = "checkpoint"
ORBAX_METADATA = "_METADATA"


@dataclasses.dataclass
class T5XCheckpoint:
  """The parameters of one step, flat: "encoder/layers_0/attention/query/kernel" -> array."""

  target: dict[str, np.ndarray]
  format: str  # "msgpack", "msgpack+tensorstore" or "orbax"
  step: int | None
  # Names of optimizer-state leaves under state/param_states (e.g. ".../v_row"),
  # for reporting what was not imported.
  state_leaves: list[str]


def _flatten(tree: Any, prefix: str = "", is_leaf=lambda x: False):
  if isinstance(tree, dict) and not is_leaf(tree):
    for key, value in tree.items():
      yield from _flatten(value, f"{prefix}/{key}" if prefix else str(key), is_leaf)
  else:
    yield prefix, tree


def _is_ts_spec(node: Any) -> bool:
  return isinstance(node, dict) and {"driver", "kvstore"} <= set(node)


def _error(what: str, where: str, fix: str) -> errors.ConversionError:
  return errors.ConversionError(what, where=where, fix=fix)


def locate(path: str) -> tuple[str, str]:
  """(kind, location) of a T5X step: ("orbax", state dir) or ("msgpack", checkpoint file)."""
  path = os.path.abspath(os.fspath(path))
  if not os.path.exists(path):
    raise errors.InputError("no such T5X checkpoint", where=path,
                            fix="pass a step directory such as .../checkpoint_1000000")
  if os.path.isfile(path):
    return "msgpack", path
  if os.path.isfile(os.path.join(path, "state", ORBAX_METADATA)):
    return "orbax", os.path.join(path, "state")
  # t5x's own rule: a `_METADATA` beside the `checkpoint` file means Orbax wrote it.
  if os.path.isfile(os.path.join(path, ORBAX_METADATA)):
    return "orbax", path
  if os.path.isfile(os.path.join(path, MSGPACK_FILE)):
    return "msgpack", os.path.join(path, MSGPACK_FILE)
  steps = sorted((n for n in os.listdir(path) if n.startswith("checkpoint_")),
                 key=lambda n: int(n.rsplit("_", 1)[-1]) if n.rsplit("_", 1)[-1].isdigit() else -1)
  fix = (f"pass one step directory, e.g. {os.path.join(path, steps[-1])}" if steps else
         "expected a `checkpoint` msgpack file (with optional TensorStore directories) or an"
         " Orbax `state/` directory with `_METADATA`")
  raise _error("not a T5X checkpoint step directory", path, fix)


def read(path: str) -> T5XCheckpoint:
  """Reads the parameters of the T5X checkpoint step at `path` (a directory or its msgpack file)."""
  kind, location = locate(path)
  if kind == "orbax":
    return _read_orbax(location)
  return _read_msgpack(location)


def _read_msgpack(file_path: str) -> T5XCheckpoint:
  from flax import serialization  # flax decodes its own ndarray extension types; no pickle
  with open(file_path, "rb") as f:
    raw = f.read()
  if raw.startswith(b"model_checkpoint_path"):
    raise _error("this is a TensorFlow (Mesh TensorFlow) checkpoint index, not a T5X one",
                 file_path, "convert it with t5x's convert_tf_checkpoint script first")
  try:
    contents = serialization.msgpack_restore(raw)
  except Exception as e:  # msgpack raises several unrelated types for corrupt input
    raise _error(f"not a readable msgpack T5X checkpoint ({type(e).__name__}: {e})",
                 file_path, "pass the `checkpoint` file t5x wrote (or its directory)") from None
  if not (isinstance(contents, dict) and isinstance(contents.get("optimizer"), dict)
          and isinstance(contents["optimizer"].get("target"), dict)):
    keys = sorted(contents) if isinstance(contents, dict) else type(contents).__name__
    raise _error(f"no optimizer/target parameters in the msgpack file (top level: {keys})",
                 file_path, "expected t5x's {\"version\", \"optimizer\": {\"target\", \"state\"}}")
  directory = os.path.dirname(file_path)
  target, uses_ts = {}, False
  for name, leaf in _flatten(contents["optimizer"]["target"], is_leaf=_is_ts_spec):
    if _is_ts_spec(leaf):
      uses_ts = True
      target[name] = _read_tensorstore(leaf, directory, name)
    elif leaf is not None:
      target[name] = np.asarray(leaf)
  state = contents["optimizer"].get("state") or {}
  return T5XCheckpoint(
      target=target, format="msgpack+tensorstore" if uses_ts else "msgpack",
      step=_step(state.get("step") if isinstance(state, dict) else None),
      state_leaves=[n for n, _ in _flatten(state.get("param_states", {}), is_leaf=_is_ts_spec)]
      if isinstance(state, dict) else [])


def _read_tensorstore(spec: dict, directory: str, name: str) -> np.ndarray:
  import tensorstore as ts
  spec = {**spec, "kvstore": dict(spec["kvstore"])}
  kv = spec["kvstore"]
  # t5x writes relative paths; on GCS the name sits in spec["path"]. Either
  # way the array lives in the step directory next to the msgpack file.
  rel = kv.get("path") or spec.pop("path", None) or f"target.{name.replace('/', '.')}"
  spec.pop("path", None)
  full = rel if os.path.isabs(rel) else os.path.join(directory, rel)
  spec["kvstore"] = {"driver": "file", "path": full}
  if not os.path.isdir(full):
    raise _error(f"TensorStore array for {name} is missing", full,
                 "copy the whole step directory (the msgpack file and the target.* directories)")
  try:
    return np.asarray(ts.open(spec, open=True, read=True).result().read().result())
  except Exception as e:  # tensorstore reports corrupt data as ValueError/RuntimeError
    raise _error(f"cannot read TensorStore array for {name}: {e}".splitlines()[0], full,
                 "re-copy the checkpoint; the zarr directory is incomplete or corrupt") from None


def _read_orbax(state_dir: str) -> T5XCheckpoint:
  import jax
  import orbax.checkpoint as ocp
  with ocp.PyTreeCheckpointer() as ckptr:
    try:
      tree = ckptr.metadata(state_dir).item_metadata.tree
    except Exception as e:  # orbax raises FileNotFoundError/ValueError for missing parts
      raise _error(f"unreadable Orbax metadata ({type(e).__name__})", state_dir,
                   "pass a complete t5x step directory (checkpoint_N with state/)") from None
    if not isinstance(tree, dict) or "target" not in tree:
      raise _error("the Orbax checkpoint has no `target` parameters", state_dir,
                   "expected t5x's {\"target\", \"state\"} train-state tree")
    # Restoring only `target`, as host numpy arrays: the optimizer state can be
    # as large as the parameters and is not imported.
    item = {"target": tree["target"]}
    restore_args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), item)
    restored = ckptr.restore(state_dir, args=ocp.args.PyTreeRestore(
        item=item, restore_args=restore_args, partial_restore=True))
  state = tree.get("state") or {}
  step = None
  if isinstance(state, dict) and "step" in state:
    with ocp.PyTreeCheckpointer() as ckptr:
      step_tree = ckptr.restore(state_dir, args=ocp.args.PyTreeRestore(
          item={"state": {"step": state["step"]}},
          restore_args={"state": {"step": ocp.RestoreArgs(restore_type=np.ndarray)}},
          partial_restore=True))
    step = _step(step_tree["state"]["step"])
  return T5XCheckpoint(
      target={n: np.asarray(v) for n, v in _flatten(restored["target"])},
      format="orbax", step=step,
      state_leaves=[n for n, _ in _flatten(state.get("param_states", {}))]
      if isinstance(state, dict) else [])


def _step(value) -> int | None:
  try:
    return None if value is None else int(np.asarray(value))
  except (TypeError, ValueError):
    return None
