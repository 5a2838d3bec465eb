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
import importlib

_SUBMODULES = ("cleaning", "formats", "instruction_source", "lengths", "mixtures", "pipeline",
               "pretraining", "sources", "tasks", "templates", "vocab", "collections")

# Public name -> (submodule, attribute).
_NAMES = {
    "Template": ("templates", "Template"),
    "FewShot": ("templates", "FewShot"),
    "OptionsStyle": ("templates", "OptionsStyle"),
    "ZERO_SHOT_OPTIONS": ("templates", "ZERO_SHOT_OPTIONS"),
    "ZERO_SHOT": ("templates", "ZERO_SHOT"),
    "COT": ("templates", "COT"),
    "INVERTED": ("templates", "INVERTED"),
    "register_task": ("tasks", "register_task"),
    "register_variants": ("tasks", "register_variants"),
    "task_names": ("tasks", "task_names"),
    "register_mixture": ("mixtures", "register_mixture"),
    "examples_proportional": ("mixtures", "examples_proportional"),
    "temperature": ("mixtures", "temperature"),
    "SourceSpec": ("instruction_source", "SourceSpec"),
    "get_vocabulary": ("vocab", "get_vocabulary"),
    "register_pretraining_task": ("pretraining", "register_pretraining_task"),
    "SpanCorruption": ("pretraining", "SpanCorruption"),
    "PrefixLM": ("pretraining", "PrefixLM"),
}

__all__ = list(_SUBMODULES) + list(_NAMES)


def __getattr__(name):
  if name in _NAMES:
    module, attr = _NAMES[name]
    value = getattr(importlib.import_module(f"{__name__}.{module}"), attr)
  elif name in _SUBMODULES:
    value = importlib.import_module(f"{__name__}.{name}")
  else:
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
  globals()[name] = value
  return value


def __dir__():
  return sorted(set(globals()) | set(__all__))
