"""Model-assisted generation of new instructions (Self-Instruct style): prompts, filters, resumable output.

    stats = generate.run(generate_fn, seed_records, "new.jsonl",
                         generate.Settings(num=200, seed=0), generator={"checkpoint": ...})

`generate_fn(prompts, seed) -> texts` is the model (the `t5tune data generate`
command passes t5tune's sampling decoder, `t5tune.infer.api.generate`); this
module is the pipeline around it, as in Self-Instruct (Wang et al. 2023):

1. an attempt shows the model `k` instructions sampled from the pool (the seed
   tasks plus those kept so far) as a numbered list and takes the first line
   it writes after `Task k+1:` as a new instruction;
2. validity rules drop it (each counted by reason): fewer than `min_words` or
   more than `max_words` words, a forbidden keyword (Self-Instruct's list:
   things a text model cannot do, such as images or files), starting with a
   punctuation mark or a non-ASCII character, or the same normalised text as
   an instruction already in the pool (`duplicate_input`);
3. the model answers each survivor (the instruction itself is the prompt); an
   empty answer drops it;
4. the ROUGE-L novelty filter (`neardup.RougeFilter`, >= 0.7 to any pool
   instruction) drops what is too close to one already there.

Records are JSON lines `{"instruction", "output", "attempt", "generator"}`
with the model and its settings (checkpoint, temperature, top-p, lengths,
seed, k) in every record; `register_task(source={"train": "new.jsonl"},
fields=["instruction", "output"], ...)` loads them.

Deterministic and resumable. Attempts run in batches of `batch_size`; the
seed samples of attempt `a` come from `random.Random(hash(seed, a))`, and the
model is called with a seed derived from (seed, batch), so the same settings
write the same file. After each batch the kept records are appended in one
write followed by fsync, then `OUT.progress.json` (attempts done, records
written, counts, settings) is replaced atomically (temporary sibling +
rename). A rerun after a crash or `kill -9` reads the progress, cuts the output
back to the records it lists (a batch appended but not recorded is redone,
identically) and continues; a rerun with other settings is refused.
"""
from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import os
import random
import re
import string
from typing import Any, Callable, Mapping, Sequence

from t5tune import atomic
from t5tune import errors
from t5tune import jsonl_append
from t5tune.data import cleaning
from t5tune.quality import neardup
from t5tune.data import templates as templates_lib

GenerateFn = Callable[[list[str], int], list[str]]
# Self-Instruct's keyword filter: tasks a language model cannot carry out.
FORBIDDEN = ("image", "images", "graph", "graphs", "picture", "pictures", "file", "files",
             "map", "maps", "draw", "plot", "go to", "video", "audio", "music", "flowchart",
             "diagram")
PROGRESS_SUFFIX = ".progress.json"


@dataclasses.dataclass(frozen=True)
class Settings:
  """What shapes the output (all of it is part of the resume check)."""
  num: int
  seed: int = 0
  k: int = 4
  batch_size: int = 8
  max_attempts: int = 0  # 0: 20 * num
  rouge_threshold: float = neardup.ROUGE_THRESHOLD
  min_words: int = 3
  max_words: int = 150
  forbidden: tuple[str, ...] = FORBIDDEN

  def __post_init__(self):
    if self.num < 1 or self.k < 1 or self.batch_size < 1:
      raise errors.UsageError(f"num={self.num}, k={self.k} and batch_size={self.batch_size} must be >= 1",
                              where="generate settings", fix="pass positive values")

  @property
  def attempts(self) -> int:
    return self.max_attempts or 20 * self.num


def instruction_prompt(examples: Sequence[str]) -> str:
  """Self-Instruct's prompt: a numbered list of tasks, ending where the next one starts."""
  lines = ["Come up with a series of tasks:"]
  lines += [f"Task {i + 1}: {text}" for i, text in enumerate(examples)]
  lines.append(f"Task {len(examples) + 1}:")
  return "\n".join(lines)


_TASK_PREFIX = re.compile(r"^\s*task\s*\d+\s*:\s*", re.IGNORECASE)


def parse_instruction(text: str) -> str:
  """The new instruction in a completion: its first non-empty line, without a `Task N:` label."""
  for line in text.splitlines():
    line = _TASK_PREFIX.sub("", line).strip()
    if line:
      return line
  return ""


def invalid_reason(instruction: str, settings: Settings) -> str | None:
  """Why an instruction fails the validity rules (a reason name), or None."""
  n = len(instruction.split())
  if n < settings.min_words:
    return "too_short"
  if n > settings.max_words:
    return "too_long"
  lowered = f" {cleaning.normalize(instruction)} "
  if any(f" {word} " in lowered for word in settings.forbidden):
    return "forbidden_keyword"
  first = instruction[0]
  if first in string.punctuation:
    return "starts_with_punctuation"
  if not first.isascii():
    return "non_ascii_start"
  return None


def seed_instructions(path: str) -> list[dict[str, Any]]:
  """The seed tasks: JSON lines with an `instruction` (other fields are kept, unused)."""
  out = []
  with open(path, encoding="utf-8") as f:
    for number, line in enumerate(f, start=1):
      if not line.strip():
        continue
      try:
        record = json.loads(line)
      except json.JSONDecodeError as e:
        raise errors.InputError(f"not valid JSON ({e.msg})", where=f"{path}:{number}",
                                fix="write one JSON object per line") from None
      if not isinstance(record, dict) or not isinstance(record.get("instruction"), str) \
          or not record["instruction"].strip():
        raise errors.InputError("a seed task needs a non-empty string field 'instruction'",
                                where=f"{path}:{number}", fix="add it")
      out.append(record)
  if not out:
    raise errors.InputError("no seed tasks", where=path, fix="add JSON lines with 'instruction'")
  return out


def _fingerprint(settings: Settings, generator: Mapping[str, Any], seeds: Sequence[str]) -> str:
  blob = json.dumps([dataclasses.asdict(settings), dict(generator), list(seeds)],
                    sort_keys=True, default=str)
  return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


def _write_progress(path: str, progress: Mapping[str, Any]) -> None:
  atomic.write_json(path, progress, indent=1, sort_keys=True)


def _resume(out_path: str, progress_path: str, fingerprint: str, overwrite: bool):
  """(attempts done, kept records, counts) from an earlier run of the same settings."""
  if overwrite:
    for p in (out_path, progress_path):
      if os.path.exists(p):
        os.remove(p)
  if not os.path.exists(progress_path):
    if os.path.exists(out_path):
      raise errors.OutputExistsError(
          "the output exists and has no progress record of this generation", where=out_path,
          fix="choose another --output, or pass --overwrite to replace it")
    return 0, [], collections.Counter()
  with open(progress_path) as f:
    progress = json.load(f)
  if progress.get("fingerprint") != fingerprint:
    raise errors.UsageError(
        "the output was generated with other settings, model or seed tasks", where=progress_path,
        fix="rerun with the same flags to resume, or pass --overwrite to start again")
  records = []
  if os.path.exists(out_path):
    with open(out_path, "rb") as f:
      data = f.read()
    lines = data.splitlines(keepends=True)
    keep = progress["records"]
    complete = [l for l in lines[:keep] if l.endswith(b"\n")]
    if len(complete) < keep:
      raise errors.InputError(
          f"the progress record lists {keep} records but the output has {len(complete)}",
          where=out_path, fix="pass --overwrite to start again")
    if len(lines) > keep or len(data) != sum(map(len, complete)):
      with open(out_path, "r+b") as f:  # a batch appended after the last progress record
        f.truncate(sum(map(len, complete)))
    records = [json.loads(l) for l in complete]
  return progress["attempts"], records, collections.Counter(progress["counts"])


def run(generate_fn: GenerateFn, seeds: Sequence[Mapping[str, Any]], out_path: str,
        settings: Settings, *, generator: Mapping[str, Any] | None = None,
        overwrite: bool = False, on_batch: Callable[[dict], None] | None = None) -> dict[str, Any]:
  """Generates until `settings.num` records are kept or the attempts run out; returns the stats."""
  generator = dict(generator or {})
  seed_texts = [s["instruction"].strip() for s in seeds]
  progress_path = out_path + PROGRESS_SUFFIX
  fingerprint = _fingerprint(settings, generator, seed_texts)
  done, records, counts = _resume(out_path, progress_path, fingerprint, overwrite)
  pool = seed_texts + [r["instruction"] for r in records]
  seen = {cleaning.normalize(t) for t in pool}
  novelty = neardup.RougeFilter(settings.rouge_threshold, kept=pool)
  meta = {**generator, "seed": settings.seed, "k": settings.k}
  b = settings.batch_size
  while len(records) < settings.num and done < settings.attempts:
    attempts = range(done, min(done + b, settings.attempts))
    batch_index = done // b
    prompts = []
    for a in attempts:
      rng = random.Random(templates_lib.stable_hash("generate", settings.seed, a))
      prompts.append(instruction_prompt(rng.sample(pool, min(settings.k, len(pool)))))
    raw = generate_fn(prompts, templates_lib.stable_hash("instr", settings.seed, batch_index) % 2**31)
    candidates, batch_seen = [], set()  # state is a function of the kept records only
    for a, text in zip(attempts, raw):
      instruction = parse_instruction(text)
      reason = invalid_reason(instruction, settings) if instruction else "empty_instruction"
      norm = cleaning.normalize(instruction)
      if reason is None and (norm in seen or norm in batch_seen):
        reason = "duplicate_input"
      if reason:
        counts[reason] += 1
        continue
      batch_seen.add(norm)
      candidates.append((a, instruction))
    answers = generate_fn([c[1] for c in candidates],
                          templates_lib.stable_hash("answer", settings.seed, batch_index) % 2**31
                          ) if candidates else []
    new = []
    for (a, instruction), output in zip(candidates, answers):
      if len(records) + len(new) >= settings.num:
        break
      if not output.strip():
        counts["empty_output"] += 1
      elif not novelty.add(instruction):
        counts["rouge_similar"] += 1
      else:
        counts["kept"] += 1
        new.append({"instruction": instruction, "output": output.strip(), "attempt": a,
                    "generator": meta})
    done = attempts[-1] + 1
    if new:
      jsonl_append.append_lines(out_path, [json.dumps(r, ensure_ascii=False) + "\n" for r in new])
      records.extend(new)
      pool.extend(r["instruction"] for r in new)
      seen.update(cleaning.normalize(r["instruction"]) for r in new)
    progress = {"fingerprint": fingerprint, "attempts": done, "records": len(records),
                "counts": dict(counts), "settings": dataclasses.asdict(settings),
                "generator": generator}
    _write_progress(progress_path, progress)
    if on_batch is not None:
      on_batch(progress)
  if not os.path.exists(out_path):
    jsonl_append.append_lines(out_path, [])  # an empty result is still a (valid, empty) file
  return {"records": len(records), "attempts": done, "counts": dict(counts),
          "complete": len(records) >= settings.num}
