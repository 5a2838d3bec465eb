"""lm-evaluation-harness throughput: the `t5tune` backend vs the harness's own Hugging Face seq2seq backend.

    python benchmarks/lm_eval_backend.py [--questions=60] [--d_model=512] [--layers=6]

One random T5 (t5-small-like, tied v1.0 head: the HF backend ties heads, see
tests/infer/test_harness.py) with a SentencePiece vocabulary trained here is
saved as a Hugging Face directory; an MMLU-format local task (the harness's
own MMLU template over a JSON file, 5-shot, 4 options) is evaluated by each
backend in its own process, twice in that process: the first pass includes
t5tune's compiles (and PyTorch's warm-up), the second is steady state. PyTorch
runs with flushed denormals (its faster setting here). Each side prints its
requests/s; the table gives both raw times.
"""
import argparse
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import harness  # noqa: E402

WORDS = ("cat dog fish bird red blue green small large fast slow the a of is not true false"
         " and or which animal colour answer question river stone cloud light dark").split()


def prepare(root: str, args) -> None:
  import numpy as np
  import torch
  import transformers
  from t5tune.data import vocab as vocab_lib
  rng = np.random.RandomState(0)
  texts = [" ".join(rng.choice(WORDS, size=12)) + " A. B. C. D. Answer:" for _ in range(500)]
  spm = vocab_lib.train_sentencepiece(texts, os.path.join(root, "spm"), vocab_size=80)
  pieces = vocab_lib.as_vocabulary(spm).vocab_size
  torch.manual_seed(0)
  cfg = transformers.T5Config(vocab_size=pieces, d_model=args.d_model, d_kv=64, d_ff=4 * args.d_model,
                              num_heads=args.d_model // 64, num_layers=args.layers,
                              num_decoder_layers=args.layers, feed_forward_proj="relu",
                              tie_word_embeddings=True, dropout_rate=0.0, pad_token_id=0,
                              eos_token_id=1, decoder_start_token_id=0)
  model_dir = os.path.join(root, "model")
  transformers.T5ForConditionalGeneration(cfg).eval().save_pretrained(model_dir, safe_serialization=True)
  os.replace(spm, os.path.join(model_dir, "spiece.model"))
  with open(os.path.join(model_dir, "tokenizer_config.json"), "w") as f:
    json.dump({"tokenizer_class": "T5Tokenizer", "extra_ids": 0}, f)
  def rows(n):
    return [{"question": " ".join(rng.choice(WORDS, size=rng.randint(8, 20))) + "?",
             "choices": [" ".join(rng.choice(WORDS, size=rng.randint(1, 5))) for _ in range(4)],
             "answer": int(rng.randint(4))} for _ in range(n)]
  for split, n in (("test", args.questions), ("dev", 5)):
    with open(os.path.join(root, f"{split}.jsonl"), "w") as f:
      f.writelines(json.dumps(r) + "\n" for r in rows(n))
  import lm_eval
  template = os.path.join(os.path.dirname(lm_eval.__file__), "tasks/mmlu/default/_default_template_yaml")
  os.makedirs(os.path.join(root, "tasks"), exist_ok=True)
  with open(os.path.join(root, "tasks", "bench.yaml"), "w") as f:
    f.write(f"include: {template}\ntask: bench_mmlu_local\nnum_fewshot: 5\ndataset_path: json\n"
            f"dataset_name: null\ndataset_kwargs:\n  data_files:\n    test: {root}/test.jsonl\n"
            f"    dev: {root}/dev.jsonl\n")


def side(root: str, which: str, batch_size: int) -> None:
  os.environ["HF_DATASETS_OFFLINE"] = "1"
  import lm_eval
  from lm_eval.tasks import TaskManager
  if which == "t5tune":
    import jax
    from t5tune.infer import harness as backend
    lm = backend.T5tuneLM(checkpoint=f"{root}/model", batch_size=batch_size)
    versions = f"jax {jax.__version__}, lm_eval {lm_eval.__version__}"
  else:
    import torch
    import transformers
    from lm_eval.models.huggingface import HFLM
    flushing = bool(torch.set_flush_denormal(True))
    lm = HFLM(pretrained=f"{root}/model", backend="seq2seq", dtype="float32", device="cpu",
              batch_size=batch_size)
    versions = (f"torch {torch.__version__} ({torch.get_num_threads()} threads,"
                f" flush_denormal={flushing}), transformers {transformers.__version__},"
                f" lm_eval {lm_eval.__version__}")
  times, n = [], 0
  for _ in range(2):  # the same model object: the first pass pays compiles / warm-up
    t0 = time.perf_counter()
    out = lm_eval.simple_evaluate(model=lm, tasks=["bench_mmlu_local"],
                                  task_manager=TaskManager(include_path=os.path.join(root, "tasks")),
                                  log_samples=True)
    times.append(time.perf_counter() - t0)
    n = sum(len(s["resps"]) for s in out["samples"]["bench_mmlu_local"])
  harness.report({"first_s": times[0], "steady_s": times[1], "requests": n, "versions": versions})


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--side", default="")
  parser.add_argument("--root", default="")
  parser.add_argument("--questions", type=int, default=60)
  parser.add_argument("--d_model", type=int, default=512)
  parser.add_argument("--layers", type=int, default=6)
  parser.add_argument("--batch_size", type=int, default=16)
  args = parser.parse_args()
  if args.side == "prepare":
    prepare(args.root, args)
    harness.report({})
    return
  if args.side:
    side(args.root, args.side, args.batch_size)
    return
  script = os.path.abspath(__file__)
  with tempfile.TemporaryDirectory() as root:
    common = [f"--root={root}", f"--questions={args.questions}", f"--d_model={args.d_model}",
              f"--layers={args.layers}", f"--batch_size={args.batch_size}"]
    harness.run_side(script, ["--side=prepare", *common])
    ours = harness.run_side(script, ["--side=t5tune", *common])
    theirs = harness.run_side(script, ["--side=hf", *common])
  n = ours["requests"]
  print(f"\nlm-eval MMLU-format task, 5-shot, {args.questions} questions = {n} loglikelihood requests;"
        f" T5 d_model={args.d_model}, {args.layers}+{args.layers} layers, batch {args.batch_size}\n")
  print("| backend | first pass s (incl. compile / warm-up) | steady pass s | requests/s (steady) |")
  print("|---|---|---|---|")
  for name, r in (("t5tune", ours), ("hf (seq2seq, flushed)", theirs)):
    print(f"| {name} | {r['first_s']:.2f} | {r['steady_s']:.2f} | {n / r['steady_s']:.1f} |")
  print(f"\nratio (steady, hf s / t5tune s): {theirs['steady_s'] / ours['steady_s']:.2f}x\n")
  print("\n".join(harness.machine_lines({"t5tune": ours["versions"], "hf": theirs["versions"]})))


if __name__ == "__main__":
  main()
