"""Per-device memory of Flan-T5 training on meshes of 8..256 devices: the memory-plan table of docs/scaling.md.

  python benchmarks/memory_plan.py                       # state bytes, no compile (seconds)
  python benchmarks/memory_plan.py --compile --models=flan_t5_large --meshes=1,8,1

Parameters, optimizer state and gradients per device come from the shardings
the trainer gives the train state (`t5tune.train.plan.step_parts`: abstract
shapes, nothing allocated, exact). `--compile` also compiles the real train
step for each row (`t5tune.train.plan.make_plan`, what `t5tune info --plan`
prints) and adds XLA's temporaries and peak; on a 2-core CPU that costs
minutes per row for XL/XXL, so the default table is the state part alone.
"""
import argparse
import math
import os
import sys

MESHES = ((1, 8, 1), (1, 32, 1), (1, 64, 1), (1, 256, 1), (1, 64, 4))


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--models", default="flan_t5_large,flan_t5_xl,flan_t5_xxl")
  parser.add_argument("--meshes", nargs="*", default=[",".join(map(str, m)) for m in MESHES])
  parser.add_argument("--compile", action="store_true")
  parser.add_argument("--batch", type=int, default=256)
  parser.add_argument("--lengths", default="512,128")
  args = parser.parse_args()
  meshes = [tuple(int(x) for x in m.split(",")) for m in args.meshes]
  os.environ.setdefault("JAX_PLATFORMS", "cpu")
  import jax
  jax.config.update("jax_num_cpu_devices", max(math.prod(m) for m in meshes))
  from t5tune import sharding
  from t5tune.models import config as model_config
  from t5tune.train import plan

  inputs_len, targets_len = (int(x) for x in args.lengths.split(","))
  gib = lambda n: f"{n / plan.GIB:.2f}"
  print(f"jax {jax.__version__}; simulated CPU devices; float32 parameters and optimizer state;"
        f" batch {args.batch} x ({inputs_len} + {targets_len})")
  header = ("| model | mesh (data, fsdp, tensor) | optimizer | params GiB | optimizer GiB |"
            " gradients GiB | state total GiB |")
  if args.compile:
    header += " XLA temporaries GiB | XLA peak GiB |"
  print(header)
  print("|" + "---|" * (header.count("|") - 1))
  for name in args.models.split(","):
    cfg = model_config.preset(name, dtype="bfloat16", dropout_rate=0.0, remat_policy="full")
    for mesh_shape in meshes:
      mesh = sharding.make_mesh(mesh_shape, jax.devices()[:math.prod(mesh_shape)])
      for optimizer in ("adafactor", "adamw"):
        parts = plan.step_parts(cfg, mesh, optimizer)
        params = plan.shard_bytes(parts.abstract_state["params"])
        opt = plan.shard_bytes(parts.abstract_state["opt_state"])
        row = (f"| {name} | {mesh_shape} | {optimizer} | {gib(params)} | {gib(opt)} |"
               f" {gib(params)} | {gib(2 * params + opt)} |")
        if args.compile:
          result = plan.make_plan(cfg, mesh_shape, args.batch, inputs_len, targets_len,
                                  optimizer)
          row += f" {gib(result.temp_bytes)} | {gib(result.peak_bytes)} |"
        print(row, flush=True)


if __name__ == "__main__":
  sys.exit(main())
