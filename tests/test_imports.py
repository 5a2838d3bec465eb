"""No module of t5tune/ or experiments/ reaches itself through the modules it imports.

Function-level imports count: they hide a circle from Python's import
machinery but not from a reader, who then cannot say which module comes
first. `from pkg import sub` is an edge to `pkg.sub` when that is a module
(else to `pkg`); a package's `__init__` running first is not an edge.
"""
import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("t5tune", "experiments")


def _modules(root=ROOT, packages=PACKAGES) -> dict[str, str]:
  """{dotted module name: file path} of every .py file under `packages`."""
  out = {}
  for package in packages:
    for directory, _, files in os.walk(os.path.join(root, package)):
      for f in sorted(files):
        if f.endswith(".py"):
          path = os.path.join(directory, f)
          name = os.path.relpath(path, root)[:-3].replace(os.sep, ".")
          out[name.removesuffix(".__init__")] = path
  return out


def _imports(name: str, path: str, modules) -> set[str]:
  """The modules of `modules` that `name` imports anywhere in its file."""
  with open(path) as f:
    tree = ast.parse(f.read(), path)
  is_package = path.endswith("__init__.py")
  out = set()
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      out.update(a.name for a in node.names if a.name in modules)
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ""
      if node.level:
        parts = name.split(".")[:len(name.split(".")) - node.level + is_package]
        base = ".".join(parts + ([node.module] if node.module else []))
      for a in node.names:
        if f"{base}.{a.name}" in modules:
          out.add(f"{base}.{a.name}")
        elif base in modules:
          out.add(base)
  out.discard(name)
  return out


def graph(root=ROOT, packages=PACKAGES) -> dict[str, set[str]]:
  modules = _modules(root, packages)
  return {name: _imports(name, path, modules) for name, path in modules.items()}


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
  """One import circle [a, b, ..., a], or None (depth-first search, colours)."""
  state, stack = {}, []

  def visit(node):
    state[node] = "open"
    stack.append(node)
    for nxt in sorted(edges.get(node, ())):
      if state.get(nxt) == "open":
        return stack[stack.index(nxt):] + [nxt]
      if nxt not in state:
        found = visit(nxt)
        if found:
          return found
    stack.pop()
    state[node] = "done"
    return None

  for node in sorted(edges):
    if node not in state:
      found = visit(node)
      if found:
        return found
  return None


def test_no_module_imports_itself_through_others():
  edges = graph()
  assert "t5tune.data.tasks" in edges and "experiments.flan_mini.tasks" in edges
  cycle = find_cycle(edges)
  assert cycle is None, "import circle: " + " -> ".join(cycle)


# (importer package, packages it must not import): ARCHITECTURE.md's direction.
FORBIDDEN = [
    ("t5tune.data", ("t5tune.quality", "t5tune.models", "t5tune.train", "t5tune.infer",
                     "t5tune.serve", "t5tune.convert", "t5tune.cli")),
    ("t5tune.quality", ("t5tune.train", "t5tune.infer", "t5tune.serve", "t5tune.cli")),
    ("t5tune.models", ("t5tune.data", "t5tune.quality", "t5tune.train", "t5tune.infer",
                       "t5tune.serve", "t5tune.convert", "t5tune.cli")),
]


@pytest.mark.parametrize("importer,forbidden", FORBIDDEN, ids=[f[0] for f in FORBIDDEN])
def test_imports_follow_the_dependency_direction(importer, forbidden):
  edges = graph()
  wrong = [f"{m} imports {d}" for m, deps in sorted(edges.items())
           if m == importer or m.startswith(importer + ".")
           for d in sorted(deps) if any(d == f or d.startswith(f + ".") for f in forbidden)]
  assert not wrong, wrong


def test_a_circle_hidden_in_a_function_is_found(tmp_path):
  pkg = tmp_path / "pkg"
  pkg.mkdir()
  (pkg / "__init__.py").write_text("")
  (pkg / "a.py").write_text("from pkg import b\n")
  (pkg / "b.py").write_text("def f():\n  from . import c\n")
  (pkg / "c.py").write_text("import os\n\ndef g():\n  import pkg.a\n")
  edges = graph(str(tmp_path), ("pkg",))
  assert edges["pkg.b"] == {"pkg.c"} and edges["pkg.c"] == {"pkg.a"}
  assert find_cycle(edges) == ["pkg.a", "pkg.b", "pkg.c", "pkg.a"]
  (pkg / "c.py").write_text("import os\n")
  assert find_cycle(graph(str(tmp_path), ("pkg",))) is None


@pytest.mark.parametrize("package", PACKAGES)
def test_every_module_parses(package):
  assert any(n.startswith(package + ".") for n in _modules())


def _python(code):
  """Runs `code` in a fresh Python (nothing imported yet); asserts it exits 0."""
  import subprocess
  import sys
  proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"), timeout=300)
  assert proc.returncode == 0, proc.stderr[-2000:]
  return proc


def test_the_server_and_prompt_templates_do_not_import_tensorflow():
  # t5tune.data imports its submodules when first used: serving a model (and its
  # prompt templates) starts without seqio's TensorFlow; registering a task imports it.
  code = ("import sys\n"
          "import t5tune.serve.server, t5tune.cli.serve\n"
          "from t5tune.data import templates\n"
          "from t5tune import data\n"
          "assert data.Template is templates.Template\n"
          "assert 'tensorflow' not in sys.modules and 'seqio' not in sys.modules, 'imported'\n"
          "data.register_task\n"
          "assert 'seqio' in sys.modules\n")
  _python(code)


def test_a_command_process_leaves_out_keras_extras_and_nothing_else():
  # t5tune.main installs the finder before a command imports TensorFlow: Keras (imported through
  # seqio's tensorflow_text) then runs without pandas, scikit-learn, matplotlib and h5py, while
  # any other importer still gets them. A library user's process keeps Keras's integrations.
  import json
  code = ("import json, sys\n"
          "from t5tune.cli import lean_imports\n"
          "import t5tune, t5tune.cli.common\n"
          "library = any(isinstance(f, lean_imports._KerasExtrasFinder) for f in sys.meta_path)\n"
          "lean_imports.install()\n"
          "import seqio\n"
          "loaded = sorted(m for m in lean_imports.SKIPPED if m in sys.modules)\n"
          "import pandas, sklearn.base, matplotlib.pyplot, h5py\n"
          "from keras.src.trainers.data_adapters import array_slicing\n"
          "print(json.dumps([library, 'keras' in sys.modules, loaded, array_slicing.pandas is None]))\n")
  proc = _python(code)
  library, keras_loaded, loaded, keras_without_pandas = json.loads(proc.stdout.splitlines()[-1])
  assert not library and keras_loaded and keras_without_pandas
  assert loaded == [], loaded
