"""`t5tune predict`: killed part-way and rerun gives one line per input line; bad lines named."""
import dataclasses
import json
import os
import signal
import time

import numpy as np
import pytest

import t5tune
from t5tune import errors
from t5tune.infer import api
from t5tune.infer import decoding
from t5tune.infer import predict
from tests import cli
from tests.models import hf_reference

N_LINES = 160


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
  """A random HF T5 with a byte-sized vocabulary (384 ids, as ByT5)."""
  _, path = hf_reference.build_hf_t5(tmp_path_factory.mktemp("hf"), gated=True, vocab_size=384)
  return path


def _write_inputs(path, n=N_LINES):
  with open(path, "w") as f:
    for i in range(n):
      f.write(json.dumps({"instruction": "Repeat", "input": f"item {i} " * (1 + i % 3)}) + "\n")


FLAGS = ["--template={instruction}: {input}", "--vocab=byte", "--method=sample", "--top_k=20",
         "--max_decode_len=24", "--batch_size=8", "--chunk_size=8", "--seed=3"]


def _options():
  return decoding.DecodeOptions(method="sample", top_k=20, max_decode_len=24)


def test_killed_and_rerun_gives_exactly_one_line_per_input(hf_dir, tmp_path):
  inp, out = str(tmp_path / "in.jsonl"), str(tmp_path / "out.jsonl")
  _write_inputs(inp)
  log = tmp_path / "predict.log"
  proc = cli.start(["predict", f"--checkpoint={hf_dir}", f"--input={inp}", f"--output={out}",
                    "--mesh_shape=1,1,1"] + FLAGS, stderr=log,
                   env=dict(cli.ENV, JAX_NUM_CPU_DEVICES="1"))
  deadline = time.time() + 240
  while time.time() < deadline and proc.poll() is None:
    if os.path.exists(out) and os.path.getsize(out) and open(out).read().count("\n") >= 16:
      proc.send_signal(signal.SIGKILL)
      break
    time.sleep(0.005)
  proc.wait()
  assert proc.returncode == -signal.SIGKILL, log.read_text()[-3000:]
  partial = open(out).read().count("\n")
  assert 16 <= partial < N_LINES
  with open(out, "a") as f:
    f.write('{"line": ' + str(partial + 1) + ', "inp')  # as if the machine died mid-write

  model = t5tune.load_model(hf_dir)
  # The CLI recorded its producer (checkpoint, fingerprint, vocab): resuming in
  # Python names the same one (a different one is refused, see test_faults).
  written = predict.predict_file(model, inp, out, vocabulary="byte", template="{instruction}: {input}",
                                 options=_options(), batch_size=8, chunk_size=8, seed=3,
                                 progress=False, producer=predict.model_producer(hf_dir, "byte"))
  assert written == N_LINES - partial
  lines = [json.loads(l) for l in open(out)]
  assert [l["line"] for l in lines] == list(range(1, N_LINES + 1))
  # The same as one uninterrupted run (per-line sampling keys).
  ref = str(tmp_path / "ref.jsonl")
  predict.predict_file(model, inp, ref, vocabulary="byte", template="{instruction}: {input}",
                       options=_options(), batch_size=8, chunk_size=8, seed=3, progress=False)
  assert [json.loads(l)["prediction"] for l in open(ref)] == [l["prediction"] for l in lines]
  # A rerun of a finished output writes nothing.
  assert predict.predict_file(model, inp, out, vocabulary="byte", template="{instruction}: {input}",
                              options=_options(), batch_size=8, chunk_size=8, seed=3, progress=False,
                              producer=predict.model_producer(hf_dir, "byte")) == 0


def test_malformed_line_reported_with_its_number(tmp_path):
  inp = tmp_path / "bad.jsonl"
  inp.write_text('{"inputs": "a"}\n{"inputs": "b"}\n{"inputs": "c"\n')
  with pytest.raises(errors.InputError, match=r"not valid JSON .*bad\.jsonl:3\)"):
    predict.read_inputs(str(inp))
  inp.write_text('{"inputs": "a"}\n{"text": "b"}\n')
  with pytest.raises(errors.InputError, match=r"no string field 'inputs' \(.*bad\.jsonl:2\)"):
    predict.read_inputs(str(inp))
  with pytest.raises(errors.InputError,
                     match=r"the template needs field\(s\) \['x'\].* \(.*bad\.jsonl:1\)"):
    predict.read_inputs(str(inp), template="{x}")


def test_api_on_strings_with_a_t5tune_checkpoint(hf_dir, tmp_path):
  from t5tune.convert import loading
  loading.hf_to_t5tune(hf_dir, str(tmp_path / "ours"))
  model = t5tune.load_model(str(tmp_path / "ours"))
  prompts = ["Repeat: item 1", "Repeat: item 2 item 2"]
  texts, scores = t5tune.generate(model, prompts, max_decode_len=24, return_scores=True)
  enc = api.encode_texts(api.resolve_vocabulary(model), prompts, rows=16)
  ref = decoding.decode(model, enc, decoding.DecodeOptions(max_decode_len=24))
  vocab = api.resolve_vocabulary(model)
  assert texts == [api.decode_tokens(vocab, ref.tokens[i]) for i in range(2)]
  np.testing.assert_allclose(scores, ref.scores[:2], atol=1e-5)
  s = t5tune.score(model, prompts, ["item 1", "item 2"])
  np.testing.assert_allclose(s.mean * s.num_tokens, s.sum, rtol=1e-6)
  c = api.classify(model, prompts, [["a", "bb"], ["x", "y", "zz"]])
  assert c.predictions[0] in ("a", "bb") and len(c.scores[1]) == 3
  assert c.predictions[1] == ["x", "y", "zz"][int(np.argmax(c.scores[1]))]


def test_long_line_refused_before_any_file_or_cut_with_truncate_and_empty_input(hf_dir, tmp_path):
  """As `serve`: a prompt over the limit is refused naming its line (nothing written) or cut."""
  model = t5tune.load_model(hf_dir)
  kw = dict(vocabulary="byte", options=decoding.DecodeOptions(max_decode_len=4), batch_size=2,
            progress=False)
  inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
  inp.write_text(json.dumps("short") + "\n" + json.dumps("y" * 600) + "\n")
  with pytest.raises(errors.InputError, match=r"line 2 has 601 tokens, over --max_input_len=512"):
    predict.predict_file(model, str(inp), str(out), **kw)
  assert sorted(os.listdir(tmp_path)) == ["in.jsonl"]  # no output, no producer file
  assert predict.predict_file(model, str(inp), str(out), max_input_len=16, truncate=True, **kw) == 2
  cut = tmp_path / "cut.jsonl"
  cut.write_text(json.dumps("short") + "\n" + json.dumps("y" * 15) + "\n")  # 15 bytes + EOS
  predict.predict_file(model, str(cut), str(tmp_path / "cut_out.jsonl"), **kw)
  got = [json.loads(l)["prediction"] for l in open(out)]
  assert got == [json.loads(l)["prediction"] for l in open(tmp_path / "cut_out.jsonl")]
  assert json.load(open(predict.producer_path(str(out))))["max_input_len"] == 16
  empty, empty_out = tmp_path / "empty.jsonl", tmp_path / "empty_out.jsonl"
  empty.write_text("")
  assert predict.predict_file(model, str(empty), str(empty_out), **kw) == 0
  assert empty_out.read_text() == ""  # the file "wrote 0 predictions" speaks of


def test_a_rerun_with_other_settings_names_each_changed_option(tmp_path):
  out = str(tmp_path / "out.jsonl")
  open(out, "w").write('{"line": 1, "inputs": "a", "prediction": "x", "score": 0.0}\n')
  options = decoding.DecodeOptions(method="sample", temperature=0.7, max_decode_len=24)
  record = predict.full_producer({"checkpoint": "m"}, template=None, max_input_len=512, seed=3,
                                 options=options)
  with open(predict.producer_path(out), "w") as f:
    json.dump(record, f)
  predict.check_output(out, dict(record))  # the same settings continue the file
  # Penalties that are off are not recorded: outputs from before they existed still resume.
  assert not set(record["options"]) & {"repetition_penalty", "frequency_penalty",
                                       "presence_penalty", "min_tokens"}
  penalised = predict.full_producer({"checkpoint": "m"}, template=None, max_input_len=512, seed=3,
                                    options=dataclasses.replace(options, min_tokens=4))
  with pytest.raises(errors.OutputExistsError, match=r"options.min_tokens: None -> 4"):
    predict.check_output(out, penalised)
  greedy = predict.full_producer({"checkpoint": "m"}, template=None, max_input_len=512, seed=3,
                                 options=decoding.DecodeOptions(max_decode_len=24))
  with pytest.raises(errors.OutputExistsError) as raised:
    predict.check_output(out, greedy)
  message = str(raised.value)
  assert "options.method: 'sample' -> 'greedy'" in message, message
  assert "options.temperature: 0.7 -> 1.0" in message, message
  assert "options.top_k" not in message and "options.max_decode_len" not in message, message
