"""The `t5tune` backend of lm-evaluation-harness against the harness's own Hugging Face seq2seq backend.

One random T5 (built here, saved as a Hugging Face directory with a
SentencePiece tokenizer trained here) is evaluated offline on local copies of
the harness's own MMLU and BBH task definitions (its YAML templates, with
`dataset_path: json` over small files written here) by both backends.
"""
import json
import os
import shutil

import numpy as np
import pytest

lm_eval = pytest.importorskip("lm_eval")  # a dependency: installed by setup.py, never skipped in CI

from t5tune.data import vocab as vocab_lib  # noqa: E402
from t5tune.infer import harness  # noqa: E402
from tests import cli  # noqa: E402
from tests.models import hf_reference  # noqa: E402

TASKS_DIR = os.path.join(os.path.dirname(lm_eval.__file__), "tasks")
WORDS = ("cat dog fish bird red blue green small large fast slow the a of is not true false"
         " and or which animal colour answer question").split()


def _questions(rng, n):
  rows = []
  for _ in range(n):
    q = " ".join(rng.choice(WORDS, size=rng.randint(4, 12)))
    rows.append({"question": q + "?", "subject": "animals",
                 "choices": [" ".join(rng.choice(WORDS, size=rng.randint(1, 4))) for _ in range(4)],
                 "answer": int(rng.randint(4))})
  return rows


def _write_jsonl(path, rows):
  with open(path, "w") as f:
    for row in rows:
      f.write(json.dumps(row) + "\n")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
  root = tmp_path_factory.mktemp("harness")
  rng = np.random.RandomState(0)
  texts = [" ".join(rng.choice(WORDS, size=10)) + " A. B. C. D. Answer: Q: A:" for _ in range(200)]
  spm = vocab_lib.train_sentencepiece(texts, str(root / "spm"), vocab_size=60)
  pieces = vocab_lib.as_vocabulary(spm).vocab_size  # every id the model emits decodes on both sides
  # Decoder as deep as the encoder: transformers 5's cached generate fails otherwise (DESIGN.md).
  # A tied (T5 v1.0) head: the harness's HF backend calls tie_weights(), and transformers 5 reads
  # every T5 config as tied, so an untied (v1.1 / Flan-T5 style) head would be replaced there.
  _, model_dir = hf_reference.build_hf_t5(root / "model", gated=False, vocab_size=pieces,
                                          num_decoder_layers=2)
  shutil.copy(spm, os.path.join(model_dir, "spiece.model"))
  with open(os.path.join(model_dir, "tokenizer_config.json"), "w") as f:
    json.dump({"tokenizer_class": "T5Tokenizer", "extra_ids": 0}, f)
  data = root / "data"
  data.mkdir()
  _write_jsonl(data / "mmlu_test.jsonl", _questions(rng, 12))
  _write_jsonl(data / "mmlu_dev.jsonl", _questions(rng, 5))
  _write_jsonl(data / "bbh_test.jsonl", [
      {"input": " ".join(rng.choice(WORDS, size=6)) + " is", "target": str(rng.choice(["True", "False"]))}
      for _ in range(6)])
  tasks = root / "tasks"
  tasks.mkdir()
  # The harness's own MMLU and BBH definitions, read from local files.
  (tasks / "mmlu_local.yaml").write_text(
      f"include: {TASKS_DIR}/mmlu/default/_default_template_yaml\n"
      "task: t5tune_mmlu_local\nnum_fewshot: 5\ndataset_path: json\ndataset_name: null\n"
      f"dataset_kwargs:\n  data_files:\n    test: {data}/mmlu_test.jsonl\n    dev: {data}/mmlu_dev.jsonl\n"
      "description: \"The following are multiple choice questions (with answers) about animals.\\n\\n\"\n")
  (tasks / "bbh_local.yaml").write_text(
      f"include: {TASKS_DIR}/bbh/fewshot/_fewshot_template_yaml\n"
      "task: t5tune_bbh_local\ndataset_path: json\ndataset_name: null\n"
      f"dataset_kwargs:\n  data_files:\n    test: {data}/bbh_test.jsonl\n"
      "doc_to_text: 'Q: {{input}}\n\n  A:'\n"
      "generation_kwargs:\n  until: ['</s>', 'Q', '\\n\\n']\n  do_sample: false\n"
      "  temperature: 0.0\n  max_gen_toks: 12\n"
      "fewshot_config:\n  sampler: first_n\n  samples:\n"
      "  - input: not true is\n    target: 'False'\n  - input: true and true is\n    target: 'True'\n"
      "  - input: not false is\n    target: 'True'\n")
  return {"root": root, "model": model_dir, "spm": os.path.join(model_dir, "spiece.model"),
          "tasks": str(tasks)}


def _task_manager(setup):
  """The local task files only: indexing the harness's own ~14,000 task files takes ~7 s a time
  (the local files `include:` the harness's MMLU and BBH templates by path)."""
  from lm_eval.tasks import TaskManager
  return TaskManager(include_path=setup["tasks"], include_defaults=False)


def _evaluate(model, model_args, setup, tasks, num_fewshot):
  harness.register()
  from lm_eval import simple_evaluate
  return simple_evaluate(model=model, model_args=model_args, tasks=tasks, num_fewshot=num_fewshot,
                         task_manager=_task_manager(setup), log_samples=True,
                         batch_size=4, device="cpu")


def _loglikelihoods(result, task):
  return np.array([[r[0] for r in s["filtered_resps"]] for s in result["samples"][task]], np.float64)


@pytest.fixture(scope="module")
def runs(setup):
  os.environ["HF_DATASETS_OFFLINE"] = "1"
  tasks = ["t5tune_mmlu_local", "t5tune_bbh_local"]
  # MMLU 5-shot and BBH 3-shot: the task files' own num_fewshot.
  ours = _evaluate("t5tune", f"checkpoint={setup['model']}", setup, tasks, None)
  hf = _evaluate("hf", f"pretrained={setup['model']},backend=seq2seq,dtype=float32", setup, tasks, None)
  return ours, hf


def test_mmlu_loglikelihoods_and_accuracy_equal_the_hf_seq2seq_backend(setup, runs):
  ours, hf = runs
  a, b = _loglikelihoods(ours, "t5tune_mmlu_local"), _loglikelihoods(hf, "t5tune_mmlu_local")
  assert a.shape == b.shape == (12, 4)
  # Float32 noise, judged against float64: transformers' T5 run in float64 is the reference,
  # the same model in float32 shows how far float32 arithmetic alone moves the numbers.
  samples = ours["samples"]["t5tune_mmlu_local"]
  ref = _hf_loglikelihoods(setup, samples, "float64")
  noise = max(np.abs(_hf_loglikelihoods(setup, samples, "float32") - ref).max(), 1e-7)
  assert np.abs(b - ref).max() <= 20 * noise, (np.abs(b - ref).max(), noise)
  assert np.abs(a - ref).max() <= 20 * noise, (np.abs(a - ref).max(), noise)
  assert (np.argmax(a, 1) == np.argmax(b, 1)).all()
  greedy = lambda r: [[x[1] for x in s["filtered_resps"]] for s in r["samples"]["t5tune_mmlu_local"]]
  assert greedy(ours) == greedy(hf)
  assert ours["results"]["t5tune_mmlu_local"]["acc,none"] == hf["results"]["t5tune_mmlu_local"]["acc,none"]


def _hf_loglikelihoods(setup, samples, dtype):
  """Each request's log-likelihood from transformers' T5 in `dtype`, tokenized as the HF backend does."""
  import torch
  import transformers
  model = transformers.T5ForConditionalGeneration.from_pretrained(setup["model"]).to(
      getattr(torch, dtype)).eval()
  tok = transformers.AutoTokenizer.from_pretrained(setup["model"])
  out = []
  for s in samples:
    row = []
    for context, continuation in s["arguments"]:
      n = len(context) - len(context.rstrip())
      if n:
        context, continuation = context[:-n], context[-n:] + continuation
      enc = torch.tensor([tok.encode(context)])
      cont = torch.tensor([tok.encode(continuation, add_special_tokens=False)])
      with torch.no_grad():
        logits = model(input_ids=enc, labels=cont).logits
      logp = torch.log_softmax(logits, -1)[0].gather(1, cont[0][:, None])[:, 0]
      row.append(float(logp.sum()))
    out.append(row)
  return np.array(out)


def test_bbh_generations_equal_the_hf_seq2seq_backend(runs):
  """Same greedy text up to max_gen_toks. The HF seq2seq path lets a T5 decode len(context) +
  max_gen_toks tokens (its `max_length` counts the padded context); t5tune stops at max_gen_toks,
  so each t5tune generation is the HF one, or its beginning when HF ran on past the budget."""
  ours, hf = runs
  a = [s["resps"][0][0] for s in ours["samples"]["t5tune_bbh_local"]]
  b = [s["resps"][0][0] for s in hf["samples"]["t5tune_bbh_local"]]
  assert len(a) == len(b) == 6
  for x, y in zip(a, b):
    assert y.startswith(x), (x, y)
  assert sum(len(x) for x in a) >= 6  # text was generated, not only empty strings


def test_loglikelihoods_equal_t5tune_scoring_of_the_same_pairs(setup):
  """The backend's numbers are t5tune's own scoring of (context + EOS, continuation) under the harness's conventions."""
  import t5tune
  from t5tune.infer import scoring
  lm = harness.register()(checkpoint=setup["model"])
  model = t5tune.load_model(setup["model"])
  v = vocab_lib.as_vocabulary(setup["spm"])
  pairs = [("Question: cat dog?\nAnswer:", " A"), ("red is ", "blue"), ("", "the cat")]
  got = lm.score_tokens([lm.encode_pair(c, x) for c, x in pairs])
  for (context, continuation), (logp, _) in zip(pairs, got):
    n = len(context) - len(context.rstrip())
    if n:
      context, continuation = context[:-n], context[-n:] + continuation
    enc = (list(v.encode(context)) + [1]) if context else [1]
    tgt = list(v.encode(continuation))
    ref = scoring.score(model, np.array([enc]), np.array([tgt])).sum[0]
    assert abs(logp - ref) <= 1e-4 * max(1.0, abs(ref)), (context, continuation, logp, ref)


def test_a_five_shot_mmlu_task_compiles_a_bounded_number_of_programs(setup):
  harness.register()
  from lm_eval import simple_evaluate
  lm = harness.T5tuneLM(checkpoint=setup["model"], batch_size=8)
  simple_evaluate(model=lm, tasks=["t5tune_mmlu_local"], task_manager=_task_manager(setup))
  shapes = sorted(lm.compiled_shapes)
  print(f"5-shot MMLU-format task, 48 requests: {len(shapes)} compiled programs {shapes}")
  # Each question's four options share one encoder pass (K = 4 in every program), and the
  # 12 contexts of different lengths fall into at most two length buckets.
  assert shapes and all(kind == "score" and k == 4 for kind, _, k, _ in shapes), shapes
  assert len(shapes) <= 2, shapes


def test_cli_runs_the_harness_with_t5tune_registered(setup, tmp_path):
  out = tmp_path / "out"
  proc = cli.run(
      ["harness", "--model", "t5tune", "--model_args",
       f"checkpoint={setup['model']}", "--tasks", "t5tune_mmlu_local", "--num_fewshot", "1",
       "--include_path", setup["tasks"], "--output_path", str(out), "--log_samples",
       "--batch_size", "4"], env=dict(cli.ENV, HF_DATASETS_OFFLINE="1"), timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "t5tune_mmlu_local" in proc.stdout and "acc" in proc.stdout
  written = [p for p in out.rglob("*.json*")]
  assert any(p.name.startswith("results") for p in written), written
  assert any(p.name.startswith("samples_t5tune_mmlu_local") for p in written), written


def test_sampling_beam_search_and_unknown_generation_arguments(setup, monkeypatch):
  import t5tune
  from t5tune.infer import api
  from lm_eval.api.instance import Instance
  from t5tune import errors
  lm = harness.register()(checkpoint=setup["model"], batch_size=4, seed=5)
  model = t5tune.load_model(setup["model"])
  prompts = ["Q: cat dog red\n A:", "Q: blue fish\n A:", "Q: small fast\n A:", "Q: dog\n A:",
             "Q: red red\n A:"]

  def generate(**kwargs):
    requests = [Instance(request_type="generate_until", doc={}, idx=i,
                         arguments=(p, {"until": [], "max_gen_toks": 10, **kwargs}))
                for i, p in enumerate(prompts)]
    return lm.generate_until(requests)

  sampled = generate(do_sample=True, temperature=0.9, top_p=0.8, repetition_penalty=1.2)
  # The same tokens, read by the backend's rule: UNK left out where t5tune.generate shows " ⁇ "
  # (whether a sample hits UNK depends on the vocabulary sentencepiece trains for the fixture).
  monkeypatch.setattr(api, "decode_tokens", lambda vocabulary, tokens: lm.decode_generated(tokens))
  # Request n samples with row_key(seed, n): t5tune.generate's input n under rng=seed.
  want = t5tune.generate(model, prompts, method="sample", temperature=0.9, top_p=0.8,
                         repetition_penalty=1.2, rng=5, max_decode_len=10, batch_size=4,
                         vocabulary=setup["spm"])
  assert sampled == want
  greedy = t5tune.generate(model, prompts, max_decode_len=10, batch_size=4, vocabulary=setup["spm"])
  assert sampled != greedy
  # As the HF backend: a temperature without do_sample decodes greedily.
  assert generate(temperature=0.7) == greedy
  # num_beams > 1 searches; max_new_tokens (transformers' name) overrides max_gen_toks.
  # A beam search stops at exactly that many tokens, as transformers' does (what is finished at
  # the limit changes the result), not at the next bucket.
  for limit in (3, 6):
    beams = generate(num_beams=3, do_sample=False, max_new_tokens=limit)
    assert beams == t5tune.generate(model, prompts, method="beam", num_beams=3,
                                    max_decode_len=limit, batch_size=4, vocabulary=setup["spm"])
  with pytest.raises(errors.UsageError, match=r"generation_kwargs \['length_penalty'\] are not supported"):
    generate(length_penalty=2.0)
  with pytest.raises(errors.UsageError, match="beam sampling"):
    generate(num_beams=2, do_sample=True)


@pytest.mark.parametrize("model_args, expect", [
    ({"batch_size": "0"}, "batch_size=0 is out of range: allowed [1, inf)"),
    ({"max_length": "0"}, "max_length=0 is out of range"),  # was "no truncation"
    ({"max_length": "-4"}, "max_length=-4 is out of range"),  # was a crash
    ({"seed": "abc"}, "seed='abc' is not an integer"),  # was a traceback
    ({"max_gen_toks": "0"}, "max_gen_toks=0 is out of range"),
])
def test_model_args_out_of_range_are_refused_before_the_model_loads(model_args, expect):
  from t5tune import errors
  with pytest.raises(errors.UsageError) as e:
    harness.register()(checkpoint="/no/such/model", **model_args)
  assert expect in str(e.value) and e.value.where == "--model_args"


def test_generations_leave_out_special_tokens_as_the_hf_backend_does(setup, tmp_path, monkeypatch):
  """Sentinels (<extra_id_N>), UNK and pad in a generation: the HF backend's tok_decode drops them
  (skip_special_tokens=True); t5tune's backend did decode them as ' ⁇ '."""
  import transformers
  from lm_eval.api.instance import Instance
  tok_dir = tmp_path / "tok"
  tok_dir.mkdir()
  shutil.copy(setup["spm"], tok_dir / "spiece.model")
  tok = transformers.T5Tokenizer.from_pretrained(str(tok_dir), extra_ids=100, legacy=False)
  lm = harness.register()(checkpoint=setup["model"], batch_size=4)
  pieces = lm.vocabulary.vocab_size
  words = lm._encode("red cat is not a fish")
  rows = [words[:2] + [pieces] + words[2:],  # <extra_id_99> mid-text
          [pieces + 99] + words + [pieces + 1],  # <extra_id_0> first, another last
          words[:3] + [lm.vocabulary.unk_id] + words[3:] + [0],  # UNK, then pad
          words + [1, 0, 0]]  # EOS, then pad (as generate leaves a finished row)
  want = [tok.decode(r, skip_special_tokens=True) for r in rows]
  assert len(set(want)) == 1 and want[0] and "⁇" not in want[0], want
  assert [lm.decode_generated(r) for r in rows] == want
  assert lm.decode_generated(words[:2] + [1] + words[2:]) == tok.decode(words[:2])  # cut at EOS
  # generate_until decodes through it.
  monkeypatch.setattr(harness.decoding, "decode",
                      lambda model, enc, options, rng: type("Out", (), {"tokens": np.array(
                          [r + [0] * (32 - len(r)) for r in rows])})())
  requests = [Instance(request_type="generate_until", doc={}, idx=i,
                       arguments=("Q: cat\n A:", {"until": [], "max_gen_toks": 32}))
              for i in range(4)]
  assert lm.generate_until(requests) == want


def test_pretrained_is_another_name_for_checkpoint(setup):
  """The harness names its output folder after `pretrained=` (a random name otherwise)."""
  from lm_eval.loggers.evaluation_tracker import GeneralConfigTracker
  from t5tune import errors
  lm = harness.register()(pretrained=setup["model"], batch_size=4)
  assert lm.vocabulary.vocab_size == harness.register()(checkpoint=setup["model"]).vocabulary.vocab_size
  assert GeneralConfigTracker._get_model_name(f"pretrained={setup['model']},vocab=x") == setup["model"]
  with pytest.raises(errors.UsageError, match="name two models"):
    harness.register()(checkpoint="/no/a", pretrained="/no/b")
