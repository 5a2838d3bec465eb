"""Task machinery: FLAN-style templates, sources, cleaning, seqio tasks (instruction and pretraining) and mixtures.

    from t5tune import data
    data.register_task(name, source=..., templates=[data.Template(...)], fields=[...])
    data.register_mixture(name, [task, ...], rate=data.examples_proportional(3000))

Modules: `templates` (Template, kinds, rendering), `sources` (JSONL/CSV/TSV,
TFDS, Python), `cleaning` (checks, exact/normalised/near dedup, counts),
`vocab` (vocabularies), `instruction_source` (a task's records rendered:
SourceSpec, the seqio DataSource), `tasks` (the one registry: instruction
and pretraining tasks, variants), `pretraining` (span corruption, prefix LM),
`mixtures` (mixtures and rates), `lengths` (token lengths, truncation),
`pipeline` (sharded, resumable global-array batches). The data-quality tools
(near-duplicate reports, contamination, label issues, generation,
augmentation, the data report) are `t5tune.quality`.

Importing this package imports nothing else: each name below is imported when
first used (PEP 562), so `from t5tune.data import templates` (the server's
prompt templates) does not import seqio and TensorFlow (3 s idle, 6 s of CPU
under load); `data.register_task` and the other seqio-backed names do.
"""
from t5tune import lazy as _lazy

_SUBMODULES = ("cleaning", "formats", "instruction_source", "lengths", "mixtures", "pipeline",
               "pretraining", "sources", "tasks", "templates", "vocab", "collections")

# Module -> the names of it this package offers.
_EXPORTS = {
    "t5tune.data.templates": ("Template", "FewShot", "OptionsStyle", "ZERO_SHOT_OPTIONS",
                              "ZERO_SHOT", "COT", "INVERTED"),
    "t5tune.data.tasks": ("register_task", "register_variants", "task_names"),
    "t5tune.data.mixtures": ("register_mixture", "examples_proportional", "temperature"),
    "t5tune.data.instruction_source": ("SourceSpec",),
    "t5tune.data.vocab": ("get_vocabulary",),
    "t5tune.data.pretraining": ("register_pretraining_task", "SpanCorruption", "PrefixLM"),
}

__all__ = list(_SUBMODULES) + [name for names in _EXPORTS.values() for name in names]
__getattr__, __dir__ = _lazy.attach(__name__, _EXPORTS, _SUBMODULES)
