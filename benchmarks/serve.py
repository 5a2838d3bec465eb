"""Serving throughput and latency: `t5tune serve` (batched and one-at-a-time) vs transformers behind FastAPI.

    python benchmarks/serve.py                                  # t5_1_1_small, 1/8/32 clients
    python benchmarks/serve.py --preset=tiny --clients=1,8 --requests_per_client=2   # a quick check

Random weights in the preset's architecture (t5tune's initialisation) are
saved once as a Hugging Face directory that every server loads (same weights,
so greedy completions are the same tokens on every server; a random model
rarely emits EOS, so nearly every completion is --max_tokens long, and tokens/s
counts the tokens each server reports). Each server runs in its own process,
one server at a time:

* `t5tune serve` with dynamic batching (--batch_sizes=1,8,32);
* `t5tune serve --batch_sizes=1`: the same model, one request at a time;
* what people write today: transformers' PyTorch `generate` behind a minimal
  FastAPI endpoint (a plain `def` endpoint, so FastAPI runs it in its thread
  pool), torch.set_flush_denormal(True), greedy, KV cache on.

Every client sends greedy requests back to back (prompts of mixed lengths);
throughput is completions (and completion tokens) over the wall time of a
level, latency the time from sending a request to its full response. Prints a
markdown table with the machine and versions.
"""
import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402  (benchmarks/harness.py, beside this script)


def _peer(args):
  """The transformers server: the minimal FastAPI endpoint people write around `generate`."""
  import fastapi
  import torch
  import transformers
  import uvicorn
  torch.set_flush_denormal(True)  # see DESIGN.md: without it HF's T5 runs ~4x slower on CPU
  model = transformers.T5ForConditionalGeneration.from_pretrained(args.checkpoint).eval()
  app = fastapi.FastAPI()

  @app.get("/health")
  def health():
    return {"status": "ready"}

  @app.post("/v1/completions")
  def complete(body: dict):
    torch.set_flush_denormal(True)  # the mode is per thread; this runs in FastAPI's pool
    ids = [b + 3 for b in body["prompt"].encode("utf-8")] + [1]  # seqio's byte vocabulary
    with torch.inference_mode():
      out = model.generate(input_ids=torch.tensor([ids]), max_new_tokens=body["max_tokens"],
                           do_sample=False)
    new = out[0, 1:].tolist()
    text = bytes(t - 3 for t in new if 3 <= t < 259).decode("utf-8", errors="ignore")
    return {"choices": [{"index": 0, "text": text, "finish_reason": "length"}],
            "usage": {"completion_tokens": len(new)}}

  uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


def _build_weights(preset: str) -> str:
  """t5tune's random initialisation of the preset, written as a Hugging Face directory for every server."""
  from t5tune.convert import loading
  from t5tune.models import config as model_config
  from t5tune.models import t5
  model = t5.build_model(model_config.preset(preset, dropout_rate=0.0))
  path = os.path.join(tempfile.mkdtemp(prefix="t5tune_serve_bench_"), "hf")
  loading.write_hf_dir(path, model.config, loading.merged_params(model))
  return path


def _start(command, env, log_path):
  with open(log_path, "w") as log:
    return subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)


def _wait_ready(url, proc, log_path, timeout):
  import httpx
  deadline = time.time() + timeout
  while time.time() < deadline:
    if proc.poll() is not None:
      raise SystemExit(f"server exited with {proc.returncode}:\n{open(log_path).read()[-3000:]}")
    try:
      if httpx.get(f"{url}/health", timeout=5).status_code == 200:
        return
    except httpx.HTTPError:
      pass
    time.sleep(1)
  raise SystemExit(f"server not ready after {timeout} s:\n{open(log_path).read()[-3000:]}")


async def _load(url, clients, requests_per_client, prompts, max_tokens):
  import httpx
  latencies, tokens = [], [0]

  async def client(c, http):
    for k in range(requests_per_client):
      prompt = prompts[(c * requests_per_client + k) % len(prompts)]
      t0 = time.perf_counter()
      r = await http.post("/v1/completions", json={"prompt": prompt, "max_tokens": max_tokens,
                                                    "temperature": 0})
      r.raise_for_status()
      latencies.append(time.perf_counter() - t0)
      tokens[0] += r.json()["usage"]["completion_tokens"]

  async with httpx.AsyncClient(base_url=url, timeout=600,
                               limits=httpx.Limits(max_connections=clients)) as http:
    t0 = time.perf_counter()
    await asyncio.gather(*[client(c, http) for c in range(clients)])
    wall = time.perf_counter() - t0
  latencies.sort()
  p99 = latencies[min(len(latencies) - 1, int(round(0.99 * (len(latencies) - 1))))]
  return {"completions_s": len(latencies) / wall, "tokens_s": tokens[0] / wall,
          "p50": statistics.median(latencies), "p99": p99, "n": len(latencies), "wall": wall}


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--preset", default="t5_1_1_small")
  parser.add_argument("--clients", default="1,8,32")
  parser.add_argument("--requests_per_client", type=int, default=4)
  parser.add_argument("--max_tokens", type=int, default=32)
  parser.add_argument("--servers", default="t5tune,t5tune_unbatched,transformers")
  parser.add_argument("--port", type=int, default=18431)
  parser.add_argument("--peer", help=argparse.SUPPRESS)
  parser.add_argument("--checkpoint", help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.peer:
    return _peer(args)

  sys.path.insert(0, ROOT)
  levels = [int(c) for c in args.clients.split(",")]
  checkpoint = _build_weights(args.preset)
  words = "the quick brown fox jumps over a lazy dog while seven small birds sing".split()
  prompts = [" ".join(words[:3 + (i * 5) % 11]) + f" #{i}" for i in range(64)]  # 15-70 bytes
  serve = [sys.executable, "-m", "t5tune.main", "serve", f"--checkpoint={checkpoint}",
           "--vocab=byte", f"--port={args.port}", "--input_lengths=128",
           f"--decode_lengths={args.max_tokens}", "--max_queue=1024", "--mesh_shape=1,1,1"]
  commands = {
      "t5tune": serve + ["--batch_sizes=1,8,32", "--max_wait_ms=5"],
      "t5tune_unbatched": serve + ["--batch_sizes=1", "--max_wait_ms=0"],
      "transformers": [sys.executable, os.path.abspath(__file__), "--peer=transformers",
                       f"--checkpoint={checkpoint}", f"--port={args.port}"],
  }
  labels = {"t5tune": "t5tune serve (dynamic batching)",
            "t5tune_unbatched": "t5tune serve, one request at a time",
            "transformers": "transformers generate + FastAPI"}
  env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="2", JAX_NUM_CPU_DEVICES="1")
  url = f"http://127.0.0.1:{args.port}"
  results, startup = {}, {}
  for name in args.servers.split(","):
    log_path = os.path.join(os.path.dirname(checkpoint), f"{name}.log")
    t0 = time.time()
    proc = _start(commands[name], env, log_path)
    try:
      _wait_ready(url, proc, log_path, timeout=1800)
      startup[name] = time.time() - t0
      asyncio.run(_load(url, 2, 2, prompts, args.max_tokens))  # warm-up
      for clients in levels:
        results[name, clients] = asyncio.run(
            _load(url, clients, args.requests_per_client, prompts, args.max_tokens))
        r = results[name, clients]
        print(f"{name} clients={clients}: {r['completions_s']:.2f} completions/s, p50"
              f" {r['p50']:.3f} s, p99 {r['p99']:.3f} s ({r['n']} requests)", flush=True)
    finally:
      proc.send_signal(signal.SIGTERM)
      try:
        proc.wait(timeout=120)
      except subprocess.TimeoutExpired:
        proc.kill()

  import jax
  import torch
  import transformers
  print(f"\n## Serving: {args.preset}, greedy, {args.max_tokens} new tokens per completion,"
        f" prompts of 15-70 bytes\n")
  print("\n".join(harness.machine_lines({
      "t5tune": f"jax {jax.__version__} ({jax.default_backend()}), one device",
      "transformers": f"{transformers.__version__}, torch {torch.__version__}"
                      f" ({torch.get_num_threads()} threads, flush-denormal on)"})))
  print(f"- {args.requests_per_client} requests per client, back to back; server start-up"
        " (load + compile) s: " + ", ".join(f"{n} {s:.0f}" for n, s in startup.items()))
  print(f"- command: python benchmarks/serve.py {' '.join(sys.argv[1:])}\n")
  print("| server | clients | completions/s | tokens/s | p50 latency s | p99 latency s |")
  print("|---|---|---|---|---|---|")
  for (name, clients), r in results.items():
    print(f"| {labels[name]} | {clients} | {r['completions_s']:.2f} | {r['tokens_s']:.0f}"
          f" | {r['p50']:.3f} | {r['p99']:.3f} |")


if __name__ == "__main__":
  main()
