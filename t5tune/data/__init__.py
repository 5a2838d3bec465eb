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
augmentation, the data report) are `t5tune.quality`. Importing this package
imports seqio and TensorFlow.
"""
from t5tune.data import cleaning
from t5tune.data import instruction_source
from t5tune.data import mixtures
from t5tune.data import pretraining
from t5tune.data import sources
from t5tune.data import tasks
from t5tune.data import templates
from t5tune.data import vocab

Template = templates.Template
FewShot = templates.FewShot
OptionsStyle = templates.OptionsStyle
ZERO_SHOT_OPTIONS = templates.ZERO_SHOT_OPTIONS
ZERO_SHOT = templates.ZERO_SHOT
COT = templates.COT
INVERTED = templates.INVERTED

register_task = tasks.register_task
register_variants = tasks.register_variants
register_mixture = mixtures.register_mixture
examples_proportional = mixtures.examples_proportional
temperature = mixtures.temperature
SourceSpec = instruction_source.SourceSpec
task_names = tasks.task_names
get_vocabulary = vocab.get_vocabulary
register_pretraining_task, SpanCorruption, PrefixLM = pretraining.register_pretraining_task, pretraining.SpanCorruption, pretraining.PrefixLM
