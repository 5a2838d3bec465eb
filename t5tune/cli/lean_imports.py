"""Keras's optional integrations left out of `t5tune` command processes (`install()`).

A command that reads data imports seqio, which imports tensorflow_text, whose Keras layers import
Keras 3 (and TensorFlow imports its legacy Keras). Keras then imports pandas, scikit-learn,
matplotlib and h5py because they are installed (cleanlab, the harness and t5tune's plots need
them), for DataFrame inputs, its scikit-learn wrappers, image plots and HDF5 saving: none of which
a t5tune command uses through Keras. Those imports are 1.3 s of the 5.6 s that importing seqio
and tensorflow_datasets takes on the 2-core CPU machine. Keras and TensorFlow guard each of them
with `try: ... except ImportError`, so here they fail for Keras's own modules only; every other
importer (t5tune's plots, cleanlab, the harness) gets the real package.

Installed by `t5tune.main` for the command's process only, never by `import t5tune`: a library
user's Keras keeps its integrations. Written by hand: neither Keras nor TensorFlow has a setting
for these imports.
"""
import importlib.abc
import sys

SKIPPED = frozenset({"pandas", "sklearn", "matplotlib", "h5py"})
_IMPORTERS = ("keras.", "tensorflow.python.keras.")


class _KerasExtrasFinder(importlib.abc.MetaPathFinder):
  """Fails a `SKIPPED` package's import when a Keras module asks for it; finds nothing itself."""

  def find_spec(self, fullname, path=None, target=None):
    del path, target
    if fullname in SKIPPED and _importer().startswith(_IMPORTERS):
      raise ModuleNotFoundError(f"{fullname} is not imported for Keras in a t5tune command"
                                f" (see {__name__})", name=fullname)
    return None


def _importer() -> str:
  """The module whose code runs the import statement (the first frame outside importlib)."""
  frame = sys._getframe(2)  # pylint: disable=protected-access
  while frame is not None and frame.f_code.co_filename.startswith("<frozen importlib"):
    frame = frame.f_back
  return frame.f_globals.get("__name__", "") if frame is not None else ""


def install() -> None:
  """Puts the finder first on `sys.meta_path` (once)."""
  if not any(isinstance(f, _KerasExtrasFinder) for f in sys.meta_path):
    sys.meta_path.insert(0, _KerasExtrasFinder())
