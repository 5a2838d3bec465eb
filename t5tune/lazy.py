"""Module attributes imported when first used (PEP 562), so importing a package stays cheap."""
import importlib
import sys


def attach(package: str, names: dict[str, tuple[str, str]], submodules=()):
  """(__getattr__, __dir__) for `package`: `names` maps an attribute to (module, attribute);
  `submodules` are `package`'s modules reachable as attributes. A value is cached once loaded."""
  def __getattr__(name):  # pylint: disable=invalid-name
    if name in names:
      module, attr = names[name]
      value = getattr(importlib.import_module(module), attr)
    elif name in submodules:
      value = importlib.import_module(f"{package}.{name}")
    else:
      raise AttributeError(f"module {package!r} has no attribute {name!r}")
    setattr(sys.modules[package], name, value)
    return value

  def __dir__():  # pylint: disable=invalid-name
    return sorted(set(vars(sys.modules[package])) | set(names) | set(submodules))

  return __getattr__, __dir__
