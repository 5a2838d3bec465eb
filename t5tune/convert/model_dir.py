"""The t5tune model-directory format: its marker, its files, recognising one and its config document.

A t5tune model directory is `config.json` ({"format": "t5tune", "model":
{T5Config fields}}) beside an orbax checkpoint of the parameters in
`params/`. Exported model dirs and training checkpoint steps share this layout
(the trainer writes the same `config.json` into each finalised step), so the
marker and the document are defined here once. Faults in reading or
converting weights are `t5tune.errors.ConversionError`.
"""
from __future__ import annotations

import json
import os
from typing import Any, Mapping

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


def is_t5tune_dir(path: str) -> bool:
  if not (os.path.isfile(os.path.join(path, CONFIG_FILE))
          and os.path.isdir(os.path.join(path, PARAMS_DIR))):
    return False
  try:
    return read_document(path).get("format") == FORMAT
  except errors.ConversionError:
    return False


def not_a_model_dir(path: str) -> errors.ConversionError:
  return errors.ConversionError(
      "neither a t5tune model nor a Hugging Face T5 directory", where=path,
      fix=f"expected {CONFIG_FILE} with \"format\": \"{FORMAT}\" beside {PARAMS_DIR}/, or"
      f" {CONFIG_FILE} + model.safetensors")
