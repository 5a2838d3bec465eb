"""Flan-T5 training on Cloud TPU slices, compiled by the TPU compiler: fits?, peak GiB per chip, max batch, roofline (the README's TPU table).

  python benchmarks/tpu_targets.py                     # the default grid; resumable
  python benchmarks/tpu_targets.py --models=flan_t5_small --targets=v5e-1 --tunings=adafactor \\
      --lengths=1024,256 --max_batch                   # one cell, with its largest batch
  python benchmarks/tpu_targets.py --table             # print the table of what is recorded

Each cell compiles t5tune's real train step (`t5tune.train.plan`, what
`t5tune info --plan --target=...` prints) for a slice's compile-only devices
(`t5tune.targets`, libtpu's compiler; no TPU needed): bf16 activations,
float32 parameters, scanned layers (a compile's length then does not grow
with depth), FSDP over the slice. Tunings: full fine-tuning with Adafactor
(FLAN's optimiser) or AdamW, and LoRA rank 16 on every projection (AdamW,
only the LoRA factors trained). A cell is compiled at --batch_per_chip
examples per chip; --max_batch bisects for the largest global batch that
fits (one compile per probe).

Every finished cell is appended to --results (one JSON line; a cell already
there is skipped), so an interrupted run resumes where it stopped. What the
compiler cannot see: the runtime allocator's fragmentation, host offload,
other programs resident on the chip (an evaluation step beside training),
the input pipeline's host memory. The roofline is compute only: XLA's FLOPs
per chip at the chip's bf16 peak.
"""
import argparse
import datetime
import json
import os
import platform
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

MODELS = "flan_t5_small,flan_t5_base,flan_t5_large,flan_t5_xl,flan_t5_xxl"
TARGETS = "v5e-1,v5e-8,v4-8,v5p-8,v4-64,v5e-256"
TUNINGS = ("adafactor", "adamw", "lora16")
LENGTHS = ("1024,256", "2048,512")  # FLAN 2021's and Flan 2022's input,target lengths


def cell_key(model, tuning, target, lengths):
  return f"{model}|{tuning}|{target}|{lengths}"


def compile_cell(model, tuning, target_name, lengths, batch_per_chip, max_batch, remat):
  from t5tune import targets
  from t5tune.models import config as model_config
  from t5tune.train import plan

  target = targets.parse(target_name)
  devices = targets.devices(target)
  overrides = {"scan_layers": True, "dtype": "bfloat16"}
  if remat:
    overrides["remat_policy"] = remat
  if tuning == "lora16":
    overrides["lora_rank"] = 16
  cfg = model_config.preset(model, **overrides)
  inputs_len, targets_len = (int(x) for x in lengths.split(","))

  def compile_at(batch):
    config = plan.preset_config(cfg, (1, -1, 1), batch, inputs_len, targets_len,
                                "adamw" if tuning == "lora16" else tuning)
    config.mesh.shape = (1, target.num_devices, 1)
    if tuning == "lora16":
      config.optimizer.train_only = "peft"
    return plan.plan(config, devices, model_cfg=cfg, target=target)

  start = time.perf_counter()
  batch = batch_per_chip * target.num_devices
  result = compile_at(batch)
  best = None
  if max_batch:
    best, _, _ = plan.max_batch(compile_at, batch, target.num_devices,
                                log=lambda s: print(f"    {s}", flush=True), known={batch: result})
  roof = result.roofline(0.4) if not result.oom else None
  return {"model": model, "tuning": tuning, "target": target_name, "lengths": lengths,
          "batch": batch, "fits": result.fits_target, "oom": result.oom,
          "peak_gib": round(result.peak_bytes / plan.GIB, 3) if not result.oom else None,
          "params_gib": round(result.params_bytes / plan.GIB, 3),
          "opt_state_gib": round(result.opt_state_bytes / plan.GIB, 3),
          "hbm_gib": target.chip.hbm_gib, "max_batch": best,
          "step_ms": round(roof["step_seconds"] * 1e3, 2) if roof else None,
          "tokens_per_chip_40": round(roof["tokens_per_chip"]) if roof else None,
          "device_kind": result.device_kind, "remat": cfg.remat_policy,
          "compile_s": round(time.perf_counter() - start, 1)}


def table(rows):
  lines = ["| model | tuning | target | lengths | batch | fits | peak GiB/chip (of HBM) | max batch"
           " | roofline step ms | tokens/s/chip at 40% MFU | compile s |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
  for r in rows:
    peak = "compiler: out of HBM" if r["oom"] else f"{r['peak_gib']:.2f} ({r['hbm_gib']:g})"
    lines.append(
        f"| {r['model']} | {r['tuning']} | {r['target']} | {r['lengths']} | {r['batch']} |"
        f" {'yes' if r['fits'] else 'no'} | {peak} | {r['max_batch'] if r['max_batch'] is not None else '—'} |"
        f" {r['step_ms'] if r['step_ms'] is not None else '—'} |"
        f" {r['tokens_per_chip_40'] if r['tokens_per_chip_40'] is not None else '—'} |"
        f" {r['compile_s']} |")
  return "\n".join(lines)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--models", default=MODELS)
  parser.add_argument("--targets", default=TARGETS)
  parser.add_argument("--tunings", default=",".join(TUNINGS))
  parser.add_argument("--lengths", nargs="*", default=list(LENGTHS))
  parser.add_argument("--batch_per_chip", type=int, default=8)
  parser.add_argument("--max_batch", action="store_true")
  parser.add_argument("--remat", default=None, help="a remat policy for every cell (default: the preset's)")
  parser.add_argument("--results", default=os.path.join(HERE, "results", "tpu_targets.jsonl"))
  parser.add_argument("--table", action="store_true", help="print the recorded table and stop")
  args = parser.parse_args()
  os.environ.setdefault("JAX_PLATFORMS", "cpu")  # compile-only TPU devices; no TPU client
  from t5tune import jsonl_append
  rows = [json.loads(line) for line in
          jsonl_append.drop_torn_tail(args.results).decode().splitlines() if line.strip()]
  done = {cell_key(r["model"], r["tuning"], r["target"], r["lengths"]) for r in rows}
  if not args.table:
    import jax
    import libtpu
    print(f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; jax {jax.__version__},"
          f" libtpu {getattr(libtpu, '__version__', '?')}; host {platform.processor() or platform.machine()},"
          f" {os.cpu_count()} cores", flush=True)
    os.makedirs(os.path.dirname(os.path.abspath(args.results)), exist_ok=True)
    for lengths in args.lengths:
      for model in args.models.split(","):
        for tuning in args.tunings.split(","):
          for target in args.targets.split(","):
            key = cell_key(model, tuning, target, lengths)
            if key in done:
              continue
            print(f"  {key} ...", flush=True)
            row = compile_cell(model, tuning, target, lengths, args.batch_per_chip,
                               args.max_batch, args.remat)
            row["date"] = f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M}"
            jsonl_append.append_lines(args.results, [json.dumps(row) + "\n"])
            rows.append(row)
            print(f"    fits={row['fits']} peak={row['peak_gib']} GiB compile {row['compile_s']} s",
                  flush=True)
  print(table(rows))


if __name__ == "__main__":
  main()
