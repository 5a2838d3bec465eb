"""FLAN in miniature: instruction-tune a small T5 from scratch on the generated flan_mini collection.

    python -m experiments.flan_mini.run --config=configs/experiments/flan_mini.py \\
        --workdir=runs/flan_mini_demo                       # `make demo`: 2-core CPU, < 15 min
    python -m experiments.flan_mini.run --config=configs/experiments/flan_mini.py:large \\
        --workdir=runs/flan_mini_large                      # every ablation, bigger model (GPU)
    ... --config.flan_mini.held_out='("sentiment","closed_book")'   # hold out other clusters
    ... --config.train.init_from=/path/to/hf_t5 --config.flan_mini.vocabulary=/path/spiece.model

`config.train` is a t5tune training config (t5tune.train.experiment); the
driver fills in its mixture per run. `config.flan_mini` says what to train
and evaluate. Settings: "demo" (default), "large", "test" (seconds; CI).
"""
import ml_collections

from t5tune.train import experiment

# Runs the driver knows (see experiments/flan_mini/run.py):
#   instructions   all training clusters, zero-shot templates (the FLAN model)
#   no_template    the same data without instructions (FLAN's baseline)
#   clusters_N     only the first N training clusters of cluster_order
#   mixed          zero-shot and few-shot templates mixed
ALL_RUNS = ("instructions", "no_template", "clusters_1", "clusters_2", "clusters_4", "mixed")


def get_config(arg=None):
  """`arg`: "demo" (default), "large" or "test"."""
  setting = arg or "demo"
  if setting not in ("demo", "large", "test"):
    raise ValueError(f"flan_mini config argument {setting!r}: expected demo, large or test")
  c = ml_collections.ConfigDict()
  c.setting = setting

  t = experiment.default_config()
  t.model.preset = "tiny"
  t.data.modules = ("experiments.flan_mini.tasks",)
  t.data.mixture = "flan_mini_all"  # replaced per run by the driver
  t.data.inputs_length, t.data.targets_length = 256, 96
  t.data.pack = True
  t.data.batch_size = 16
  t.optimizer.name = "adamw"
  t.optimizer.learning_rate = 2e-3
  t.optimizer.grad_clip_norm = 1.0
  t.schedule.name = "cosine"
  t.schedule.warmup_steps = 50
  t.train.steps = 400
  t.train.log_every = 50
  t.eval.every = 0
  t.checkpoint.every = 1000
  t.checkpoint.keep = 1
  t.checkpoint.async_save = False
  c.train = t

  f = ml_collections.ConfigDict()
  f.seed = 0  # the collection's seed (the model's is train.seed)
  # FLAN held out whole clusters; these two share answer formats and the
  # fact base / lexicon with training clusters (README: "Transfer").
  f.held_out = ("nli", "closed_book")
  # Training clusters in the order the clusters_N ablation adds them.
  f.cluster_order = ("paraphrase", "reading", "sentiment", "struct_to_text", "translate",
                     "summarize", "arithmetic", "transform", "nli", "closed_book")
  f.runs = ("instructions", "no_template")
  f.vocabulary = "byte"  # or the SentencePiece .model of train.init_from's checkpoint
  f.eval_examples = 16  # per task and evaluation
  f.eval_held_in = True  # zero-shot on held-in tasks, and their unseen wordings
  f.eval_few_shot = True  # few-shot on held-out tasks
  f.eval_inputs_length = 512  # few-shot inputs are long
  f.eval_decode_length = 64
  c.flan_mini = f

  if setting == "large":
    t.model.preset = "tiny"
    for key, value in dict(d_model=256, d_ff=1024, num_heads=4, d_kv=64,
                           num_encoder_layers=4, num_decoder_layers=4).items():
      t.model.overrides[key] = value
    # bf16 activations (float32 parameters, softmax and norms): the GPU setting.
    t.model.overrides.dtype = "bfloat16"
    t.data.batch_size = 128
    # 2000 steps x 128 packed rows (~640k examples, ~30 epochs of the data):
    # six runs fit in two 9-minute commands on one H100 (README, "Results").
    t.train.steps = 2000
    t.schedule.warmup_steps = 200
    t.optimizer.learning_rate = 1e-3
    t.checkpoint.every = 1000
    f.runs = ALL_RUNS
    f.eval_examples = 100
  elif setting == "test":
    t.data.inputs_length, t.data.targets_length = 128, 64
    t.data.batch_size = 8
    t.train.steps, t.train.log_every = 4, 2
    t.schedule.warmup_steps = 1
    t.checkpoint.every = 4
    f.runs = ("instructions",)
    f.eval_examples = 4
    f.eval_held_in = False
    f.eval_inputs_length = 256
    f.eval_decode_length = 8
  return c
