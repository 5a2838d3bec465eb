"""Ad-hoc prediction from a JSONL file, resumable: one output line per input line, never two.

Each input line is a JSON object (its `inputs` field is the prompt, or a
`template` such as "{instruction}\\n\\n{input}" renders one from its fields)
or a JSON string (the prompt itself). Every input line is checked before
anything is decoded; a malformed one is reported as FILE:LINE.

Output lines are `{"line": N, "inputs": ..., "prediction": ..., "score": ...}`
in input order (N is the 1-based input line number). They are appended chunk
by chunk, each chunk in one write followed by fsync, so the output only ever
grows by whole chunks. A rerun after an interruption counts the complete lines
already there (dropping a torn last line, should the system have died
mid-write), checks that they are the first lines of this input, and continues
with the next one. Sampling uses `fold_in(key(seed), N)` per line, so a resumed
run writes what an uninterrupted one would have.
"""
from __future__ import annotations

import json
import os
from typing import Any, Callable, Sequence

from t5tune import errors
from t5tune.infer import api
from t5tune.infer import decoding

INPUT_FIELD = "inputs"
_ONE_PER_LINE = "every line must be one JSON object (or a JSON string)"


def render_template(template: str) -> Callable[[dict], str]:
  """A function rendering a record with a `{field}` template (`\\n` and `\\t` escapes allowed)."""
  from t5tune.data import templates  # validates placeholders the way task templates do
  fmt = template.replace("\\n", "\n").replace("\\t", "\t")
  fields = templates.placeholders(fmt)

  def render(record: dict) -> str:
    missing = [f for f in fields if f not in record]
    if missing:
      raise KeyError(f"the template needs field(s) {missing}; the line has {sorted(record)}")
    return fmt.format(**record)
  return render


def read_inputs(path: str, template: str | None = None) -> list[str]:
  """The prompt of every line of a JSONL file; InputError naming FILE:LINE for a bad line."""
  render = render_template(template) if template else None
  prompts = []
  with open(path, encoding="utf-8") as f:
    for number, line in enumerate(f, start=1):
      where = f"{path}:{number}"
      if not line.strip():
        raise errors.InputError("empty line", where=where, fix=_ONE_PER_LINE)
      try:
        record = json.loads(line)
      except json.JSONDecodeError as e:
        raise errors.InputError(f"not valid JSON ({e.msg} at column {e.colno})", where=where,
                                fix=_ONE_PER_LINE) from None
      if isinstance(record, str) and render is None:
        prompts.append(record)
        continue
      if not isinstance(record, dict):
        raise errors.InputError(f"expected a JSON object, got {type(record).__name__}",
                                where=where, fix=_ONE_PER_LINE)
      if render is not None:
        try:
          prompts.append(render(record))
        except KeyError as e:
          raise errors.InputError(e.args[0], where=where,
                                  fix="add the field(s) or change --template") from None
      elif isinstance(record.get(INPUT_FIELD), str):
        prompts.append(record[INPUT_FIELD])
      else:
        raise errors.InputError(
            f"no string field {INPUT_FIELD!r}", where=where,
            fix=f"add it, or pass --template to build the prompt from the fields {sorted(record)}")
  return prompts


def completed_lines(output_path: str, prompts: Sequence[str]) -> int:
  """Lines already predicted; a torn last line is cut off, a foreign output refused."""
  if not os.path.exists(output_path):
    return 0
  with open(output_path, "rb") as f:
    data = f.read()
  end = data.rfind(b"\n") + 1
  if end < len(data):
    with open(output_path, "r+b") as f:
      f.truncate(end)
  lines = data[:end].splitlines()
  for i, raw in enumerate(lines):
    try:
      rec = json.loads(raw)
    except json.JSONDecodeError:
      rec = None
    if not isinstance(rec, dict) or rec.get("line") != i + 1 or (
        i < len(prompts) and rec.get("inputs") != prompts[i]):
      raise errors.OutputExistsError(
          f"line {i + 1} is not the prediction for input line {i + 1}: the output belongs to"
          " another input file or settings", where=f"{output_path}:{i + 1}",
          fix="choose another --output (or remove this one)")
  if len(lines) > len(prompts):
    raise errors.OutputExistsError(
        f"the output has {len(lines)} lines but the input has {len(prompts)}", where=output_path,
        fix="choose another --output (or remove this one)")
  return len(lines)


def _append(output_path: str, lines: list[str]) -> None:
  fd = os.open(output_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
  try:
    os.write(fd, "".join(lines).encode("utf-8"))
    os.fsync(fd)
  finally:
    os.close(fd)


def predict_file(model, input_path: str, output_path: str, *, vocabulary: Any = None,
                 template: str | None = None, options: decoding.DecodeOptions = decoding.DecodeOptions(),
                 batch_size: int = 16, chunk_size: int = 64, max_input_len: int | None = None,
                 seed: int = 0, progress: bool = True) -> int:
  """Predicts every line of `input_path` not yet in `output_path`; returns how many it wrote."""
  import jax
  import numpy as np
  prompts = read_inputs(input_path, template)
  done = completed_lines(output_path, prompts)
  vocabulary = api.resolve_vocabulary(model, vocabulary)
  key = jax.random.key(seed)
  chunk_size = max(chunk_size, batch_size)
  bar = None
  if progress:
    from tqdm import tqdm
    bar = tqdm(total=len(prompts), initial=done, desc="predict", unit="line", dynamic_ncols=True)
  written = 0
  pending: list[str] = []
  for start in range(done, len(prompts), batch_size):
    end = min(start + batch_size, len(prompts))
    enc = api.encode_texts(vocabulary, prompts[start:end], max_input_len, rows=batch_size)
    keys = np.stack([np.asarray(jax.random.key_data(jax.random.fold_in(key, n + 1)))
                     for n in range(start, start + batch_size)])
    out = decoding.decode(model, enc, options, rng=keys)
    for row in range(end - start):
      pending.append(json.dumps({
          "line": start + row + 1, "inputs": prompts[start + row],
          "prediction": api.decode_tokens(vocabulary, out.tokens[row]),
          "score": float(out.scores[row])}, ensure_ascii=False) + "\n")
    if len(pending) >= chunk_size or end == len(prompts):
      _append(output_path, pending)
      written += len(pending)
      if bar is not None:
        bar.update(len(pending))
      pending = []
  if bar is not None:
    bar.close()
  return written
