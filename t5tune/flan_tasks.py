"""The FLAN 2021 collection with its metric functions, from prepared TFDS data (importing registers it).

    t5tune data prepare --collection=flan2021 --data_dir=$TFDS_DATA_DIR
    TFDS_DATA_DIR=... T5TUNE_FLAN_VOCAB=t5/spiece.model \\
        t5tune train --config=configs/experiments/flan2021_heldout.py:nli --workdir=runs/nli

Reads TFDS from `$TFDS_DATA_DIR` (TFDS's own variable; unset: ~/tensorflow_datasets)
and tokenizes with `$T5TUNE_FLAN_VOCAB` (the SentencePiece model of the
checkpoint being tuned, e.g. a converted T5's spiece.model; unset: bytes).
`t5tune train` refuses a run whose `init_from` carries its own spiece.model
when the tasks tokenise with another vocabulary (bytes included), and a run
whose TFDS data is not prepared (`t5tune data prepare --check`'s message).
`t5tune.flan_tasks_mock` registers the same names over TFDS mock data.

A top-level module (like `t5tune.demo_tasks`): the tasks carry metric functions
from `t5tune.infer.metrics`, which `t5tune.data` may not import.
"""
import os

from t5tune.data.collections import flan2021
from t5tune.infer import metrics

VOCAB_ENV = "T5TUNE_FLAN_VOCAB"

NAMES = flan2021.register(data_dir=os.environ.get("TFDS_DATA_DIR"), metric_fns=metrics,
                          vocabulary=os.environ.get(VOCAB_ENV) or "byte")
