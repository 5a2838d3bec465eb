"""FLAN in miniature: pretrain a small T5 on the world corpus (stage A), instruction-tune it (stage B), hold out one cluster at a time.

    python -m experiments.flan_mini.run --config=configs/experiments/flan_mini.py \\
        --workdir=runs/flan_mini_demo                       # `make demo-knowledge`: 2-core CPU, < 15 min
    python -m experiments.flan_mini.run --config=configs/experiments/flan_mini.py:large \\
        --workdir=runs/flan_mini_large                      # 4 held-out clusters, 3 seeds (GPU)
    python -m experiments.flan_mini.run --config=configs/experiments/flan_mini.py:large_small \\
        --workdir=runs/flan_mini_large_small                # the model-size ablation: smaller model
    ... --config.flan_mini.held_out='("sentiment","closed_book")'   # hold out others (one at a time)

`config.train` is a t5tune training config (t5tune.train.experiment) for
stage B; the driver fills in its mixture per run and starts it from stage
A's model. `config.flan_mini` says what to pretrain, train and evaluate.
Settings: "demo" (default), "cpu" (the reduced CPU run, ~1 h), "large", "large_small", "large_big" (model
size), "test" (seconds; CI).
"""
import ml_collections

from t5tune.train import experiment

# Runs the driver knows (see experiments/flan_mini/run.py):
#   pretrained     P: stage A's model, not tuned
#   instructions   P+IT: all training clusters, zero-shot templates (the FLAN model)
#   no_template    P+NT: the same data without instructions (FLAN's baseline)
#   clusters_N     only the first N training clusters of cluster_order
#   mixed          zero-shot and few-shot templates mixed
#   instructions_scratch  IT without stage A (the control; `control_runs`)
MAIN_RUNS = ("pretrained", "no_template", "instructions")
ALL_RUNS = MAIN_RUNS + ("clusters_1", "clusters_2", "clusters_4", "mixed")
# The model-size ablation (FLAN's scale): d_model, d_ff, heads, layers.
SIZES = {"small": (128, 512, 4, 2), "base": (256, 1024, 4, 4), "big": (384, 1536, 6, 6)}
# The corpus vocabulary's 1,600 ids (pieces and sentinels), padded to a multiple of 128.
VOCAB_SIZE = 1664


def _set_size(t, size: str, **extra) -> None:
  """Overrides the `tiny` preset with one of SIZES (and `extra` model keys)."""
  d_model, d_ff, heads, layers = SIZES[size]
  for key, value in dict(d_model=d_model, d_ff=d_ff, num_heads=heads, d_kv=d_model // heads,
                         num_encoder_layers=layers, num_decoder_layers=layers, **extra).items():
    t.model.overrides[key] = value


def get_config(arg=None):
  """`arg`: "demo" (default), "large" or "test"."""
  setting = arg or "demo"
  settings = ("demo", "cpu", "large", "large_small", "large_big", "test")
  if setting not in settings:
    raise ValueError(f"flan_mini config argument {setting!r}: expected one of {settings}")
  c = ml_collections.ConfigDict()
  c.setting = setting

  t = experiment.default_config()
  t.model.preset = "tiny"
  # The corpus-trained SentencePiece vocabulary (1,500 BPE pieces + T5's 100
  # sentinels, `corpus.vocabulary`): a task input is ~26 tokens (91 bytes),
  # so the same compute trains on 3.5x more text than with bytes.
  _set_size(t, "small", vocab_size=VOCAB_SIZE)
  t.data.modules = ("experiments.flan_mini.tasks",)
  t.data.mixture = "flan_mini_all"  # replaced per run by the driver
  t.data.inputs_length, t.data.targets_length = 128, 32
  t.data.pack = True
  t.data.batch_size = 16
  t.optimizer.name = "adamw"
  t.optimizer.learning_rate = 2e-3
  t.optimizer.grad_clip_norm = 1.0
  t.schedule.name = "cosine"
  t.schedule.warmup_steps = 50
  t.train.steps = 300
  t.train.log_every = 50
  # Stage B regularisation (the from-scratch model memorised its data: loss
  # ~0.005 after 30 passes): dropout, weight decay, few passes.
  t.model.overrides.dropout_rate = 0.1
  t.optimizer.weight_decay = 0.01
  # The checkpoint evaluated is the best on held-in validation loss (never
  # the held-out clusters): evaluate and save at the same steps, keep the best.
  t.eval.every = 100
  t.eval.batches = 4
  t.checkpoint.every = 100
  t.checkpoint.keep = 1
  t.checkpoint.keep_best = 1
  t.checkpoint.async_save = False
  c.train = t

  f = ml_collections.ConfigDict()
  f.seed = 0  # the collection's seed (the model's is train.seed)
  # FLAN held out whole clusters; these two share answer formats and the
  # fact base / lexicon with training clusters (README: "Transfer").
  # Each is held out on its own (FLAN's design), with its FLAN-excluded
  # neighbour (paraphrase for nli and vice versa) dropped from training.
  f.held_out = ("nli",)
  # Training clusters in the order the clusters_N ablation adds them.
  f.cluster_order = ("paraphrase", "reading", "sentiment", "struct_to_text", "translate",
                     "summarize", "arithmetic", "transform", "nli", "closed_book")
  f.runs = MAIN_RUNS
  f.control_runs = ("instructions_scratch",)  # with the first held-out cluster only
  f.seeds = (0,)  # stage-B seeds (train.seed); stage A is shared
  # Stage A: span corruption on the world corpus. `task_fn` registers the
  # seqio task (function(seed=, vocabulary=) -> task name); steps 0 = none.
  p = ml_collections.ConfigDict()
  p.task_fn = "experiments.flan_mini.corpus:register"
  p.steps = 600
  p.learning_rate = 3e-3
  p.inputs_length, p.targets_length = 128, 32
  p.stage_b_rate = 0.0  # span corruption mixed into stage B at this rate
  p.cache_dir = "runs/flan_mini_stage_a"  # this project's stage-A models, reused when present
  f.pretrain = p
  # "corpus" (the world corpus's SentencePiece model, trained once and cached
  # under runs/flan_mini_vocab), "byte", or the path of a SentencePiece .model.
  f.vocabulary = "corpus"
  f.eval_examples = 50  # per task and evaluation
  f.eval_held_in = False  # zero-shot on held-in tasks, and their unseen wordings
  f.eval_few_shot = True  # few-shot on held-out tasks
  f.eval_inputs_length = 512  # few-shot inputs are long
  f.eval_decode_length = 64
  c.flan_mini = f

  if setting.startswith("large"):
    _set_size(t, {"large": "base", "large_small": "small", "large_big": "big"}[setting])
    # bf16 activations (float32 parameters, softmax and norms): the GPU setting.
    t.model.overrides.dtype = "bfloat16"
    t.data.batch_size = 128
    # 2000 steps x 128 packed rows (~640k examples, ~30 epochs of the data):
    # six runs fit in two 9-minute commands on one H100 (README, "Results").
    # Stage B: a few passes over the collection, best held-in checkpoint.
    t.train.steps = 2000
    t.schedule.warmup_steps = 200
    t.optimizer.learning_rate = 1e-3
    t.eval.every = t.checkpoint.every = 250
    t.eval.batches = 8
    p.steps = 10000
    p.learning_rate = 1e-3
    p.inputs_length, p.targets_length = 512, 114
    f.held_out = ("nli", "paraphrase", "closed_book", "sentiment")
    f.runs = ALL_RUNS if setting == "large" else MAIN_RUNS
    f.control_runs = ("instructions_scratch",) if setting == "large" else ()
    f.seeds = (0, 1, 2)
    # Per task; every held-out cluster has >= 3 tasks: >= 1,200 examples
    # per cluster (the collection's test split must hold that many).
    f.eval_examples = 400
    f.eval_held_in = False
  elif setting == "cpu":
    # The larger setting reduced to about an hour on a 2-core CPU (issue: "if
    # no GPU is lent, a reduced CPU run"): the demo's model, longer stage A,
    # all four held-out clusters with >= 800 test examples each, one seed,
    # zero-shot only.
    p.steps = 2000
    t.train.steps = 400
    t.eval.every = t.checkpoint.every = 100
    f.held_out = ("nli", "paraphrase", "closed_book", "sentiment")
    f.eval_examples = 400
    f.eval_few_shot = False
  elif setting == "test":
    # Seconds: the byte vocabulary (nothing to train) and the tiny preset with one layer a
    # stack (each layer is more to compile; the driver's path does not depend on depth).
    f.vocabulary = "byte"
    for key in ("d_model", "d_ff", "num_heads", "d_kv", "vocab_size"):
      t.model.overrides[key] = None
    t.model.overrides.num_encoder_layers = t.model.overrides.num_decoder_layers = 1
    t.data.inputs_length, t.data.targets_length = 128, 64
    t.data.batch_size = 8
    t.train.steps, t.train.log_every = 4, 2
    t.schedule.warmup_steps = 1
    t.eval.every = 0  # (the driver test turns held-in validation on where it checks it)
    t.checkpoint.every = 4
    f.runs = ("instructions",)
    f.control_runs = ()
    p.steps = 0
    f.eval_examples = 4
    f.eval_held_in = False
    f.eval_inputs_length = 256
    f.eval_decode_length = 8
  return c
