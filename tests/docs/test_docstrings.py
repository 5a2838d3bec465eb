"""The public API's docstrings: what the reference pages (docs/hooks.py `API`) document.

Read with griffe, as mkdocstrings reads them for the site (nothing is imported). Every public
function, class and method there has a docstring; the top-level functions (`t5tune.NAME`)
document every argument and what they raise.
"""
import importlib.util
import os

import griffe
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Public functions without a docstring on 2026-12-07 that are left so: none. A name added here
# must say why it needs none.
ALLOWED_WITHOUT = set()


def _hooks():
  spec = importlib.util.spec_from_file_location("docs_hooks", os.path.join(REPO, "docs", "hooks.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


@pytest.fixture(scope="module")
def api():
  hooks = _hooks()
  package = griffe.GriffeLoader(search_paths=[REPO]).load("t5tune")
  return {page: [package[name[len("t5tune."):]] for name in hooks.api_objects(page)]
          for page in hooks.API}


def _public(obj):
  """obj and its public functions, classes and methods defined where it is (not imported)."""
  if obj.is_function or obj.is_class:
    yield obj
  if obj.is_module or obj.is_class:
    for member in obj.members.values():
      if member.is_alias or member.name.startswith("_"):
        continue
      if member.is_function or member.is_class:
        yield from _public(member)


def test_public_functions_have_docstrings(api):
  found = {m.path: m for objects in api.values() for obj in objects for m in _public(obj)}
  assert len(found) > 150, "the reference documents fewer objects than expected"
  missing = sorted(path for path, m in found.items() if not m.docstring and path not in ALLOWED_WITHOUT)
  assert not missing, f"public functions without a docstring (the API reference shows them): {missing}"


def test_top_level_functions_document_arguments_and_raises(api):
  for obj in api["reference/t5tune.md"]:
    if not obj.is_function:
      continue
    sections = obj.docstring.parse("google")
    documented = {p.name.lstrip("*") for s in sections if s.kind.value == "parameters" for p in s.value}
    params = {p.name for p in obj.parameters if p.name != "self"}
    assert params <= documented, (obj.path, sorted(params - documented))
    assert any(s.kind.value == "raises" for s in sections), f"{obj.path}: no Raises section"
