"""Module attributes imported when first used (PEP 562), so importing a package stays cheap."""
import importlib
import sys


def attach(package: str, exports: dict[str, tuple[str, ...]], submodules=()):
  """(__getattr__, __dir__) for `package`: `exports` maps a module to the names of it that
  `package` offers; `submodules` are `package`'s modules reachable as attributes. A value is
  cached once loaded."""
  names = {name: module for module, attrs in exports.items() for name in attrs}

  def __getattr__(name):  # pylint: disable=invalid-name
    if name in names:
      value = getattr(importlib.import_module(names[name]), name)
    elif name in submodules:
      value = importlib.import_module(f"{package}.{name}")
    else:
      raise AttributeError(f"module {package!r} has no attribute {name!r}")
    setattr(sys.modules[package], name, value)
    return value

  def __dir__():  # pylint: disable=invalid-name
    return sorted(set(vars(sys.modules[package])) | set(names) | set(submodules))

  return __getattr__, __dir__
