"""`t5tune serve` over real HTTP: a server process on a loopback port, a tiny random model, no mocks.

One server per module (compiling its buckets is the expensive part); the
SIGTERM test stops it and so runs last. References come from t5tune's own
Python API on the same saved weights, in this process.
"""
import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import httpx
import numpy as np
import openai
import pytest

import t5tune
from t5tune.convert import loading
from t5tune.data import vocab as vocab_lib
from t5tune.infer import api
from t5tune.infer import decoding
from t5tune.models import config as model_config
from t5tune.models import t5

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
KEY = "test-key-123"
AUTH = {"Authorization": f"Bearer {KEY}"}
# One client for the module's requests: `httpx.get` builds a client, and with it an SSL context
# loading the CA certificates (~50 ms of CPU), per call, also for http:// (3 s of polling /health).
# No kept-alive connections: servers are started and stopped under the tests.
HTTP = httpx.Client(limits=httpx.Limits(max_keepalive_connections=0))
MAX_INPUT, MAX_TOKENS = 32, 16
TEMPLATE = "Q: {question}\\n{options_}"
# The main server runs without the persistent compilation cache (the flag's path); the
# fill server below keeps the default (cache on) and checks what it wrote.
FLAGS = ["--compilation_cache=none", "--batch_sizes=8", "--input_lengths=16,32", f"--decode_lengths={MAX_TOKENS}",
         "--max_queue=64", "--max_n=4", "--stream_chunk=2", "--max_body_bytes=4096",
         "--max_wait_ms=20", "--drain_timeout_s=20", f"--template={TEMPLATE}", "--beam_widths=2"]
# Mixed lengths: the first fall in the 16-token input bucket, the rest in the 32-token one.
PROMPTS = ["hi", "2 + 2 =", "translate: cat", "a somewhat longer prompt",
           "longer, for the 32 bucket"]


def _wait_for(predicate, timeout, what):
  deadline = time.time() + timeout
  while time.time() < deadline:
    value = predicate()
    if value:
      return value
    time.sleep(0.2)
  raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class Server:
  def __init__(self, proc, log_path, url, cache_dir):
    self.proc, self.log_path, self.url, self.cache_dir = proc, log_path, url, cache_dir

  def log(self):
    return open(self.log_path).read()[-4000:]

  def metric(self, name, labels=""):
    text = HTTP.get(f"{self.url}/metrics", headers=AUTH, timeout=10).text
    m = re.search(rf"^{re.escape(name + labels)} (\S+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
  path = str(tmp_path_factory.mktemp("serve") / "tiny")
  loading.save_model(t5.build_model(model_config.preset("tiny"), seed=1), path)
  return path


def _launch(model_dir, tmp_path_factory, flags):
  """Starts `t5tune serve` on a free port; returns (process, log path, cache dir) at once."""
  log_path = str(tmp_path_factory.mktemp("log") / "server.log")
  cache_dir = None if "--compilation_cache=none" in flags else str(
      tmp_path_factory.mktemp("cache"))
  # A fresh compilation cache: the servers compile (and the user's ~/.cache stays untouched).
  env = dict(os.environ, JAX_NUM_CPU_DEVICES="1", JAX_PLATFORMS="cpu", PYTHONPATH=ROOT,
             T5TUNE_API_KEY=KEY, T5TUNE_CACHE_DIR=cache_dir or "/nonexistent/cache")
  with open(log_path, "w") as log:
    proc = subprocess.Popen(
        [sys.executable, "-m", "t5tune.main", "serve", f"--checkpoint={model_dir}", "--port=0"]
        + flags, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
  return proc, log_path, cache_dir


def _attach(proc, log_path, cache_dir):
  """Yields a Server once the process listens; kills it at the end."""
  try:
    port = _wait_for(lambda: re.findall(r"Uvicorn running on http://127\.0\.0\.1:(\d+)",
                                        open(log_path).read()) or proc.poll(), 300, "the port")
    assert proc.poll() is None, open(log_path).read()[-3000:]
    yield Server(proc, log_path, f"http://127.0.0.1:{port[0]}", cache_dir)
  finally:
    if proc.poll() is None:
      proc.kill()
      proc.wait()


# A second, smaller server whose batches run only when full (max_wait of 10 minutes), so
# the test decides which rows share a batch; a short request timeout; and a template
# registered by a task module. It starts beside the main server and compiles 2 programs.
FILL_BATCH, FILL_TIMEOUT_S, FILL_MAX_QUEUE = 4, 3, 16
# Its --module=tests.serve.methods registers a decoding method, which it then serves.
FILL_FLAGS = [f"--batch_sizes={FILL_BATCH}", "--input_lengths=64", "--decode_lengths=4",
              "--max_wait_ms=600000", f"--request_timeout_s={FILL_TIMEOUT_S}", f"--max_queue={FILL_MAX_QUEUE}",
              "--module=t5tune.demo_tasks", "--module=tests.serve.methods",
              "--template=t5tune_demo_sentiment:sent_opt"]


@pytest.fixture(scope="module")
def fill_launched(model_dir, tmp_path_factory):
  proc, log_path, cache_dir = _launch(model_dir, tmp_path_factory, FILL_FLAGS)
  try:
    yield proc, log_path, cache_dir
  finally:
    if proc.poll() is None:
      proc.kill()
      proc.wait()


@pytest.fixture(scope="module")
def server(model_dir, tmp_path_factory, fill_launched):
  del fill_launched  # launched first, so that both servers start at once
  yield from _attach(*_launch(model_dir, tmp_path_factory, FLAGS))


@pytest.fixture(scope="module")
def model(model_dir):
  return loading.load_model(model_dir)


def _until_ready(server):
  def up():
    try:
      return HTTP.get(f"{server.url}/health", timeout=10).status_code == 200
    except httpx.TimeoutException:  # a loaded machine: compiling can starve the event loop
      return False
  _wait_for(lambda: up() or server.proc.poll() is not None, 400, "ready")
  assert server.proc.poll() is None, server.log()
  server.compilations_at_ready = server.metric("t5tune_xla_compilations")
  assert server.compilations_at_ready > 0
  # Time-to-ready: in /metrics and the log, counted from the command's start.
  seconds = server.metric("t5tune_time_to_ready_seconds")
  logged = re.findall(r"ready (\d+\.\d) s after start", open(server.log_path).read())
  assert seconds > 0 and logged and abs(float(logged[0]) - seconds) < 0.1, (seconds, logged)
  if server.cache_dir is not None:  # cache on (the default): the compiled programs are there
    assert os.listdir(os.path.join(server.cache_dir, "jax")), "nothing in the compilation cache"
  return server


@pytest.fixture(scope="module")
def ready(server, model):
  """The server once /health says ready (references in this process compile meanwhile)."""
  del model
  return _until_ready(server)


@pytest.fixture(scope="module")
def fill_server(fill_launched):
  for srv in _attach(*fill_launched):
    yield _until_ready(srv)


def _complete(url, **body):
  r = HTTP.post(f"{url}/v1/completions", json=body, headers=AUTH, timeout=60)
  assert r.status_code == 200, r.text
  return r.json()


def _reference(model, prompts, max_tokens):
  """t5tune.generate's greedy texts cut to max_tokens tokens (greedy decoding is prefix-stable).

  Every reference decodes MAX_TOKENS steps in batches of 8, so this process
  compiles one program per input length instead of one per max_tokens.
  """
  v = vocab_lib.get_vocabulary("byte")
  out = []
  for p in prompts:
    enc = api.encode_texts(v, [p], rows=8)
    tokens = decoding.decode(model, enc, decoding.DecodeOptions(max_decode_len=MAX_TOKENS)).tokens[0]
    out.append(api.decode_tokens(v, tokens[:max_tokens]))
  return out


def test_health_models_and_api_key(ready):
  assert HTTP.get(f"{ready.url}/health", timeout=5).json()["status"] == "ready"
  for path in ("/v1/models", "/metrics"):
    r = HTTP.get(f"{ready.url}{path}", timeout=5)
    assert r.status_code == 401 and "API key" in r.json()["error"]["message"]
  r = HTTP.get(f"{ready.url}/v1/models", headers={"Authorization": "Bearer wrong"}, timeout=5)
  assert r.status_code == 401
  models = HTTP.get(f"{ready.url}/v1/models", headers=AUTH, timeout=5).json()
  assert [m["id"] for m in models["data"]] == ["tiny"]


def test_greedy_completions_equal_generate_token_for_token(ready, model):
  body = _complete(ready.url, model="tiny", prompt=PROMPTS, max_tokens=MAX_TOKENS,
                   temperature=0, logprobs=2)
  texts, scores = t5tune.generate(model, PROMPTS, max_decode_len=MAX_TOKENS, batch_size=8,
                                  return_scores=True)
  assert [c["text"] for c in body["choices"]] == texts
  assert [c["index"] for c in body["choices"]] == list(range(len(PROMPTS)))
  for choice, score in zip(body["choices"], scores):
    lp = choice["logprobs"]
    assert choice["finish_reason"] in ("stop", "length")
    # Keys are token strings, but byte tokens that are not UTF-8 on their own all read "":
    # those are keyed "token_id:N", so both alternatives asked are there, and the chosen
    # token's text never shows another token's value.
    assert len(lp["tokens"]) == len(lp["token_logprobs"]) == len(lp["top_logprobs"])
    assert len(lp["token_ids"]) == len(lp["tokens"])
    for token, token_id, logprob, top in zip(lp["tokens"], lp["token_ids"], lp["token_logprobs"],
                                             lp["top_logprobs"]):
      assert len(top) == 2, top
      key = token if token in top else f"token_id:{token_id}"
      # Greedy: the chosen token is among the alternatives, with its own value, the largest.
      assert top[key] == pytest.approx(logprob, abs=1e-6), (token, token_id, top)
      assert max(top.values()) == pytest.approx(logprob, abs=1e-6), (token, top)
    if choice["finish_reason"] == "length":  # no EOS: the summed logprobs are generate's score
      np.testing.assert_allclose(sum(lp["token_logprobs"]), score, rtol=1e-4)
  assert body["object"] == "text_completion" and body["model"] == "tiny"
  assert body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] + body["usage"]["completion_tokens"]


def test_openai_client_plain_streamed_and_seeded(ready, model):
  client = openai.OpenAI(base_url=f"{ready.url}/v1", api_key=KEY, max_retries=0, timeout=60)
  done = client.completions.create(model="tiny", prompt=PROMPTS[3], max_tokens=MAX_TOKENS,
                                   temperature=0)
  assert done.choices[0].text == _reference(model, PROMPTS[3:4], MAX_TOKENS)[0]
  chunks = list(client.completions.create(model="tiny", prompt=PROMPTS[3], max_tokens=MAX_TOKENS,
                                          temperature=0, stream=True))
  assert len(chunks) > 2  # streamed in pieces, not one block
  assert "".join(c.choices[0].text for c in chunks) == done.choices[0].text
  assert chunks[-1].choices[0].finish_reason == done.choices[0].finish_reason
  # Sampling: choice j of prompt i uses the key t5tune.generate(rng=seed) gives input i * n + j.
  sampled = client.completions.create(model="tiny", prompt=PROMPTS[:1], max_tokens=MAX_TOKENS, n=2,
                                      temperature=0.8, top_p=0.9, seed=7,
                                      extra_body={"top_k": 40})
  want = t5tune.generate(model, PROMPTS[:1] * 2, method="sample", temperature=0.8, top_p=0.9,
                         top_k=40, rng=7, max_decode_len=MAX_TOKENS, batch_size=8)
  assert [c.text for c in sampled.choices] == want
  # The penalties (t5tune.infer.penalties): OpenAI's two as the client sends them, and
  # repetition_penalty / min_tokens as vLLM's extra fields; the same text as generate's.
  penalised = client.completions.create(
      model="tiny", prompt=PROMPTS[:2], max_tokens=MAX_TOKENS, temperature=0.8, seed=3,
      frequency_penalty=0.7, presence_penalty=0.4,
      extra_body={"repetition_penalty": 1.3, "min_tokens": MAX_TOKENS, "no_repeat_ngram_size": 2})
  want = t5tune.generate(model, PROMPTS[:2], method="sample", temperature=0.8, rng=3,
                         frequency_penalty=0.7, presence_penalty=0.4, repetition_penalty=1.3,
                         min_tokens=MAX_TOKENS, no_repeat_ngram_size=2, max_decode_len=MAX_TOKENS,
                         batch_size=8)
  assert [c.text for c in penalised.choices] == want
  assert [c.finish_reason for c in penalised.choices] == ["length", "length"]  # no EOS before
  # The penalties are arrays of the one compiled program: nothing compiled for them.
  assert ready.metric("t5tune_xla_compilations") == ready.compilations_at_ready
  with pytest.raises(openai.BadRequestError, match="max_tokens"):
    client.completions.create(model="tiny", prompt="x", max_tokens=MAX_TOKENS + 1)


def test_beam_search_extension_equals_generate(ready, model):
  body = _complete(ready.url, prompt=PROMPTS[:2], max_tokens=MAX_TOKENS, num_beams=2, n=2)
  best = t5tune.generate(model, PROMPTS[:2], method="beam", num_beams=2,
                         max_decode_len=MAX_TOKENS, batch_size=8)
  assert [c["index"] for c in body["choices"]] == [0, 1, 2, 3]
  assert [body["choices"][0]["text"], body["choices"][2]["text"]] == best


def test_score_equals_t5tune_score_and_template_fields(ready, model):
  candidates = ["yes", "no", "maybe"]
  r = HTTP.post(f"{ready.url}/v1/score", headers=AUTH, timeout=60,
                 json={"prompt": PROMPTS[:2], "candidates": candidates})
  assert r.status_code == 200, r.text
  data = r.json()["data"]
  for i, prompt in enumerate(PROMPTS[:2]):
    ref = t5tune.score(model, [prompt] * 3, candidates, batch_size=8)
    got = data[i]["candidates"]
    np.testing.assert_allclose([c["logprob_sum"] for c in got], ref.sum, rtol=1e-5)
    np.testing.assert_allclose([c["logprob_mean"] for c in got], ref.mean, rtol=1e-5)
    assert data[i]["best"] == int(np.argmax(ref.sum))
    assert data[i]["best_by_mean"] == int(np.argmax(ref.mean))
  # With --template, clients send fields; the server renders them the way tasks are rendered.
  fields = {"question": "On?", "options": ["yes", "no"]}
  rendered = "Q: On?\nOPTIONS:\n- yes\n- no"
  by_fields = HTTP.post(f"{ready.url}/v1/score", headers=AUTH, timeout=60,
                         json={"prompt": fields, "candidates": ["yes", "no"]}).json()
  by_text = HTTP.post(f"{ready.url}/v1/score", headers=AUTH, timeout=60,
                       json={"prompt": rendered, "candidates": ["yes", "no"]}).json()
  assert by_fields["data"] == by_text["data"]


def test_64_concurrent_requests_batched_routed_and_never_compiled(ready, model):
  n = 64
  prompts = [f"{PROMPTS[i % len(PROMPTS)]} #{i}" for i in range(n)]
  max_tokens = [8 + (i % 2) * 4 for i in range(n)]
  want = {}
  for mt in (8, 12):
    idx = [i for i in range(n) if max_tokens[i] == mt]
    want.update(zip(idx, _reference(model, [prompts[i] for i in idx], mt)))
  batches_before = ready.metric("t5tune_batch_size_count", '{kind="decode"}')

  async def one(client, i):
    r = await client.post("/v1/completions", json={
        "prompt": prompts[i], "max_tokens": max_tokens[i], "temperature": 0})
    return i, r

  async def all_at_once():
    async with httpx.AsyncClient(base_url=ready.url, headers=AUTH, timeout=120,
                                 limits=httpx.Limits(max_connections=n)) as client:
      return await asyncio.gather(*[one(client, i) for i in range(n)])

  for i, r in asyncio.run(all_at_once()):
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["text"] == want[i], i
  batches = ready.metric("t5tune_batch_size_count", '{kind="decode"}') - batches_before
  assert 0 < batches < n, "requests were not batched together"
  assert ready.metric("t5tune_xla_compilations") == ready.compilations_at_ready


def test_top_logprobs_keep_alternatives_whose_texts_collide():
  """Two ids reading "" (non-UTF-8 bytes) keep an entry each; a text the chosen token shares
  with an alternative is not shown under that text."""
  from t5tune.serve import completions
  piece = {1: "a", 2: "", 3: "", 4: "b", 5: "b"}.get
  assert completions._top_entries(1, [2, 3, 1], [-1.0, -2.0, -3.0], piece) == {
      "token_id:2": -1.0, "token_id:3": -2.0, "a": -3.0}
  # Sampled token 5 is not among the alternatives, but 4 reads as it does.
  assert completions._top_entries(5, [4, 1], [-0.5, -1.5], piece) == {
      "token_id:4": -0.5, "a": -1.5}


BAD = [
    (b'{"prompt": "hi", "max_tokens": 4', 400, "not valid JSON"),
    (b'["hi"]', 400, "JSON object"),
    (json.dumps({"prompt": "hi", "max_tokens": -1}), 400, "max_tokens"),
    (json.dumps({"prompt": "hi", "max_tokens": "4"}), 400, "max_tokens: Input should be a valid integer"),
    (json.dumps({"prompt": "hi", "max_tokens": MAX_TOKENS + 1}), 400, f"max_tokens={MAX_TOKENS}"),
    (json.dumps({"prompt": "x" * 40}), 400, f"max_input_len={MAX_INPUT}"),
    (json.dumps({"prompt": "hi", "temprature": 0.5}), 400, "unknown field 'temprature'"),
    (json.dumps({"prompt": 3}), 400, "prompt"),
    (json.dumps({"max_tokens": 3}), 400, "missing required field 'prompt'"),
    (json.dumps({"prompt": "hi", "n": 5}), 400, "max_n=4"),
    (json.dumps({"prompt": "hi", "num_beams": 3}), 400, "num_beams=3"),
    (json.dumps({"prompt": "hi", "echo": True}), 400, "echo"),
    (json.dumps({"prompt": "hi", "presence_penalty": 2.5}), 400, "presence_penalty"),
    (json.dumps({"prompt": "hi", "repetition_penalty": 0}), 400, "repetition_penalty"),
    (json.dumps({"prompt": "hi", "num_beams": 2, "min_tokens": 3}), 400,
     "min_tokens is not supported with method='beam'"),
    (json.dumps({"prompt": "hi", "method": "nucleus"}), 400, "method='nucleus' is not served"),
    (json.dumps({"prompt": "hi", "method": "greedy", "num_beams": 2}), 400, "needs a search method"),
    (json.dumps({"prompt": {"question": "q"}}), 400, "'options'"),
    (json.dumps({"prompt": "hi", "model": "gpt-4"}), 404, "'gpt-4'"),
    # Values the engine's int32/float32 arrays cannot hold, and NaN: judged before batching.
    (json.dumps({"prompt": "hi", "top_k": 2**31}), 400,
     "top_k=2147483648 is out of range: allowed [0, inf) as int32"),
    (b'{"prompt": "hi", "temperature": NaN}', 400, "temperature=nan is out of range"),
    (json.dumps({"prompt": "hi", "temperature": 1e39}), 400, "as float32"),
    (json.dumps({"prompt": "hi", "min_tokens": 2**40}), 400, "min_tokens=1099511627776"),
    (json.dumps({"prompt": "hi", "seed": -1}), 400, "seed=-1 is out of range"),
    (json.dumps({"prompt": "hi", "num_beams": 2, "logprobs": 1}), 400,
     "logprobs is not supported with method='beam'"),
    (json.dumps({"prompt": "y" * 5000}), 413, "max_body_bytes=4096"),
]


def test_bad_requests_get_status_and_message_and_leave_server_healthy(ready, model):
  for body, status, message in BAD:
    r = HTTP.post(f"{ready.url}/v1/completions", content=body, timeout=30,
                   headers=dict(AUTH, **{"Content-Type": "application/json"}))
    assert r.status_code == status, (body[:80], r.text)
    assert message in r.json()["error"]["message"], (body[:80], r.text)
  assert HTTP.post(f"{ready.url}/v1/completions", json={"prompt": "hi"}, timeout=30).status_code == 401
  assert HTTP.get(f"{ready.url}/health", timeout=10).status_code == 200
  assert _complete(ready.url, prompt=PROMPTS[0], max_tokens=6, temperature=0)["choices"][0]["text"] == \
      _reference(model, PROMPTS[:1], 6)[0]


def test_a_bad_request_sent_with_good_ones_fails_alone(ready, model):
  """top_k=2**31 once overflowed in the batch's int32 array and failed every row batched with
  it (a plain-text 500 to all); now it is a 400 of its own and the greedy rows are answered."""
  bad = [{"prompt": "hello", "max_tokens": 4, "top_k": 2**31},
         {"prompt": "hello", "max_tokens": 4, "temperature": 1e39},
         {"prompt": "hello", "max_tokens": 4, "repetition_penalty": -1}]
  good = [{"prompt": p, "max_tokens": 4, "temperature": 0} for p in PROMPTS[:3]]

  async def together():
    async with httpx.AsyncClient(base_url=ready.url, headers=AUTH, timeout=120) as client:
      return await asyncio.gather(*[client.post("/v1/completions", json=b)
                                    for pair in zip(good, bad) for b in pair])

  replies = asyncio.run(together())
  goods, bads = replies[0::2], replies[1::2]
  for r in bads:
    assert r.status_code == 400 and r.json()["error"]["param"] in ("top_k", "temperature",
                                                                   "repetition_penalty"), r.text
  assert [r.status_code for r in goods] == [200] * 3, [r.text for r in goods]
  assert [r.json()["choices"][0]["text"] for r in goods] == _reference(model, PROMPTS[:3], 4)


class _FakeEngine:
  """Decodes a batch unless a row's temperature is negative (as a row the checks missed)."""

  def __init__(self):
    from t5tune.serve import engine as engine_lib
    self.buckets = engine_lib.Buckets(batch_sizes=(1, 4), input_lengths=(8,), decode_lengths=(4,))
    self.batches = []

  def decode(self, rows, size, input_len, out_len, chunk=None, on_chunk=None):
    self.batches.append(len(rows))
    if any(r.temperature < 0 for r in rows):
      raise FloatingPointError("a row the device could not run")
    return [r.temperature for r in rows]


def test_a_row_that_fails_inside_a_batch_fails_alone():
  from t5tune.serve import batcher as batcher_lib
  from t5tune.serve import engine as engine_lib
  engine = _FakeEngine()
  batcher = batcher_lib.Batcher(engine, max_wait_ms=10_000, max_queue=8, stream_chunk=1)
  rows = [engine_lib.DecodeRow(tokens=np.ones(2, np.int32), max_tokens=4, temperature=t)
          for t in (0.0, -1.0, 0.5, 0.25)]
  works = [batcher_lib.Work("decode", 8, 4, row) for row in rows]
  batcher.submit(works)  # a full batch: runs at once
  batcher.start()
  try:
    results = [w.future.exception(timeout=30) or w.future.result() for w in works]
  finally:
    batcher.stop(timeout=30)
  assert isinstance(results[1], FloatingPointError)
  assert [results[i][1] for i in (0, 2, 3)] == [0, 0, 0]  # each answered, from its own batch
  assert engine.batches == [4, 1, 1, 1, 1]


def test_client_leaving_mid_stream_does_not_break_others(ready, model):
  before = ready.metric("t5tune_batch_size_count", '{kind="decode"}')
  with httpx.Client(base_url=ready.url, headers=AUTH, timeout=60) as client:
    with client.stream("POST", "/v1/completions", json={
        "prompt": PROMPTS[4], "max_tokens": MAX_TOKENS, "temperature": 0, "stream": True}) as r:
      assert r.status_code == 200
      first = next(r.iter_lines())
      assert first.startswith("data: ")
    # The stream is closed mid-way; others, including one in the same bucket, still complete.
  results = {}

  def other(i):
    results[i] = _complete(ready.url, prompt=PROMPTS[4 - i], max_tokens=10, temperature=0)
  threads = [threading.Thread(target=other, args=(i,)) for i in range(2)]
  for t in threads:
    t.start()
  for t in threads:
    t.join(60)
  want = _reference(model, [PROMPTS[4], PROMPTS[3]], 10)
  assert [results[0]["choices"][0]["text"], results[1]["choices"][0]["text"]] == want
  assert ready.metric("t5tune_batch_size_count", '{kind="decode"}') > before
  assert HTTP.get(f"{ready.url}/health", timeout=5).status_code == 200


def test_client_gone_before_its_response_is_dropped_from_its_batch(fill_server, model):
  srv = fill_server
  depth = srv.metric("t5tune_queue_depth")
  gone = srv.metric("t5tune_errors_total", '{code="499"}')
  rows = srv.metric("t5tune_batch_size_sum", '{kind="decode"}')
  batches = srv.metric("t5tune_batch_size_count", '{kind="decode"}')
  # A non-streaming client sends its request, and leaves once its row is queued.
  host, port = srv.url.rsplit("/", 1)[1].split(":")
  body = json.dumps({"prompt": PROMPTS[0], "max_tokens": 4, "temperature": 0})
  with socket.create_connection((host, int(port)), timeout=30) as sock:
    sock.sendall((f"POST /v1/completions HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {KEY}"
                  f"\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
                  f"{body}").encode())
    _wait_for(lambda: srv.metric("t5tune_queue_depth") > depth, 30, "the row to be queued")
  _wait_for(lambda: srv.metric("t5tune_errors_total", '{code="499"}') > gone, 30,
            "the server to see the client leave")
  # Its row still holds a place in the batch (rows count where they queued); the other
  # three fill the batch and are served; the departed row costs no device time.
  async def others():
    async with httpx.AsyncClient(base_url=srv.url, headers=AUTH, timeout=60) as client:
      return await asyncio.gather(
          client.post("/v1/completions", json={"prompt": PROMPTS[3], "max_tokens": 4,
                                               "temperature": 0}),
          client.post("/v1/completions", json={"prompt": PROMPTS[1:3], "max_tokens": 4,
                                               "temperature": 0}))
  one, two = asyncio.run(others())
  assert one.status_code == 200 and two.status_code == 200, (one.text, two.text)
  texts = [one.json()["choices"][0]["text"]] + [c["text"] for c in two.json()["choices"]]
  assert texts == _reference(model, [PROMPTS[3], PROMPTS[1], PROMPTS[2]], 4)
  assert srv.metric("t5tune_batch_size_count", '{kind="decode"}') == batches + 1
  assert srv.metric("t5tune_batch_size_sum", '{kind="decode"}') == rows + 3
  assert HTTP.get(f"{srv.url}/health", timeout=10).status_code == 200


def test_a_full_queue_is_503_with_retry_after_and_what_fits_is_served(fill_server, model):
  """Deterministic: the fill server runs a batch only when 4 rows wait, so rows stay queued."""
  srv = fill_server
  max_queue = FILL_MAX_QUEUE
  assert srv.metric("t5tune_queue_depth") == 0
  busy = srv.metric("t5tune_errors_total", '{code="503"}')
  prompts = [f"q {i}" for i in range(max_queue)]
  post = lambda client, rows: client.post("/v1/completions", json={
      "prompt": rows, "max_tokens": 4, "temperature": 0})

  async def scene():
    async with httpx.AsyncClient(base_url=srv.url, headers=AUTH, timeout=60) as client:
      waiting = asyncio.ensure_future(post(client, prompts[:FILL_BATCH - 1]))
      deadline = time.monotonic() + 30
      while srv.metric("t5tune_queue_depth") < FILL_BATCH - 1:  # 3 rows wait for a fourth
        assert time.monotonic() < deadline, "the first request's rows were never queued"
        await asyncio.sleep(0.05)
      # 3 waiting + 14 > 16: refused whole, nothing of it queued.
      full = await post(client, prompts[FILL_BATCH - 1:] + ["one too many"])
      depth = srv.metric("t5tune_queue_depth")
      # 3 + 13 = 16 fits: four full batches run.
      fits = await post(client, prompts[FILL_BATCH - 1:])
      return full, depth, fits, await waiting

  full, depth, fits, first = asyncio.run(scene())
  assert full.status_code == 503, full.text
  assert full.headers["Retry-After"] and "queue is full" in full.json()["error"]["message"]
  assert f"max_queue={max_queue}" in full.json()["error"]["message"]
  assert depth == FILL_BATCH - 1 and srv.metric("t5tune_errors_total", '{code="503"}') == busy + 1
  assert fits.status_code == 200, fits.text
  texts = [c["text"] for c in fits.json()["choices"]]
  # The first request may time out (request_timeout_s=3) on a loaded machine before the
  # rows that complete its batch arrive; either way it holds its rows' places until then.
  assert first.status_code in (200, 504), first.text
  assert texts == _reference(model, prompts[FILL_BATCH - 1:], 4)
  assert srv.metric("t5tune_queue_depth") == 0
  assert HTTP.get(f"{srv.url}/health", timeout=10).status_code == 200


def test_registered_template_renders_fields_like_the_task(fill_server):
  """--template=t5tune_demo_sentiment:sent_opt renders fields with that task's template."""
  fields = {"text": "ok", "options": ["good", "bad"]}
  rendered = "ok\nWhat is the sentiment of this review?\nOPTIONS:\n- good\n- bad"
  body = _complete(fill_server.url, prompt=[fields, rendered, fields, rendered], max_tokens=4,
                   temperature=0, logprobs=1)  # one full batch
  choices = body["choices"]
  assert choices[0]["text"] == choices[1]["text"] == choices[2]["text"]
  assert choices[0]["logprobs"]["token_logprobs"] == choices[1]["logprobs"]["token_logprobs"]
  assert body["usage"]["prompt_tokens"] == 4 * (len(rendered.encode()) + 1)  # byte ids + EOS
  r = HTTP.post(f"{fill_server.url}/v1/completions", headers=AUTH, timeout=30,
                 json={"prompt": {"review": "x", "options": []}, "max_tokens": 4})
  assert r.status_code == 400 and "lacks field 'text'" in r.json()["error"]["message"]


def test_a_method_registered_in_one_place_is_served(fill_server, model):
  """tests/serve/methods.py registers `second_best`; the server imported it (--module) and serves it."""
  from tests.serve import methods
  prompts = PROMPTS[:FILL_BATCH]  # one full batch
  body = _complete(fill_server.url, prompt=prompts, max_tokens=4, method=methods.NAME, logprobs=1)
  v = vocab_lib.get_vocabulary("byte")
  enc = api.encode_texts(v, prompts, rows=8)
  ref = decoding.decode(model, enc, decoding.DecodeOptions(method=methods.NAME, max_decode_len=4))
  assert [c["text"] for c in body["choices"]] == [api.decode_tokens(v, t) for t in ref.tokens[:4]]
  greedy = _reference(model, prompts, 4)
  assert [c["text"] for c in body["choices"]] != greedy  # not greedy under another name


def test_request_timeout_is_504_and_the_server_stays_healthy(fill_server, model):
  srv = fill_server
  start = time.monotonic()
  # One row alone never fills its batch: it is still waiting when the timeout strikes.
  r = HTTP.post(f"{srv.url}/v1/completions", headers=AUTH, timeout=60,
                 json={"prompt": PROMPTS[0], "max_tokens": 4, "temperature": 0})
  assert r.status_code == 504, r.text
  error = r.json()["error"]
  assert error["type"] == "timeout" and f"request_timeout_s={FILL_TIMEOUT_S}" in error["message"]
  assert time.monotonic() - start >= FILL_TIMEOUT_S
  assert srv.metric("t5tune_errors_total", '{code="504"}') == 1
  # Still healthy: the timed-out row holds its place until its batch is taken (then it
  # is dropped), so three more rows fill that batch and are served, correctly.
  assert HTTP.get(f"{srv.url}/health", timeout=10).status_code == 200
  rows = srv.metric("t5tune_batch_size_sum", '{kind="decode"}')
  body = _complete(srv.url, prompt=PROMPTS[1:FILL_BATCH], max_tokens=4, temperature=0)
  assert [c["text"] for c in body["choices"]] == _reference(model, PROMPTS[1:FILL_BATCH], 4)
  assert srv.metric("t5tune_batch_size_sum", '{kind="decode"}') == rows + FILL_BATCH - 1


def test_one_seed_samples_the_same_text_in_every_command(ready, model, tmp_path):
  """generate, predict, evaluate and serve: input i samples with decoding.row_key(seed, i)."""
  from t5tune import data
  from t5tune.infer import evaluation
  from t5tune.infer import metrics
  from t5tune.infer import predict
  prompts, seed = ["same seed?", "and again"], 11
  settings = dict(temperature=0.9, top_k=40, top_p=0.95)
  opts = decoding.DecodeOptions(method="sample", max_decode_len=MAX_TOKENS, **settings)
  generated = t5tune.generate(model, prompts, method="sample", rng=seed, batch_size=8,
                              max_decode_len=MAX_TOKENS, **settings)
  assert generated != _reference(model, prompts, MAX_TOKENS)  # sampled, not greedy

  served = _complete(ready.url, prompt=prompts, max_tokens=MAX_TOKENS, seed=seed, **settings)
  assert [c["text"] for c in served["choices"]] == generated

  lines = tmp_path / "in.jsonl"
  lines.write_text("".join(json.dumps(p) + "\n" for p in prompts))
  predict.predict_file(model, str(lines), str(tmp_path / "out.jsonl"), vocabulary="byte",
                       options=opts, batch_size=8, seed=seed, progress=False)
  assert [json.loads(l)["prediction"] for l in open(tmp_path / "out.jsonl")] == generated

  task = "t5tune_serve_same_seed"
  if task not in data.task_names():
    data.register_task(
        task, source=data.sources.function(
            {"validation": lambda: [{"text": p, "label": "x"} for p in prompts]}),
        fields=["text", "label"], templates=[data.Template("plain", "{text}", "{label}")],
        metric_fns=[metrics.accuracy], dedup=None)
  # Inputs padded to 16 tokens, as generate's length bucket for these prompts.
  ev = evaluation.TaskEvaluator([task], batch_size=8, options=opts, seed=seed,
                                feature_lengths={"inputs": 16, "targets": 4},
                                output_dir=str(tmp_path / "eval"))
  ev.evaluate(model, step=0)
  written = tmp_path / "eval" / "predictions" / f"{task}.step_0.jsonl"
  assert [json.loads(l)["prediction"] for l in open(written)] == generated


def test_sigterm_drains_in_flight_and_exits_0(ready, model):
  """Runs last: it stops the module's server."""
  with httpx.Client(base_url=ready.url, headers=AUTH, timeout=60) as client:
    with client.stream("POST", "/v1/completions", json={
        "prompt": PROMPTS[2], "max_tokens": MAX_TOKENS, "temperature": 0, "stream": True}) as r:
      lines = r.iter_lines()
      text = [json.loads(next(lines)[len("data: "):])["choices"][0]["text"]]
      ready.proc.send_signal(signal.SIGTERM)  # in flight: the stream has started, not ended
      events = [line[len("data: "):] for line in lines if line.startswith("data: ")]
  assert events and events[-1] == "[DONE]", events
  text += [json.loads(e)["choices"][0]["text"] for e in events[:-1]]
  assert "".join(text) == _reference(model, PROMPTS[2:3], MAX_TOKENS)[0]
  assert ready.proc.wait(timeout=60) == 0, ready.log()
