"""Train-step speed: t5tune's jitted step vs transformers' PyTorch T5, same config, same run.

    python benchmarks/train_step.py                 # the 256-wide model and t5_1_1_small
    python benchmarks/train_step.py --repeats=5

Both sides train with AdamW in float32 on batch 8 of 128 input / 32 target
tokens (random tokens, all positions weighted). t5tune runs on one device (the
step as the trainer jits it, state donated); PyTorch uses
T5ForConditionalGeneration of the same architecture with torch.optim.AdamW.
Times are medians of --repeats timed steps after warm-up; t5tune's compile
time is reported separately. MFU = model FLOPs (t5tune.models.info.train_flops)
per second / the peak measured in this run with a 2048^3 float32 jnp.matmul.
Prints a markdown table.
"""
import argparse
import datetime
import os
import platform
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import timing  # noqa: E402  (benchmarks/timing.py, beside this script)

BATCH, INPUTS, TARGETS = 8, 128, 32



def peak_flops(repeats):
  import jax
  import jax.numpy as jnp
  n = 2048
  a = jnp.ones((n, n), jnp.float32)
  f = jax.jit(lambda x: x @ x)
  f(a).block_until_ready()
  return 2 * n ** 3 / timing.median_seconds(lambda: f(a).block_until_ready(), repeats)


def t5tune_step(model_cfg, repeats, workdir):
  import jax
  from t5tune import sharding
  from t5tune.models import config as model_config
  from t5tune.train import experiment, trainer
  from tests.train import synthetic
  config = experiment.default_config()
  config.data.iterator_factory = "tests.train.synthetic:make_iterator"
  config.data.inputs_length, config.data.targets_length = INPUTS, TARGETS
  config.data.batch_size = BATCH
  config.optimizer.name = "adamw"
  config.optimizer.learning_rate = 1e-4
  config.model.preset = "t5_1_1_small"
  base = model_config.preset("t5_1_1_small").to_dict()
  for k, v in model_cfg.to_dict().items():
    if v != base[k]:
      config.model.overrides[k] = v
  mesh = sharding.single_device_mesh()
  tr = trainer.Trainer(config, workdir, mesh=mesh)
  it = synthetic.SyntheticIterator(batch_size=BATCH, inputs_length=INPUTS, targets_length=TARGETS,
                                   vocab_size=model_cfg.vocab_size, seed=0, mesh=mesh)
  batches = [next(it) for _ in range(4)]
  for b in batches:  # all positions weighted, as on the PyTorch side
    b["decoder_loss_weights"] = jax.numpy.ones_like(b["decoder_loss_weights"])
  state, _ = tr.initial_state()
  t0 = time.perf_counter()
  step = tr.compile(state, batches[0])
  compile_s = time.perf_counter() - t0
  holder = {"state": state}

  def run():
    holder["state"], m = step(holder["state"], batches[0])
    m["loss"].block_until_ready()
  for _ in range(2):
    run()
  seconds = timing.median_seconds(run, repeats)
  tr.checkpointer.close()
  return seconds, compile_s


def torch_step(model_cfg, repeats):
  import torch
  import transformers
  torch.manual_seed(0)
  hf_cfg = transformers.T5Config(
      vocab_size=model_cfg.vocab_size, d_model=model_cfg.d_model, d_kv=model_cfg.d_kv,
      d_ff=model_cfg.d_ff, num_layers=model_cfg.num_encoder_layers,
      num_decoder_layers=model_cfg.num_decoder_layers, num_heads=model_cfg.num_heads,
      feed_forward_proj=model_cfg.feed_forward_proj, dropout_rate=0.0,
      tie_word_embeddings=model_cfg.tie_word_embeddings, decoder_start_token_id=0)
  model = transformers.T5ForConditionalGeneration(hf_cfg)
  model.train()
  opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
  enc = torch.randint(2, model_cfg.vocab_size, (BATCH, INPUTS))
  labels = torch.randint(2, model_cfg.vocab_size, (BATCH, TARGETS))

  def run():
    opt.zero_grad(set_to_none=True)
    loss = model(input_ids=enc, labels=labels).loss
    loss.backward()
    opt.step()
  for _ in range(2):
    run()
  return timing.median_seconds(run, repeats)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--presets", default="bench256,t5_1_1_small")
  args = parser.parse_args()
  import jax
  import torch
  import transformers
  from t5tune.models import config as model_config
  from t5tune.models import info
  configs = {
      "bench256": model_config.preset(
          "t5_1_1_small", d_model=256, num_encoder_layers=4, num_decoder_layers=4,
          num_heads=4, d_kv=64, d_ff=1024, vocab_size=32128, dropout_rate=0.0),
      "t5_1_1_small": model_config.preset("t5_1_1_small", dropout_rate=0.0),
  }
  peak = peak_flops(args.repeats)
  rows = []
  for name in args.presets.split(","):
    cfg = configs[name]
    flops = info.train_flops(cfg, INPUTS, TARGETS) * BATCH
    with tempfile.TemporaryDirectory() as workdir:
      ours, compile_s = t5tune_step(cfg, args.repeats, workdir)
    theirs = torch_step(cfg, args.repeats)
    tokens = BATCH * (INPUTS + TARGETS)
    rows.append((name, ours, theirs, tokens / ours, tokens / theirs,
                 flops / ours / peak, flops / theirs / peak, compile_s))
  print(f"\n{platform.node()} | {platform.processor() or platform.machine()} |"
        f" {os.cpu_count()} CPUs | jax {jax.__version__} ({jax.devices()[0].platform})"
        f" | torch {torch.__version__} (threads {torch.get_num_threads()})"
        f" | transformers {transformers.__version__} | {datetime.date.today()}")
  print(f"peak (measured 2048^3 f32 matmul, jax): {peak / 1e9:.1f} GFLOP/s;"
        f" batch {BATCH}, {INPUTS} input / {TARGETS} target tokens, fp32, AdamW\n")
  print("| model | t5tune step (ms) | PyTorch step (ms) | speed-up (PyTorch/t5tune) |"
        " t5tune tokens/s | PyTorch tokens/s | t5tune MFU | PyTorch MFU | t5tune compile (s) |")
  print("|---|---|---|---|---|---|---|---|---|")
  for name, ours, theirs, tok_o, tok_t, mfu_o, mfu_t, comp in rows:
    print(f"| {name} | {ours * 1e3:.1f} | {theirs * 1e3:.1f} | {theirs / ours:.2f}x |"
          f" {tok_o:.0f} | {tok_t:.0f} | {mfu_o:.1%} | {mfu_t:.1%} | {comp:.1f} |")


if __name__ == "__main__":
  main()
