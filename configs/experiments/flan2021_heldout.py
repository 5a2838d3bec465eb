"""FLAN's held-out-cluster ablation on the real FLAN 2021 collection: tune on the other clusters, evaluate the held-out one.

    t5tune data prepare --collection=flan2021 --data_dir=$TFDS_DATA_DIR
    t5tune convert hf-to-t5tune --input=t5-v1_1-lm-adapt-base/ --output=ckpt/lm_adapt_base
    T5TUNE_FLAN_VOCAB=t5-v1_1-lm-adapt-base/spiece.model \\
    t5tune train --config=configs/experiments/flan2021_heldout.py:nli --workdir=runs/heldout_nli \\
        --config.init_from=ckpt/lm_adapt_base
    T5TUNE_FLAN_VOCAB=... t5tune evaluate --config=configs/experiments/flan2021_heldout.py:nli \\
        --checkpoint=runs/heldout_nli/checkpoints --output=runs/heldout_nli/eval
    # a CPU smoke run of the same path on TFDS mock data (no data, no weights):
    t5tune train --config=configs/experiments/flan2021_heldout.py:nli,smoke --workdir=/tmp/smoke

`ARG` is `CLUSTER` (one of `flan2021.CLUSTERS`; default nli) and optionally
`,smoke`. The training mixture is `flan2021_heldout_CLUSTER_train` (every
other cluster, FLAN's exclusions and test overlaps removed; `...train_f22`
for the Flan 2022 formats, `..._train_t4` for the 4-template ablation: set
`--config.data.mixture`); the `evaluation` section scores the held-out
cluster's test splits in both variants (`..._eval_rank`, `..._eval_gen`),
which `t5tune evaluate` reads.

Defaults follow FLAN (Wei et al., 2021): 30k steps, inputs 1,024 and targets
256 tokens, packed, Adafactor, dropout 0.1. FLAN's learning rate (3e-5) and
batch (8,192 packed sequences) were those of a 137B decoder-only model; T5
fine-tuning's Adafactor at a constant 1e-3 with a batch of 128 is the default
here (`--config.data.batch_size` to scale it to a pod). The model is the T5
1.1 base architecture (FLAN used the LM-adapted T5 1.1 checkpoints); with
`init_from` the checkpoint's architecture wins. Tasks are registered by
`t5tune.flan_tasks` (TFDS from $TFDS_DATA_DIR, vocabulary $T5TUNE_FLAN_VOCAB),
or `t5tune.flan_tasks_mock` for `smoke`.
"""
from t5tune.data.collections import flan2021
from t5tune.data.collections import heldout
from t5tune.infer import evaluation
from t5tune.train import experiment


def get_config(arg=None):
  """`arg`: "CLUSTER" or "CLUSTER,smoke" (default "nli")."""
  parts = [p for p in (arg or "nli").split(",") if p]
  cluster = parts[0] if parts and parts[0] != "smoke" else "nli"
  smoke = "smoke" in parts
  extra = [p for p in parts if p not in (cluster, "smoke")]
  if cluster not in flan2021.CLUSTERS or extra:
    raise ValueError(f"flan2021_heldout config argument {arg!r}: expected CLUSTER[,smoke] with"
                     f" CLUSTER one of {flan2021.CLUSTERS}")
  train_mixture, _ = heldout.heldout_names(flan2021.COLLECTION, cluster)
  evaluated = tuple(heldout.heldout_names(flan2021.COLLECTION, cluster, suffix=v)[1]
                    for v in heldout.EVALUATION)

  c = experiment.default_config()
  c.model.preset = "t5_1_1_base"
  c.model.overrides.dropout_rate = 0.1
  c.data.modules = ("t5tune.flan_tasks_mock",) if smoke else ("t5tune.flan_tasks",)
  c.data.mixture = train_mixture
  c.data.inputs_length, c.data.targets_length = 1024, 256
  c.data.pack = True
  c.data.batch_size = 128
  c.optimizer.name = "adafactor"
  c.optimizer.learning_rate = 1e-3
  c.schedule.name = "constant"
  c.train.steps = 30_000
  c.train.log_every = 100
  c.eval.every, c.eval.batches = 2_000, 8
  c.checkpoint.every, c.checkpoint.keep = 2_000, 3

  e = evaluation.default_config()
  e.tasks = evaluated
  e.split = "test"
  e.inputs_length, e.targets_length = 1024, 256
  e.batch_size = 32
  e.decoding.max_decode_len = 256
  if smoke:
    c.model.preset = "tiny"
    c.model.overrides.dropout_rate = 0.0
    c.data.inputs_length, c.data.targets_length = 128, 32
    c.data.batch_size = 8
    c.train.steps, c.train.log_every = 2, 1
    c.eval.every = 0
    c.checkpoint.every, c.checkpoint.keep, c.checkpoint.keep_best = 2, 1, 0
    c.checkpoint.async_save = False
    e.inputs_length, e.targets_length = 128, 32
    e.num_examples, e.batch_size = 2, 8
    e.decoding.max_decode_len = 8
  with c.unlocked():
    c.evaluation = e
  return c
