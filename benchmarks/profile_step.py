"""Where a train step's time goes: each side's own profiler on one cell, by category and by op.

    python benchmarks/profile_step.py                                  # t5_1_1_small:8:512:128
    python benchmarks/profile_step.py --cell=t5_1_1_small:32:128:32 --top=12

The steps are benchmarks/train_step.py's (AdamW, float32, random tokens,
one device / PyTorch's threads), each side in its own process with the same
allocator. t5tune: `jax.profiler.trace` over --steps steps; each XLA
instruction's time is summed from the trace's per-op events and named by its
HLO opcode and the JAX operations it came from (the compiled HLO's
`metadata={op_name=...}`, fused instructions included). PyTorch:
`torch.profiler` over the same number of steps, self CPU time per aten op,
`set_flush_denormal(True)`. Both sides' ops are put in the same categories
(matrix multiplies, softmax, cross-entropy over the vocabulary, norms, the
optimizer update, copies and layout changes, the rest) by the names their
profilers give; the category rule is a keyword match (printed with the
table), so read the top-op lists beside it.

Why by hand: neither profiler groups ops across the other's names; the
trace is read with the standard library (gzip + json, Chrome trace format).
"""
import argparse
import collections
import glob
import gzip
import json
import os
import re
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

import harness  # noqa: E402
import train_step  # noqa: E402

CATEGORIES = ("matmul", "softmax", "cross-entropy", "norm", "optimizer", "dropout", "copy/layout",
              "other")
_LAYOUT_OPS = {"copy", "transpose", "bitcast", "broadcast", "concatenate", "slice", "pad",
               "dynamic-slice", "dynamic-update-slice", "reshape", "gather", "scatter", "iota"}


def xla_category(opcode: str, op_names: str, shape: str = "", vocab: int = 0) -> str:
  """A category from an instruction's opcode, the JAX op names fused into it and its shape.

  flax NNX adds no module names to the HLO, so the primitives say what an op
  is: a vocabulary-sized result (not a dot) is the loss, exp with a max is a
  softmax, rsqrt is T5's RMS norm.
  """
  names = op_names.lower()
  if opcode in ("parameter", "constant", "tuple", "get-tuple-element"):
    return "other"
  if opcode in ("dot", "convolution") or "dot_general" in names:
    return "matmul"
  if "bernoulli" in names or "threefry" in names or "random_bits" in names:
    return "dropout"  # drawing the masks and applying them
  if ("cross_entropy" in names or "log_softmax" in names or "logsumexp" in names
      or (vocab and re.search(rf"\b{vocab}\b", shape))):
    return "cross-entropy"
  if "softmax" in names or ("/exp" in names and "reduce_max" in names):
    return "softmax"
  if "norm" in names or "rsqrt" in names:
    return "norm"
  # The optimizer runs outside the differentiated model: no jvp/transpose in its names.
  if names and "jvp(" not in names and "transpose(" not in names and "vjp" not in names:
    return "optimizer"
  if opcode in _LAYOUT_OPS:
    return "copy/layout"
  return "other"


def torch_category(name: str) -> str:
  n = name.lower()
  if any(k in n for k in ("aten::mm", "aten::bmm", "aten::addmm", "aten::matmul", "aten::linear",
                          "aten::baddbmm")):
    return "matmul"
  if "log_softmax" in n or "nll_loss" in n or "cross_entropy" in n:
    return "cross-entropy"
  if "softmax" in n:
    return "softmax"
  if any(k in n for k in ("aten::pow", "aten::rsqrt", "aten::mean", "norm")):
    return "norm"
  if "_foreach" in n or "adam" in n or "optimizer" in n:
    return "optimizer"
  if "bernoulli" in n or "dropout" in n:
    return "dropout"
  if any(k in n for k in ("copy", "clone", "contiguous", "transpose", "permute", "cat",
                          "expand", "index", "embedding", "as_strided")):
    return "copy/layout"
  return "other"


def hlo_instructions(hlo_text: str) -> dict[str, tuple[str, str, str]]:
  """{instruction name: (opcode, op names of it and of the instructions fused into it, shape)}."""
  computations, current, own = {}, None, {}
  for line in hlo_text.splitlines():
    head = re.match(r"^(?:ENTRY )?%?([\w.\-]+) .*\{$", line)
    if head:
      current = computations.setdefault(head.group(1), [])
      continue
    inst = re.match(r"^\s*(?:ROOT )?%?([\w.\-]+) = (.*?) ([\w\-]+)\(", line)
    if not inst or current is None:
      continue
    name, shape, opcode = inst.groups()
    op_name = re.search(r'op_name="([^"]*)"', line)
    calls = re.search(r"calls=%?([\w.\-]+)", line)
    current.append(op_name.group(1) if op_name else "")
    own[name] = (opcode, op_name.group(1) if op_name else "", calls.group(1) if calls else None,
                 re.sub(r"\{[^}]*\}", "", shape))
  out = {}
  for name, (opcode, op_name, calls, shape) in own.items():
    fused = computations.get(calls, []) if calls else []
    out[name] = (opcode, " | ".join(n for n in dict.fromkeys([op_name] + fused) if n), shape)
  return out


def t5tune_profile(args):
  import jax
  with train_step.t5tune_step(args) as (run, compiled, cfg, _):
    for _ in range(2):
      run()
    instructions = hlo_instructions(compiled.as_text())
    with tempfile.TemporaryDirectory() as log_dir:
      with jax.profiler.trace(log_dir, create_perfetto_trace=True):
        start = time.perf_counter()
        for _ in range(args.steps):
          run()
        wall_ms = (time.perf_counter() - start) * 1e3 / args.steps
      trace = glob.glob(os.path.join(log_dir, "**", "*.trace.json.gz"), recursive=True)[-1]
      with gzip.open(trace) as f:
        events = json.load(f)
  events = events["traceEvents"] if isinstance(events, dict) else events
  per_op = collections.Counter()
  for e in events:
    if e.get("ph") == "X" and e.get("name") in instructions:
      per_op[e["name"]] += e.get("dur", 0) / 1e3 / args.steps  # ms per step
  ops = []
  for name, ms in per_op.items():
    opcode, names, shape = instructions[name]
    ops.append({"op": name, "ms": ms, "category": xla_category(opcode, names, shape, cfg.vocab_size),
                "what": f"{opcode} {shape}: {_short(names)}"})
  return {"ops": ops, "wall_ms": wall_ms,
          "versions": f"jax {jax.__version__} ({jax.default_backend()})"}


def torch_profile(args, torch):
  from torch import profiler
  run, _ = train_step.torch_step(args, torch)
  for _ in range(2):
    run()
  with profiler.profile(activities=[profiler.ProfilerActivity.CPU]) as prof:
    start = time.perf_counter()
    for _ in range(args.steps):
      run()
    wall_ms = (time.perf_counter() - start) * 1e3 / args.steps
  ops = [{"op": e.key, "ms": e.self_cpu_time_total / 1e3 / args.steps,
          "category": torch_category(e.key), "what": e.key}
         for e in prof.key_averages() if e.self_cpu_time_total > 0]
  return {"ops": ops, "wall_ms": wall_ms, "versions": f"torch {torch.__version__} ({torch.get_num_threads()} threads,"
                                  f" flush_denormal={args.flushing})"}


def _short(names: str, width: int = 90) -> str:
  """The op names without the jit/jvp wrappers, cut to `width`."""
  names = re.sub(r"jit\([^)]*\)/", "", names)
  return names if len(names) <= width else names[:width - 3] + "..."


def by_category(ops) -> dict[str, float]:
  total = collections.Counter()
  for op in ops:
    total[op["category"]] += op["ms"]
  return {c: total.get(c, 0.0) for c in CATEGORIES}


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--cell", default="t5_1_1_small:8:512:128",
                      help="MODEL:BATCH:INPUTS:TARGETS[:DROPOUT]")
  parser.add_argument("--steps", type=int, default=3, help="profiled steps (after two warm-up steps)")
  parser.add_argument("--top", type=int, default=12, help="ops listed per side")
  parser.add_argument("--side", choices=("t5tune", "torch"))
  parser.add_argument("--flush", type=int, default=1)
  args = parser.parse_args()
  vars(args).update(train_step.parse_cell(args.cell))
  if harness.dispatch(args, {"t5tune": t5tune_profile, "torch": torch_profile}):
    return
  script, common = os.path.abspath(__file__), [f"--cell={args.cell}", f"--steps={args.steps}"]
  sides = {name: harness.run_side(script, common + [f"--side={name}"])
           for name in ("t5tune", "torch")}
  print(f"## Train-step profile, {args.cell} ({args.steps} steps, ms per step)\n")
  print("\n".join(harness.machine_lines({n: s["versions"] for n, s in sides.items()})))
  cats = {n: by_category(s["ops"]) for n, s in sides.items()}
  print("\n| category | t5tune ms | % | PyTorch ms | % |\n|---|---|---|---|---|")
  totals = {n: sum(c.values()) for n, c in cats.items()}
  for c in CATEGORIES + ("total",):
    cells = []
    for n in ("t5tune", "torch"):
      ms = totals[n] if c == "total" else cats[n][c]
      cells += [f"{ms:.1f}", f"{100 * ms / totals[n]:.0f}"]
    print(f"| {c} | " + " | ".join(cells) + " |")
  print("| step wall time, profiled | " + " | ".join(
      f"{sides[n]['wall_ms']:.1f} | " for n in ("t5tune", "torch")) + " |")
  print("\nOp times are summed per op (each side's profiler: XLA's thunks, aten's self CPU"
        " time), so their total differs from the wall time where ops overlap or where a"
        " profiler leaves time between ops uncounted.")
  for n, title in (("t5tune", "t5tune (XLA instructions)"), ("torch", "PyTorch (aten ops, self time)")):
    print(f"\nTop {args.top} ops, {title}:\n\n| ms | % | category | op |\n|---|---|---|---|")
    for op in sorted(sides[n]["ops"], key=lambda o: -o["ms"])[:args.top]:
      what = op["what"].replace("|", "/")
      print(f"| {op['ms']:.1f} | {100 * op['ms'] / totals[n]:.0f} | {op['category']} | {what} |")


if __name__ == "__main__":
  main()
