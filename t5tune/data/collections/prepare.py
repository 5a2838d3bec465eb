"""`t5tune data prepare`: a collection's TFDS datasets, checked in a data directory and prepared where online.

    prepare.run("flan2021", data_dir="~/tensorflow_datasets")             # download + prepare the missing
    prepare.run("flan2021", ["rte", "cb"], data_dir=DIR, check_only=True)  # read only: what is missing

A dataset is prepared when its TFDS builder finds its files (its
`dataset_info.json`) under DIR/builder/config/version. Preparing goes through
the builder's own `download_and_prepare` (TFDS writes to a temporary
directory and renames it when done, so a failed preparation leaves no
half-written dataset). Prepared datasets are never touched again. Where the
machine cannot reach the internet, nothing is downloaded and the missing
datasets are named in one `MissingInputError` with the commands that
prepare them elsewhere; `check_only` never writes (DIR is not even created).
"""
from __future__ import annotations

import importlib
import os
import socket
from typing import Callable, Sequence

from t5tune import errors
from t5tune.data.collections import protocol

# A host every TFDS download needs (TFDS's own metadata and many datasets live on GCS).
PROBE_HOST = ("storage.googleapis.com", 443)


def online(timeout: float = 5.0) -> bool:
  """Whether this machine reaches the internet (one TCP connection to PROBE_HOST)."""
  try:
    socket.create_connection(PROBE_HOST, timeout=timeout).close()
    return True
  except OSError:
    return False


def collection_module(name: str):
  """The data module of a collection in `COLLECTIONS` (empty or unknown: UsageError naming them)."""
  from t5tune.data import collections  # pylint: disable=g-import-not-at-top
  return importlib.import_module(collections.module_name(name))


def select(module, names: Sequence[str] | None) -> list[protocol.DatasetSpec]:
  """The specs named (dataset names or task names `{collection}_{name}`), or all of them."""
  specs = {s.name: s for s in module.DATASETS}
  if not names:
    return list(module.DATASETS)
  prefix = module.COLLECTION + "_"
  out = []
  for name in names:
    key = name[len(prefix):] if name.startswith(prefix) and name[len(prefix):] in specs else name
    if key not in specs:
      raise errors.UsageError(
          f"{module.COLLECTION} has no dataset {name!r}.{errors.did_you_mean(key, specs)}",
          where="--tasks", fix=f"`t5tune data list --collection={module.COLLECTION}` lists them")
    if specs[key] not in out:
      out.append(specs[key])
  return out


def is_prepared(spec: protocol.DatasetSpec, data_dir: str) -> bool:
  """Whether `data_dir` holds the spec's TFDS builder/config/version (read-only check)."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  # The builder knows its directory (a default config, e.g. snli's plain_text, is part of it);
  # making a builder writes nothing.
  path = os.path.join(str(tfds.builder(spec.tfds, data_dir=data_dir).data_dir), "dataset_info.json")
  return os.path.exists(path)


def needs_manual_download(spec: protocol.DatasetSpec) -> bool:
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  cls = tfds.builder_cls(spec.builder_name.split("/")[0])
  return bool(getattr(cls, "MANUAL_DOWNLOAD_INSTRUCTIONS", None))


def _missing_error(collection: str, missing, data_dir: str, why: str,
                   named: bool, where: str | None = None) -> errors.MissingInputError:
  names = ", ".join(f"{s.name} ({s.tfds})" for s in missing)
  manual = [s.name for s in missing if needs_manual_download(s)]
  tasks = f" --tasks={','.join(s.name for s in missing)}" if named else ""
  fix = (f"on a machine with internet access run `t5tune data prepare --collection={collection}"
         f"{tasks} --data_dir={data_dir}` (or `tfds build NAME --data_dir={data_dir}` per dataset)"
         f" and copy {data_dir} here")
  if manual:
    fix += (f"; TFDS prepares {', '.join(manual)} only from a manual download put in"
            f" {data_dir}/downloads/manual first")
  return errors.MissingInputError(
      f"{len(missing)} {collection} dataset(s) are not prepared in {data_dir} and {why}: {names}",
      where=where or f"--data_dir={data_dir}", fix=fix)


def _check_data_dir(data_dir: str) -> None:
  """A UsageError when a file stands where data_dir or one of its parents would be: no command
  could prepare datasets there, so the missing-datasets message would suggest one that fails."""
  nearest = os.path.abspath(data_dir)
  while not os.path.exists(nearest) and os.path.dirname(nearest) != nearest:
    nearest = os.path.dirname(nearest)
  if os.path.exists(nearest) and not os.path.isdir(nearest):
    what = ("is a regular file" if nearest == os.path.abspath(data_dir)
            else f"is inside a regular file ({nearest})")
    raise errors.UsageError(f"--data_dir {what}", where=f"--data_dir={data_dir}",
                            fix="give a directory (TFDS's data_dir), or one that can be made")


def default_data_dir() -> str:
  """Where TFDS reads when no data_dir is given: $TFDS_DATA_DIR, else ~/tensorflow_datasets."""
  return os.path.expanduser(os.environ.get("TFDS_DATA_DIR") or "~/tensorflow_datasets")


def _tfds_source(source):
  """The `sources.TfdsSource` a registered task reads through its wrappers (caps, split
  aliases, the instruction source), or None (mock data, files, functions)."""
  from t5tune.data import sources  # pylint: disable=g-import-not-at-top
  seen = 0
  while source is not None and seen < 16:
    if isinstance(source, sources.TfdsSource):
      return source
    source, seen = getattr(source, "source", None), seen + 1
  return None


def check_tasks(task_names: Sequence[str], reader: str = "training") -> None:
  """The collection datasets that tasks `task_names` read from TFDS are prepared, or one
  `MissingInputError` as `data prepare --check` gives (before TFDS would try a download).

  Tasks of no collection, and collection tasks over other data (TFDS mock data,
  files), are not checked. `reader` names who refuses ("training", "evaluation").
  """
  from t5tune.data import collections  # pylint: disable=g-import-not-at-top
  from t5tune.data import tasks  # pylint: disable=g-import-not-at-top
  known = collections.COLLECTIONS  # e.g. natural_instructions tasks name a collection of no module
  wanted: dict[tuple[str, str], list[protocol.DatasetSpec]] = {}
  for name in task_names:
    if name not in tasks.task_names():
      continue
    info = tasks.get_info(name)
    collection, dataset = info.metadata.get("collection"), info.metadata.get("dataset")
    source = _tfds_source(info.source)
    if not collection or not dataset or source is None or collection not in known:
      continue
    specs = {s.name: s for s in collection_module(collection).DATASETS}
    if dataset not in specs:
      continue
    data_dir = os.path.expanduser(source.data_dir) if source.data_dir else default_data_dir()
    group = wanted.setdefault((collection, data_dir), [])
    if specs[dataset] not in group:
      group.append(specs[dataset])
  for (collection, data_dir), specs in wanted.items():
    order = list(collection_module(collection).DATASETS)  # named as `data prepare` names them
    missing = sorted((s for s in specs if not is_prepared(s, data_dir)), key=order.index)
    if missing:
      raise _missing_error(collection, missing, data_dir, f"{reader} downloads nothing", True,
                           where=f"the TFDS data_dir of the tasks' module: {data_dir}")


def run(collection: str, names: Sequence[str] | None, data_dir: str, *, check_only: bool = False,
        is_online: Callable[[], bool] = online, log: Callable[[str], None] = print) -> list[str]:
  """Checks (and unless `check_only`, prepares) a collection's datasets in `data_dir`; returns the prepared names."""
  module = collection_module(collection)
  specs = select(module, names)
  data_dir = os.path.expanduser(data_dir)
  _check_data_dir(data_dir)
  missing = [s for s in specs if not is_prepared(s, data_dir)]
  for s in specs:
    if s not in missing:
      log(f"prepared  {protocol.task_name(collection, s)}  tfds={s.tfds}")
  if not missing:
    log(f"all {len(specs)} {collection} dataset(s) are prepared in {data_dir}")
    return [s.name for s in specs]
  if check_only:
    raise _missing_error(collection, missing, data_dir, "--check downloads nothing", bool(names))
  if not is_online():
    raise _missing_error(collection, missing, data_dir, "this machine cannot reach the internet",
                         bool(names))
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  failed = []
  for s in missing:
    log(f"preparing {protocol.task_name(collection, s)}  tfds={s.tfds} ...")
    try:
      tfds.builder(s.tfds, data_dir=data_dir).download_and_prepare()
    except Exception as e:  # pylint: disable=broad-except  (TFDS raises many kinds; reported below)
      log(f"  failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
      failed.append(s)
  if failed:
    raise _missing_error(collection, failed, data_dir, "could not be prepared here (see above)",
                         bool(names))
  log(f"all {len(specs)} {collection} dataset(s) are prepared in {data_dir}")
  return [s.name for s in specs]
