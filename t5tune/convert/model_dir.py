"""The t5tune model-directory format: its marker, its files, recognising one and its config document.

A t5tune model directory is `config.json` ({"format": "t5tune", "model":
{T5Config fields}}) beside an orbax checkpoint of the parameters in
`params/`. Exported model dirs and training checkpoint steps share this layout
(the trainer writes the same `config.json` into each finalised step), so the
marker and the document are defined here once. Faults in reading or
converting weights are `t5tune.errors.ConversionError`.
"""
from __future__ import annotations

import hashlib
import json
import os
from typing import Any, Mapping, Sequence

from t5tune import atomic
from t5tune import errors

FORMAT = "t5tune"
CONFIG_FILE = "config.json"
PARAMS_DIR = "params"


def config_document(model_config: Mapping[str, Any]) -> dict[str, Any]:
  """The `config.json` of a t5tune model directory for T5Config fields `model_config`."""
  return {"format": FORMAT, "model": dict(model_config)}


def read_document(path: str) -> dict[str, Any]:
  """The parsed `config.json` of directory `path` (a ConversionError names a bad file)."""
  config_path = os.path.join(path, CONFIG_FILE)
  try:
    with open(config_path) as f:
      data = json.load(f)
  except FileNotFoundError:
    raise errors.ConversionError(f"no {CONFIG_FILE}", where=path,
                                 fix="point at a t5tune or Hugging Face T5 model directory") from None
  except json.JSONDecodeError as e:
    raise errors.ConversionError(f"invalid JSON ({e.msg})", where=f"{config_path}:{e.lineno}",
                                 fix="restore the file from the original model") from None
  if not isinstance(data, dict):
    raise errors.ConversionError("expected a JSON object", where=config_path,
                                 fix="restore the file from the original model")
  return data


def resolve_step(path: str) -> tuple[str, int]:
  """(model directory, step): a checkpoints/ directory means its latest finalised numbered step."""
  steps = [int(d) for d in os.listdir(path) if d.isdigit()
           and os.path.exists(os.path.join(path, d, CONFIG_FILE))] if os.path.isdir(path) else []
  if steps and not os.path.exists(os.path.join(path, CONFIG_FILE)):
    return os.path.join(path, str(max(steps))), max(steps)
  base = os.path.basename(os.path.normpath(path))
  return path, int(base) if base.isdigit() else 0


def is_t5tune_dir(path: str) -> bool:
  if not (os.path.isfile(os.path.join(path, CONFIG_FILE))
          and os.path.isdir(os.path.join(path, PARAMS_DIR))):
    return False
  try:
    return read_document(path).get("format") == FORMAT
  except errors.ConversionError:
    return False


def not_a_model_dir(path: str) -> errors.T5tuneError:
  latest, step = resolve_step(path)
  if latest != path:  # a training run's checkpoints/ directory: say which step to give
    return errors.InputError(
        "a checkpoints/ directory, not one model", where=path,
        fix=f"give one of its steps, e.g. the latest: {latest} (step {step})")
  return errors.ConversionError(
      "neither a t5tune model nor a Hugging Face T5 directory", where=path,
      fix=f"expected {CONFIG_FILE} with \"format\": \"{FORMAT}\" beside {PARAMS_DIR}/, or"
      f" {CONFIG_FILE} + model.safetensors")


# -- checksums -------------------------------------------------------------------
# orbax verifies neither array bytes nor files on restore (its metadata holds
# shapes and dtypes only), so a model dir or checkpoint step carries a manifest
# of SHA-256 digests of its array files, written atomically beside them.

CHECKSUM_FILE = "checksums.json"
_CHUNK = 1 << 22


def _digest(path: str) -> str:
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(_CHUNK), b""):
      h.update(block)
  return h.hexdigest()


def _array_files(directory: str, items: Sequence[str]) -> list[str]:
  out = []
  for item in items:
    root = os.path.join(directory, item)
    for dirpath, _, names in os.walk(root):
      out.extend(os.path.relpath(os.path.join(dirpath, n), directory) for n in names)
  return sorted(out)


def write_checksums(directory: str, items: Sequence[str] = (PARAMS_DIR,)) -> str:
  """Writes `checksums.json` ({relative path: sha256}) for the files under `items`; returns it."""
  manifest = {rel: _digest(os.path.join(directory, rel)) for rel in _array_files(directory, items)}
  path = os.path.join(directory, CHECKSUM_FILE)
  atomic.write_json(path, {"algorithm": "sha256", "files": manifest}, indent=1, sort_keys=True)
  return path


def fingerprint(directory: str) -> str | None:
  """A short digest of the checksum manifest (None without one): names a model's exact bytes."""
  path = os.path.join(directory, CHECKSUM_FILE)
  if not os.path.isfile(path):
    return None
  with open(path, "rb") as f:
    return hashlib.sha256(f.read()).hexdigest()[:16]


def verify_checksums(directory: str) -> bool:
  """Checks every file the manifest lists; False when there is no manifest (older dirs).

  A missing, changed or unreadable file is a CheckpointError naming it.
  """
  path = os.path.join(directory, CHECKSUM_FILE)
  if not os.path.isfile(path):
    return False
  fix = "the file is corrupt: restore it from a copy, or use an earlier checkpoint step"
  try:
    with open(path) as f:
      files = json.load(f)["files"]
  except (json.JSONDecodeError, KeyError, TypeError):
    raise errors.CheckpointError("unreadable checksum manifest", where=path, fix=fix) from None
  for rel, digest in files.items():
    full = os.path.join(directory, rel)
    if not os.path.isfile(full):
      raise errors.CheckpointError("a file listed in the checksum manifest is missing",
                                   where=full, fix=fix)
    if _digest(full) != digest:
      raise errors.CheckpointError("checksum mismatch: the file changed after it was written",
                                   where=full, fix=fix)
  return True
