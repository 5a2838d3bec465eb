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
with the next one. Line N samples with `decoding.row_key(seed, N - 1)` (its
0-based position, the rule of every command), so a resumed run writes what an
uninterrupted one would have, and what `t5tune.generate(rng=seed)` gives the
same prompts in order.

What produced the output (checkpoint path and step, its fingerprint, method
and decoding options, vocabulary, template, seed, t5tune version) is written
beside it in `OUTPUT.producer.json` before the first line. A rerun continues
only for the same producer; another one is refused naming what differs, or
starts over with `overwrite=True` (`--overwrite`).

Input length, as the server does it: a prompt longer than `max_input_len`
tokens (EOS included; default `DEFAULT_MAX_INPUT_LEN`, T5's training length)
is refused before anything is written, naming its line, unless `truncate`
cuts it. (Without a limit, one runaway line would size every batch.) An
empty input writes an empty output file.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from typing import Any, Callable, Sequence

from t5tune import atomic
from t5tune import errors
from t5tune.infer import api
from t5tune.infer import decoding
from t5tune.infer import penalties
from t5tune import jsonl_append
from t5tune import progress as progress_lib

INPUT_FIELD = "inputs"
DEFAULT_MAX_INPUT_LEN = 512
PRODUCER_SUFFIX = ".producer.json"
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
  if not os.path.isfile(path):
    raise errors.InputError("no such input file", where=path, fix="give a JSONL file")
  with open(path, encoding="utf-8", errors="strict") as f:
    for number, line in enumerate(_lines(f, path), start=1):
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


def _lines(f, path):
  try:
    yield from f
  except UnicodeDecodeError as e:
    raise errors.InputError(f"not UTF-8 text ({e.reason})", where=path,
                            fix="save the file as UTF-8 JSONL") from None


def completed_lines(output_path: str, prompts: Sequence[str]) -> int:
  """Lines already predicted; a torn last line is cut off, a foreign output refused."""
  if not os.path.exists(output_path):
    return 0
  lines = jsonl_append.drop_torn_tail(output_path).splitlines()
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


def model_producer(checkpoint: str, vocab: str | None) -> dict[str, Any]:
  """What identifies the model of a predictions file: path, step, fingerprint, vocabulary, version.

  The CLI records this for --checkpoint; a Python caller resuming that output
  passes the same record as `predict_file(..., producer=model_producer(path, vocab))`.
  """
  import t5tune
  from t5tune.convert import model_dir
  path = os.path.abspath(checkpoint)
  base = os.path.basename(os.path.normpath(path))
  return {"checkpoint": path, "step": int(base) if base.isdigit() else None,
          "fingerprint": model_dir.fingerprint(path) or _file_fingerprint(path),
          "vocab": vocab or "auto", "t5tune_version": t5tune.__version__}


def _file_fingerprint(path: str) -> str:
  """Without a checksum manifest (Hugging Face dirs): names, sizes and mtimes of the files."""
  entries = sorted((n, os.stat(os.path.join(path, n)).st_size,
                    os.stat(os.path.join(path, n)).st_mtime_ns)
                   for n in os.listdir(path) if os.path.isfile(os.path.join(path, n)))
  return hashlib.sha256(repr(entries).encode()).hexdigest()[:16]


def producer_path(output_path: str) -> str:
  """The file beside a predictions file that records what produced it."""
  return output_path + PRODUCER_SUFFIX


def check_output(output_path: str, producer: dict[str, Any] | None, overwrite: bool = False) -> None:
  """Before any model is loaded: the output can be written, and a resume is for the same producer.

  With `overwrite`, an existing output is accepted only if it is of this kind
  (a predictions file with its producer record); `predict_file` then starts it over.
  """
  parent = os.path.dirname(os.path.abspath(output_path)) or "."
  if not os.path.isdir(parent):
    raise errors.OutputNotWritableError(
        "the output's directory does not exist" if not os.path.exists(parent)
        else "the output's parent is not a directory", where=parent,
        fix="create the directory or choose another --output")
  if os.path.isdir(output_path):
    raise errors.OutputExistsError("the output is a directory", where=output_path,
                                   fix="give a file path for --output")
  if not os.path.exists(output_path):
    return
  record = producer_path(output_path)
  saved = None
  if os.path.exists(record):
    with open(record) as f:
      try:
        saved = json.load(f)
      except json.JSONDecodeError:
        saved = None
  if overwrite:
    if saved is None and os.path.getsize(output_path) > 0:
      raise errors.OutputExistsError(
          "the output exists and is not a t5tune predictions file (no producer record beside it);"
          " refusing to replace it", where=output_path, fix="choose another --output")
    return
  if producer is None or os.path.getsize(output_path) == 0:
    return
  if saved is None:
    raise errors.OutputExistsError(
        "the output exists without a record of what produced it", where=output_path,
        fix="choose another --output, or pass --overwrite to start it over")
  producer = json.loads(json.dumps(producer))  # the form it was saved in (lists, not tuples)
  saved, producer = _flat(saved), _flat(producer)  # name the option that changed, not the dict
  differ = sorted(k for k in set(saved) | set(producer) if saved.get(k) != producer.get(k))
  if differ:
    changes = ", ".join(f"{k}: {saved.get(k)!r} -> {producer.get(k)!r}" for k in differ[:4])
    raise errors.OutputExistsError(
        f"the output was produced by other settings ({changes})", where=output_path,
        fix="rerun with the same settings to continue it, choose another --output, or pass"
        " --overwrite to start it over")


def _flat(record: dict[str, Any]) -> dict[str, Any]:
  """A producer record with its nested sections as dotted keys ("options.method")."""
  return {f"{k}.{sub}" if isinstance(v, dict) else k: x
          for k, v in record.items() for sub, x in (v.items() if isinstance(v, dict) else [(None, v)])}


def full_producer(producer: dict[str, Any] | None, *, template: str | None,
                  max_input_len: int | None, seed: int,
                  options: decoding.DecodeOptions) -> dict[str, Any]:
  """The caller's producer record (model, vocabulary, version) plus the decoding settings."""
  out = dict(producer or {})
  # A penalty that is off is left out, so an output written before penalties existed resumes.
  recorded = {k: v for k, v in dataclasses.asdict(options).items()
              if k not in penalties.NEUTRAL or k in options.active_penalties()}
  out.update(template=template, max_input_len=max_input_len, seed=seed, options=recorded)
  if options.method not in ("greedy", "beam"):
    # Outputs sampled before the one seed rule (line N used fold_in(key(seed), N))
    # lack this entry, so resuming one is refused instead of mixing two rules.
    out["seed_rule"] = "row_key(seed, N - 1)"
  return out


def check_input_lengths(vocabulary, prompts: Sequence[str], limit: int, path: str,
                        flag: str = "--max_input_len") -> None:
  """An InputError naming the first prompt longer than `limit` tokens (EOS included)."""
  for i, prompt in enumerate(prompts):
    n = len(vocabulary.encode(prompt)) + 1
    if n > limit:
      raise errors.InputError(
          f"line {i + 1} has {n} tokens, over {flag}={limit}", where=f"{path}:{i + 1}",
          fix=f"shorten it, raise {flag}, or pass --truncate to cut prompts to the limit")


def _write_producer(output_path: str, producer: dict[str, Any]) -> None:
  path = producer_path(output_path)
  atomic.write_json(path, producer, indent=1, sort_keys=True)


def predict_file(model, input_path: str, output_path: str, *, vocabulary: Any = None,
                 template: str | None = None, options: decoding.DecodeOptions = decoding.DecodeOptions(),
                 batch_size: int = 16, chunk_size: int = 64, max_input_len: int | None = None,
                 seed: int = 0, progress: bool = True, producer: dict[str, Any] | None = None,
                 overwrite: bool = False, truncate: bool = False) -> int:
  """Predicts every line of `input_path` not yet in `output_path`; returns how many it wrote.

  `producer` (JSON-ready) records what produced the output; a resume with a
  different one is refused (see the module docstring).
  """
  prompts = read_inputs(input_path, template)
  limit = max_input_len or DEFAULT_MAX_INPUT_LEN
  # Only a cut changes the predictions: without one the limit is not part of the producer.
  producer = full_producer(producer, template=template,
                           max_input_len=limit if truncate else None, seed=seed, options=options)
  check_output(output_path, producer, overwrite)
  vocabulary = api.resolve_vocabulary(model, vocabulary)
  if not truncate:
    check_input_lengths(vocabulary, prompts, limit, input_path)
  if overwrite:
    for path in (output_path, producer_path(output_path)):
      if os.path.exists(path):
        os.remove(path)
  done = completed_lines(output_path, prompts)
  if not os.path.exists(producer_path(output_path)) or done == 0:
    _write_producer(output_path, producer)
  if not os.path.exists(output_path):
    jsonl_append.append_lines(output_path, [])  # an empty input gets its (empty) output too
  chunk_size = max(chunk_size, batch_size)
  bar = None
  if progress:
    bar = progress_lib.bar(total=len(prompts), initial=done, desc="predict", unit="line")
  written = 0
  pending: list[str] = []
  for start in range(done, len(prompts), batch_size):
    end = min(start + batch_size, len(prompts))
    enc = api.encode_texts(vocabulary, prompts[start:end], limit, rows=batch_size)
    # Line N samples with row_key(seed, N - 1): its 0-based position, as in every command.
    out = decoding.decode(model, enc, options, rng=decoding.row_keys(seed, batch_size, start))
    for row in range(end - start):
      pending.append(json.dumps({
          "line": start + row + 1, "inputs": prompts[start + row],
          "prediction": api.decode_tokens(vocabulary, out.tokens[row]),
          "score": float(out.scores[row])}, ensure_ascii=False) + "\n")
    if len(pending) >= chunk_size or end == len(prompts):
      jsonl_append.append_lines(output_path, pending)
      written += len(pending)
      if bar is not None:
        bar.update(len(pending))
      pending = []
  if bar is not None:
    bar.close()
  return written
