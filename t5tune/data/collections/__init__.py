"""Real instruction-tuning collections registered from their datasets.

`protocol` is FLAN's protocol (splits, caps, mixing, held-out mixtures); each
collection is a data-only module (`flan2021`, its templates in
`flan2021_templates`). `COLLECTIONS` maps a collection name to its module.
"""
COLLECTIONS = {"flan2021": "t5tune.data.collections.flan2021"}
