"""Compile time and step time of the real train step, scanned layers vs unscanned (T5Config.scan_layers).

    python benchmarks/compile_scan.py                     # base, large, xl compile; base step time
    python benchmarks/compile_scan.py --step_models=t5_1_1_base,t5_1_1_large
    python benchmarks/compile_scan.py --models=tiny --step_models=tiny --repeats=2   # a smoke run

Each row (model x layout) runs in its own process (`benchmarks/harness.py`).
Compile time is the trainer's train step (`t5tune.train.build.step_parts` of
the default experiment: the same optimizer, shardings, donation and loss as
`t5tune train`) lowered
and compiled from abstract shapes (`jax.ShapeDtypeStruct`), so no weights
are allocated and XL compiles on any machine; lowering (tracing to
StableHLO) and XLA's compile are timed apart. Step time needs real weights
and optimizer state, so it is measured only for `--step_models` (default
t5_1_1_base: large needs ~13 GB of RAM for AdamW in float32 and XL ~45 GB,
and a step takes tens of seconds on a 2-core CPU): the median of --repeats
steps of the same compiled executable after one warm-up step, on random
tokens, every target weighted. float32, no dropout, no remat, AdamW, one
CPU device unless --mesh says otherwise.
"""
import argparse
import json
import math
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

import harness  # noqa: E402  (benchmarks/harness.py, beside this script)

MODELS = "t5_1_1_base,t5_1_1_large,t5_1_1_xl"


def side(args) -> dict:
  import jax
  import flax
  from t5tune import sharding
  from t5tune.models import config as model_config
  from t5tune.train import build
  from t5tune.train import plan
  from t5tune.train import synthetic

  mesh_shape = tuple(int(x) for x in args.mesh.split(","))
  cfg = model_config.preset(args.model, dropout_rate=0.0, scan_layers=args.scan,
                            remat_policy=args.remat)
  config = plan.preset_config(cfg, mesh_shape, args.batch, args.inputs, args.targets, "adamw")
  mesh, cfg = build.resolve(config, devices=jax.devices(), model_cfg=cfg)
  parts = build.step_parts(config, mesh, cfg)
  batch_abs = plan.abstract_batch(args.batch, args.inputs, args.targets, mesh)
  with sharding.use_mesh(mesh):
    t0 = time.perf_counter()
    lowered = parts.lower(parts.abstract_state, batch_abs)
    t1 = time.perf_counter()
    compiled = lowered.compile()
    t2 = time.perf_counter()
  memory = compiled.memory_analysis()
  result = {"lower_s": t1 - t0, "compile_s": t2 - t1,
            "temp_gib": memory.temp_size_in_bytes / 2 ** 30,
            "versions": f"jax {jax.__version__} ({jax.default_backend()}, {mesh.size} device(s)),"
                        f" flax {flax.__version__}"}
  if args.step:
    from flax import nnx
    from t5tune.models import t5
    params = nnx.to_pure_dict(nnx.state(t5.build_model(cfg, mesh), nnx.Param))
    holder = {"state": parts.init_state(params, 0)}
    batch = next(synthetic.SyntheticIterator(
        batch_size=args.batch, inputs_length=args.inputs, targets_length=args.targets,
        vocab_size=cfg.vocab_size, seed=0, mesh=mesh))
    batch["decoder_loss_weights"] = jax.numpy.ones_like(batch["decoder_loss_weights"])

    def run():
      holder["state"], metrics = compiled(holder["state"], batch)
      metrics["loss"].block_until_ready()

    run()  # warm-up
    result["step_median_s"], result["step_times_s"] = harness.median_seconds(run, args.repeats)
  return result


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--models", default=MODELS)
  parser.add_argument("--step_models", default="t5_1_1_base",
                      help="models whose step time is measured too ('' for none)")
  parser.add_argument("--batch", type=int, default=8)
  parser.add_argument("--inputs", type=int, default=128)
  parser.add_argument("--targets", type=int, default=32)
  parser.add_argument("--mesh", default="1,1,1", help="data,fsdp,tensor (simulated CPU devices)")
  parser.add_argument("--remat", default="none")
  parser.add_argument("--repeats", type=int, default=3)
  # one side (internal)
  parser.add_argument("--side", action="store_true", help=argparse.SUPPRESS)
  parser.add_argument("--model", help=argparse.SUPPRESS)
  parser.add_argument("--scan", type=int, default=0, help=argparse.SUPPRESS)
  parser.add_argument("--step", type=int, default=0, help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.side:
    devices = math.prod(int(x) for x in args.mesh.split(","))
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    import jax
    jax.config.update("jax_num_cpu_devices", devices)
    harness.report(side(args))
    return

  step_models = set(filter(None, args.step_models.split(",")))
  common = [f"--batch={args.batch}", f"--inputs={args.inputs}", f"--targets={args.targets}",
            f"--mesh={args.mesh}", f"--remat={args.remat}", f"--repeats={args.repeats}"]
  print(f"# Scanned vs unscanned layers: the train step (AdamW, float32, batch {args.batch} x"
        f" ({args.inputs} + {args.targets}) tokens, mesh {args.mesh}, remat {args.remat})\n")
  print("| model | layers | lower s | XLA compile s | XLA temporaries GiB | step s (median) |")
  print("|---|---|---|---|---|---|")
  raw, versions = [], None
  for model in args.models.split(","):
    for scan in (0, 1):
      step = int(model in step_models)
      r = harness.run_side(os.path.abspath(__file__),
                           ["--side", f"--model={model}", f"--scan={scan}", f"--step={step}",
                            *common], timeout=3600)
      versions = r["versions"]
      step_s = f"{r['step_median_s']:.2f}" if step else "not measured"
      print(f"| {model} | {'scanned' if scan else 'unscanned'} | {r['lower_s']:.1f} |"
            f" {r['compile_s']:.1f} | {r['temp_gib']:.2f} | {step_s} |", flush=True)
      raw.append((model, "scanned" if scan else "unscanned", r))
  print()
  for line in harness.machine_lines({"t5tune": versions}):
    print(line)
  print("\nraw:")
  for model, layout, r in raw:
    print(f"- {model} {layout}: " + json.dumps({k: v for k, v in r.items() if k != "versions"}))


if __name__ == "__main__":
  sys.exit(main())
