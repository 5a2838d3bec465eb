"""Real instruction-tuning collections registered from their datasets.

`protocol` is FLAN's protocol (splits, caps, mixing, held-out mixtures); each
collection is a data-only module (`flan2021`, its templates in
`flan2021_templates`). `COLLECTIONS` maps a collection name to its module.
"""
from t5tune import errors

COLLECTIONS = {"flan2021": "t5tune.data.collections.flan2021"}


def module_name(name: str) -> str:
  """The module of collection `name` (--collection); an empty or unknown name is a UsageError
  naming the collections (the closest one for a misspelling)."""
  fix = f"collections are {sorted(COLLECTIONS)}"
  if not str(name or "").strip():
    raise errors.UsageError("--collection is empty: name a collection", where="--collection",
                            fix=fix)
  if name not in COLLECTIONS:
    raise errors.UsageError(f"no collection {name!r}.{errors.did_you_mean(name, COLLECTIONS)}",
                            where="--collection", fix=fix)
  return COLLECTIONS[name]
