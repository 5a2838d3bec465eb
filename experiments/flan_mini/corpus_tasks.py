"""The flan_mini tasks registered with the world corpus's SentencePiece vocabulary, for `t5tune data --module=`.

    t5tune data report flan_mini_vTAG_all --module=experiments.flan_mini.corpus_tasks

(`tasks.py` registers the byte-vocabulary names on import; the driver
registers these itself. TAG is `corpus.vocabulary_tag` of the model file,
printed below as `PREFIX`.)
"""
from experiments.flan_mini import corpus
from experiments.flan_mini import tasks

VOCABULARY = corpus.vocabulary()
NAMES = tasks.register(0, vocabulary=VOCABULARY)
PREFIX = tasks.prefix(0, VOCABULARY)
