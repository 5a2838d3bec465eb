"""What every benchmark shares: median timing, one process per side, and the machine/version header.

A comparison runs each side in its own process (`run_side`): a side never
inherits the other's threads, allocator state, JIT caches or floating-point
mode. The side script prints one line `RESULT {json}`; the caller builds the
table from those lines and prints the raw times of both sides.
"""
import json
import os
import platform
import statistics
import subprocess
import sys
import time

RESULT = "RESULT "


def median_seconds(fn, repeats: int) -> tuple[float, list[float]]:
  """(median, all times) of `repeats` calls of `fn` (which must block until its work is done)."""
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t0)
  return statistics.median(times), times


def report(result: dict) -> None:
  """Prints a side's result for `run_side` (the last thing a side process does)."""
  print(RESULT + json.dumps(result), flush=True)


def run_side(script: str, args: list[str], timeout: float = 1800) -> dict:
  """Runs `python script args` in a fresh process and returns its `RESULT` dict."""
  proc = subprocess.run([sys.executable, script, *args], capture_output=True, text=True,
                        timeout=timeout, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
  lines = [l for l in proc.stdout.splitlines() if l.startswith(RESULT)]
  if proc.returncode != 0 or not lines:
    sys.exit(f"{os.path.basename(script)} {' '.join(args)} failed (exit {proc.returncode}):\n"
             f"{proc.stderr[-3000:]}")
  return json.loads(lines[-1][len(RESULT):])


def dispatch(args, sides: dict) -> bool:
  """Runs the side `args.side` names, if any (True then): `sides` maps "prepare", "t5tune"
  and "torch" to functions of `args` (torch's also gets the module, imported first so every
  thread it creates inherits the flush-denormal mode `args.flush` asks for)."""
  if not args.side:
    return False
  if args.side == "torch":
    import torch  # pylint: disable=g-import-not-at-top
    # set_flush_denormal returns False where the CPU cannot flush (then say so).
    args.flushing = bool(torch.set_flush_denormal(bool(args.flush))) and bool(args.flush)
    report(sides["torch"](args, torch))
  else:
    report(sides[args.side](args))
  return True


def hf_t5(cfg, dropout_rate: float = 0.0):
  """transformers' T5 with random weights and the architecture of t5tune's `cfg`, output layer included.

  transformers 5 builds every T5 with its output layer tied to the embedding
  (its T5Config forces `tie_word_embeddings=True`); for an untied `cfg`
  (T5 v1.1, Flan-T5) the head is untied here the way a Flan-T5 checkpoint
  loads: its own weights (normal, std 1, as transformers draws an untied
  head) and no output scaling. Saved and reloaded, it stays untied.
  """
  import torch  # pylint: disable=g-import-not-at-top
  import transformers  # pylint: disable=g-import-not-at-top
  hf_cfg = transformers.T5Config(
      vocab_size=cfg.vocab_size, d_model=cfg.d_model, d_kv=cfg.d_kv, d_ff=cfg.d_ff,
      num_heads=cfg.num_heads, num_layers=cfg.num_encoder_layers,
      num_decoder_layers=cfg.num_decoder_layers, feed_forward_proj=cfg.feed_forward_proj,
      tie_word_embeddings=cfg.tie_word_embeddings, dropout_rate=dropout_rate, pad_token_id=0,
      eos_token_id=1, decoder_start_token_id=0)
  model = transformers.T5ForConditionalGeneration(hf_cfg)
  if not cfg.tie_word_embeddings:
    model.lm_head.weight = torch.nn.Parameter(torch.randn_like(model.lm_head.weight))
    model.config.tie_word_embeddings = False
    model.config.scale_decoder_outputs = cfg.scale_decoder_outputs
  return model


def cpu_model() -> str:
  """The CPU's name, with family/model, clock and widest vector ISA where the OS says them.

  Virtual machines often name only the vendor line ("AMD EPYC"); two such
  hosts of different generations (their float32 GEMM peaks differed 3x on
  this project's machines) are told apart by family and model.
  """
  fields = {}
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if not line.strip():
          break  # the first processor is enough
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
  except OSError:
    return platform.processor() or platform.machine()
  name = fields.get("model name") or platform.processor() or platform.machine()
  flags = set(fields.get("flags", "").split())
  isa = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else None
  extra = [f"family {fields['cpu family']} model {fields['model']}"
           if "cpu family" in fields and "model" in fields else None,
           f"{float(fields['cpu MHz']):.0f} MHz" if "cpu MHz" in fields else None, isa]
  extra = [e for e in extra if e]
  return f"{name} ({', '.join(extra)})" if extra else name


def machine_lines(sides: dict[str, dict]) -> list[str]:
  """Markdown bullets: date, CPU, cores, OS, allocator, and each side's versions and threads."""
  lines = [
      f"- date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
      f"- machine: {cpu_model()}, {os.cpu_count()} logical CPUs, {platform.system()}"
      f" {platform.release()}, python {platform.python_version()}",
      f"- LD_PRELOAD: {os.environ.get('LD_PRELOAD') or 'none'} (the same for every side)",
  ]
  for name, info in sides.items():
    lines.append(f"- {name}: {info}")
  return lines


def ms(seconds: float) -> str:
  return f"{seconds * 1e3:.1f}"
