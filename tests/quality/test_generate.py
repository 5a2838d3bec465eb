"""Self-Instruct generation: filters and counts, determinism with a seed, resume after kill -9."""
import json
import os
import time

import pytest

from t5tune import data
from t5tune.cli import data_quality
from t5tune.convert import loading
from t5tune.quality import generate
from t5tune.models import config as model_config
from t5tune.models import t5
from tests import cli

SEEDS = ["Write a short poem about the sea.", "Translate the sentence into French.",
         "List three fruits that are red.", "Summarize the paragraph in one sentence.",
         "Give an antonym of the word.", "Sort the numbers from smallest to largest."]
# A random byte model writes gibberish: accept one-word instructions so some survive.
FLAGS = dict(num=6, seed=3, k=2, batch_size=4, max_decode_len=12, min_words=1)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
  root = tmp_path_factory.mktemp("gen")
  seed_path = root / "seed.jsonl"
  seed_path.write_text("".join(json.dumps({"instruction": s}) + "\n" for s in SEEDS))
  model = t5.build_model(model_config.preset("tiny"), seed=0)
  ckpt = str(root / "model")
  loading.save_model(model, ckpt)
  return root, str(seed_path), ckpt, model


def test_filters_count_every_rejection_by_reason(tmp_path):
  replies = [  # the model's new instruction, attempt by attempt (batches of 4)
      "Task 3: Write a short poem about the blue sea",  # ROUGE-L 0.93 to a seed
      "Draw a picture of a cat.", "Hi", "?? what is this",
      "Name a color of the sky.\nTask 4: more", "Name a colour of the sky",  # 2nd: ROUGE-L 0.83
      "name a color of the sky", "Explain why leaves are green."]  # a duplicate; empty answer
  instruction_calls = []

  def fake(prompts, rng):
    if prompts[0].startswith("Come up with a series of tasks:"):
      instruction_calls.append(rng)
      start = 4 * (len(instruction_calls) - 1)
      return replies[start:start + len(prompts)]
    return ["" if "leaves" in p else f"An answer to: {p}" for p in prompts]

  out = tmp_path / "new.jsonl"
  stats = generate.run(fake, [{"instruction": s} for s in SEEDS], str(out),
                       generate.Settings(num=3, batch_size=4, max_attempts=8, k=2),
                       generator={"model": "fake"})
  assert stats["counts"] == {"rouge_similar": 2, "forbidden_keyword": 1, "too_short": 1,
                             "starts_with_punctuation": 1, "duplicate_input": 1,
                             "empty_output": 1, "kept": 1}
  assert stats["attempts"] == 8 and not stats["complete"]
  assert len(set(instruction_calls)) == 2  # a seed per batch, derived from (seed, batch)
  records = [json.loads(l) for l in out.read_text().splitlines()]
  assert records == [{"instruction": "Name a color of the sky.",
                      "output": "An answer to: Name a color of the sky.", "attempt": 4,
                      "generator": {"model": "fake", "seed": 0, "k": 2}}]
  prompt = generate.instruction_prompt(["a", "b"])
  assert prompt == "Come up with a series of tasks:\nTask 1: a\nTask 2: b\nTask 3:"


def test_deterministic_with_a_seed_and_loadable_by_register_task(setup, tmp_path):
  root, seed_path, ckpt, model = setup
  a, b, c = (str(tmp_path / f"{n}.jsonl") for n in "abc")
  sa = data_quality.generate_file(model, ckpt, seed_path, a, **FLAGS)
  data_quality.generate_file(model, ckpt, seed_path, b, **FLAGS)
  data_quality.generate_file(model, ckpt, seed_path, c, **{**FLAGS, "seed": 4})
  assert sa["records"] == 6, sa
  assert open(a).read() == open(b).read() != open(c).read()
  first = json.loads(open(a).readline())
  assert first["generator"]["temperature"] == 0.7 and first["generator"]["top_p"] == 0.9
  assert first["generator"]["checkpoint"] == os.path.abspath(ckpt)
  assert first["generator"]["seed"] == 3
  assert "presence_penalty" not in first["generator"]  # off: not recorded, older outputs resume
  # Self-Instruct's presence penalty: recorded, and a different sample from the same seed.
  d = str(tmp_path / "d.jsonl")
  data_quality.generate_file(model, ckpt, seed_path, d, **FLAGS, presence_penalty=2.0)
  assert json.loads(open(d).readline())["generator"]["presence_penalty"] == 2.0
  assert open(d).read() != open(a).read()
  data.register_task("t5tune_generated", source={"train": a}, fields=["instruction", "output"],
                     templates=[data.Template("g", "{instruction}", "{output}")],
                     on_bad_record="skip", dedup=None, overwrite=True)
  assert data.tasks.get_info("t5tune_generated").source.records("train")[1]["read"] == 6


def test_resumes_after_kill_9_to_the_same_file(setup, tmp_path):
  root, seed_path, ckpt, model = setup
  reference = str(tmp_path / "reference.jsonl")
  num = 24
  ref = data_quality.generate_file(model, ckpt, seed_path, reference, **{**FLAGS, "num": num})
  assert ref["records"] == num
  out = str(tmp_path / "killed.jsonl")
  args = ["data", "generate", f"--checkpoint={ckpt}", f"--seed_tasks={seed_path}",
          f"--output={out}"] + [f"--{k}={v}" for k, v in {**FLAGS, "num": num}.items()]
  log = tmp_path / "killed.log"
  proc = cli.start(args, log=log)
  progress = out + generate.PROGRESS_SUFFIX
  deadline = time.time() + 240
  while time.time() < deadline and proc.poll() is None:
    if os.path.exists(progress) and json.load(open(progress))["records"] > 0:
      break
    time.sleep(0.02)
  assert proc.poll() is None, log.read_text()[-2000:]
  proc.kill()
  proc.wait()
  partial = json.load(open(progress))
  assert 0 < partial["records"] < num  # killed mid-run
  # Simulate the worst moment: a batch appended but not yet in the progress record.
  with open(out, "a") as f:
    f.write('{"instruction": "torn')
  done = cli.run(args, timeout=300)
  assert done.returncode == 0, done.stderr[-2000:]
  assert open(out).read() == open(reference).read()
  # Other settings on the same output are refused, not mixed in.
  other = cli.run(args + ["--seed=9"], timeout=300)
  assert other.returncode != 0 and "other settings" in other.stderr
