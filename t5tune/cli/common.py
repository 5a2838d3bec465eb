"""What every `t5tune` sub-command shares: one error path, quiet start-up, help, module imports.

The checks of a command's own flags and arguments are `t5tune.cli.arguments`.

The one error path: a fault the user can act on is a `t5tune.errors.T5tuneError`
(raised by the library or by a command) and is printed as

    t5tune <command>: error: <what> (<where>); <fix>

on stderr, exiting 2 for usage and input faults and 1 for runtime faults. No
traceback is printed unless `--verbose` (or T5TUNE_VERBOSE=1) asks for it.
Commands never call `sys.exit` with a message or raise `app.UsageError`.
"""
from __future__ import annotations

import contextlib
import importlib
import logging
import os
import sys
import threading
import traceback
import types
import warnings
from typing import Sequence

from absl import flags

from t5tune import errors

VERBOSE_ENV = "T5TUNE_VERBOSE"
_HELP_ARGS = ("-h", "--help", "-?", "--helpshort", "--help=true")
_VERBOSE_ARGS = ("--verbose", "--verbose=true", "--verbose=True", "--verbose=1")

# Read from argv before parsing (logging is set up before the libraries load);
# defined so that absl accepts it and lists it in every command's --help.
flags.DEFINE_bool("verbose", False, f"Show tracebacks and library logs (or {VERBOSE_ENV}=1).", allow_override=True)
flags.DEFINE_bool("quiet", False, "No progress bars (they are also off when stderr is not a"
                  " terminal, or CI is set).", allow_override=True)
_QUIET_ARGS = ("--quiet", "--quiet=true", "--quiet=True", "--quiet=1")


def verbose_requested(args: Sequence[str]) -> bool:
  """--verbose among `args`, or T5TUNE_VERBOSE set to a true value."""
  if any(a in _VERBOSE_ARGS for a in args):
    return True
  return os.environ.get(VERBOSE_ENV, "").lower() in ("1", "true", "yes")


def quiet_start_up(verbose: bool) -> None:
  """Silences TensorFlow's C++ banner, jax's platform notices and orbax's INFO chatter.

  Set before the heavy libraries are imported (TF reads its variable once).
  """
  if verbose:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0")
    return
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
  # absl makes its "absl" logger at import, of its own class that names the caller's file:line;
  # were getLogger("absl") below first, every line logged through absl would name absl's own
  # __init__.py, and _OwnInfoOnly would drop t5tune's INFO lines as a library's.
  from absl import logging as _  # noqa: F401  pylint: disable=g-import-not-at-top
  for name in ("jax._src.xla_bridge", "absl", "orbax", "tensorflow"):
    logging.getLogger(name).setLevel(logging.ERROR if name != "absl" else logging.WARNING)
  # orbax writes through asyncio: a failed write (a full disk) is also logged by asyncio as
  # "exception was never retrieved" with a traceback; t5tune reports that failure itself.
  logging.getLogger("asyncio").setLevel(logging.CRITICAL)
  # ... and tensorstore's callbacks for the failed write's other chunks then find orbax's event
  # loop closed: Python prints each as an "unraisable" exception (dozens of tracebacks before
  # the one line). Such exceptions never change what a command does; they go to the debug log.
  sys.unraisablehook = _unraisable_to_debug_log


def _unraisable_to_debug_log(unraisable) -> None:
  logging.getLogger(__name__).debug(
      "ignored: %s in %r", unraisable.exc_type.__name__, unraisable.object,
      exc_info=(unraisable.exc_type, unraisable.exc_value, unraisable.exc_traceback))


def _silence_after_report() -> None:
  """After the one line, libraries' background threads (e.g. orbax's, failing as the process
  exits after a failed save) would log the same failure again with tracebacks, and Python warns
  of the write coroutines they never awaited: not shown."""
  logging.disable(logging.CRITICAL)
  threading.excepthook = lambda args: None
  warnings.simplefilter("ignore")


_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class _OwnInfoOnly(logging.Filter):
  """Passes t5tune's own log records and libraries' warnings and errors; drops libraries' INFO
  and their records that carry a traceback.

  absl's `app.run` raises the verbosity to INFO, and orbax, clu and seqio log
  through absl's logger, so the records to keep are recognised by coming from
  t5tune's files. A library that logs an
  exception with its traceback (orbax's writer threads, when a save fails) also
  raises it to t5tune, which prints the one line; --verbose shows the rest.
  """

  def filter(self, record):
    if os.path.abspath(record.pathname).startswith(_PACKAGE_DIR + os.sep):
      return True
    if record.getMessage().startswith(_TIMING_NOTICES):
      return False
    return record.levelno >= logging.WARNING and not record.exc_info


# Libraries' warnings that only time themselves: orbax's, when a save waits for the previous
# asynchronous save (a loaded host, a slow disk); the step is saved all the same. --verbose
# shows them.
_TIMING_NOTICES = ("Waiting for previous save to complete",)


def quiet_libraries() -> None:
  """Installs `_OwnInfoOnly` on the handlers absl set up (call once flags are parsed)."""
  for handler in logging.getLogger("absl").handlers + logging.getLogger().handlers:
    if not any(isinstance(f, _OwnInfoOnly) for f in handler.filters):
      handler.addFilter(_OwnInfoOnly())


def error_line(command: str, error: BaseException) -> str:
  """The one line printed for `error` (a T5tuneError, or an OS error naming a file)."""
  error = errors.disk_full(error) or error  # however a library words a full disk
  if isinstance(error, errors.T5tuneError):
    return f"t5tune {command}: error: {error}"
  if isinstance(error, OSError) and error.filename:
    what = error.strerror or type(error).__name__
    return (f"t5tune {command}: error: {what} ({error.filename}); check the path and its"
            " permissions")
  return (f"t5tune {command}: error: {type(error).__name__}: {error}; this is a fault in t5tune"
          f" or a library: rerun with --verbose for the traceback and report it")


def exit_code(error: BaseException) -> int:
  """The error's own code; 2 for an OS error on a path the user named (their path to fix)."""
  error = errors.disk_full(error) or error
  if isinstance(error, OSError) and error.filename and not hasattr(error, "exit_code"):
    return 2
  return getattr(error, "exit_code", 1)


def report(command: str, error: BaseException, verbose: bool) -> int:
  """Prints `error` the one way (a traceback first only when verbose); returns the exit code."""
  if verbose:
    traceback.print_exception(error, file=sys.stderr)
  print(error_line(command, error), file=sys.stderr)
  sys.stderr.flush()
  if not verbose:
    _silence_after_report()
  return exit_code(error)


def import_modules(modules: Sequence[str], where: str = "--module") -> None:
  """Imports the modules that register tasks and mixtures (the current directory first on the path).

  A module that does not exist is a usage error naming `where`; a module that
  fails while importing is the user's code to fix: its error is an InputError
  naming the file:line of the user's code that raised (a t5tune error keeps
  its own text; an error raised inside t5tune or a library stays a fault).
  """
  if os.getcwd() not in sys.path:
    sys.path.insert(0, os.getcwd())
  for module in modules:
    try:
      importlib.import_module(module)
    except errors.T5tuneError:
      raise
    except ModuleNotFoundError as e:
      if e.name and module.startswith(e.name):  # the module itself, not one it imports
        raise errors.UsageError(
            f"no Python module {module!r}", where=where,
            fix="give a module importable from the current directory (e.g. my_pkg.tasks)"
        ) from None
      raise _module_error(module, e) from e
    except SyntaxError as e:
      raise errors.InputError(
          f"module {module!r} has a syntax error: {e.msg}", where=f"{e.filename}:{e.lineno}",
          fix="fix that line") from None
    except Exception as e:  # pylint: disable=broad-except
      raise _module_error(module, e) from e


def _module_error(module: str, error: Exception) -> Exception:
  """An InputError at the user's line that raised `error`, or `error` if none of it is theirs."""
  user_frames = [frame for frame in traceback.extract_tb(error.__traceback__)
                 if _is_user_file(frame.filename)]
  if not user_frames:
    return error
  frame = user_frames[-1]
  return errors.InputError(
      f"importing module {module!r} failed: {type(error).__name__}: {error}",
      where=f"{frame.filename}:{frame.lineno}",
      fix="fix the module (--verbose shows the traceback)")


def _is_user_file(path: str) -> bool:
  """A file of the user's, not t5tune's, the standard library's or an installed package's."""
  if path.startswith("<"):  # <frozen importlib._bootstrap>, <string>
    return False
  path = os.path.abspath(path)
  if path.startswith(_PACKAGE_DIR + os.sep):
    return False
  prefixes = {os.path.abspath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
  return not any(path.startswith(p + os.sep) for p in prefixes)


@contextlib.contextmanager
def _c_library_output_dropped(drop: bool):
  """Sends what C++ libraries write to file descriptor 2 to /dev/null; Python's sys.stderr stays.

  TensorFlow and XLA log through C++ (e.g. "Could not find cuda drivers")
  before any setting of theirs can silence them; t5tune's own lines, progress
  bars and Python warnings go through sys.stderr, which keeps the real stream.
  """
  if not drop:
    yield
    return
  sys.stderr.flush()
  real = os.dup(2)
  null = os.open(os.devnull, os.O_WRONLY)
  saved_stderr = sys.stderr
  sys.stderr = os.fdopen(os.dup(real), "w", buffering=1, encoding="utf-8", errors="replace")
  # Log handlers made before this point (absl's, when jax or absl was imported first, as in a
  # script that imports t5tune and then calls `t5tune.main.run`) hold the old object: moved too.
  moved = [h for h in _stream_handlers() if h.stream is saved_stderr]
  for handler in moved:
    handler.setStream(sys.stderr)
  os.dup2(null, 2)
  os.close(null)
  try:
    yield
  finally:
    for handler in moved:
      handler.setStream(saved_stderr)
    sys.stderr.flush()
    os.dup2(real, 2)
    os.close(real)
    sys.stderr.close()
    sys.stderr = saved_stderr


def _stream_handlers() -> list[logging.StreamHandler]:
  """The stream handlers of the root logger and absl's (absl's writes through a StreamHandler)."""
  handlers = list(logging.getLogger().handlers)
  absl_logging = sys.modules.get("absl.logging")
  if absl_logging is not None:
    handlers.append(absl_logging.get_absl_handler().python_handler)
  return [h for h in handlers if isinstance(h, logging.StreamHandler)]


def run(command: str, module_name: str, args: Sequence[str], usage: str = "") -> None:
  """Runs sub-command `module_name` (which defines absl flags and `main(argv)`) on `args`; exits."""
  verbose = verbose_requested(args)
  quiet_start_up(verbose)
  if any(a in _QUIET_ARGS for a in args):
    from t5tune import progress
    os.environ[progress.QUIET_ENV] = "1"  # read where each bar is made
  with _c_library_output_dropped(not verbose):
    _run(command, module_name, args, usage, verbose)


def _run(command, module_name, args, usage, verbose):
  try:
    module = importlib.import_module(module_name)
  except errors.T5tuneError as e:
    sys.exit(report(command, e, verbose))
  from absl import app

  # A command may hand some arguments to another parser (`data cache`: Beam's pipeline options).
  args = getattr(module, "split_args", lambda a: a)(list(args))
  if any(a in _HELP_ARGS for a in args):
    try:
      print(help_text(command, module, usage))
      sys.stdout.flush()
    except BrokenPipeError:  # `t5tune CMD --help | head`
      os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    sys.exit(0)
  for arg in args:
    # ml_collections defers a missing config file to a multi-line OSError at first use.
    path = arg[len("--config="):].partition(":")[0] if arg.startswith("--config=") else ""
    if path.endswith(".py") and not os.path.isfile(path):
      sys.exit(report(command, errors.InputError(
          "no such config file", where=arg,
          fix="give a Python file with get_config(), e.g. configs/experiments/tiny.py"), verbose))

  def parse(argv):
    try:
      return flags.FLAGS(argv)
    except flags.Error as e:
      if "'config." in str(e):  # an override of a key the config file lacks
        sys.exit(report(command, config_override_error(argv, e), verbose))
      sys.exit(report(command, errors.UsageError(
          str(e), fix=f"`t5tune {command} --help` lists the flags"), verbose))
    except SyntaxError as e:  # the --config file itself (ml_collections runs it while parsing)
      sys.exit(report(command, errors.InputError(
          f"the config file has a syntax error: {e.msg}", where=f"{e.filename}:{e.lineno}",
          fix="fix that line"), verbose))
    except (ImportError, NameError) as e:  # raised by the --config file's own code
      files = {os.path.abspath(a[len("--config="):].partition(":")[0])
               for a in argv if a.startswith("--config=")}
      frames = [f for f in traceback.extract_tb(e.__traceback__)
                if os.path.abspath(f.filename) in files]
      where = f"{frames[-1].filename}:{frames[-1].lineno}" if frames else "--config"
      sys.exit(report(command, errors.InputError(
          f"running the config file failed: {type(e).__name__}: {e}", where=where,
          fix="fix the config file (it must define get_config())"), verbose))
    except (AttributeError, KeyError, TypeError, ValueError) as e:
      # ml_collections reports a bad --config.KEY=VALUE while parsing.
      sys.exit(report(command, config_override_error(argv, e), verbose))

  def main(argv):
    if verbose:
      from absl import logging as absl_logging
      absl_logging.set_verbosity(absl_logging.INFO)
    else:
      quiet_libraries()
    try:
      return module.main(argv)
    except KeyboardInterrupt:
      print(f"t5tune {command}: interrupted", file=sys.stderr)
      sys.exit(130)
    except Exception as e:  # pylint: disable=broad-except
      # One line for every fault (see the module docstring); a traceback only on request.
      sys.exit(report(command, e, verbose))

  app.run(main, argv=[f"t5tune {command}"] + list(args), flags_parser=parse)


def config_override_error(argv: Sequence[str], error: Exception) -> errors.UsageError:
  """A one-line UsageError for a bad `--config.KEY=VALUE`, naming the closest valid keys.

  ml_collections names only the last path component; the full key and the
  closest keys at any depth are found by walking the config file's keys.
  """
  config = None
  spec = next((a.split("=", 1)[1] for a in argv if a.startswith("--config=")), None)
  if spec:
    try:
      config = load_config_file(spec)
    except Exception:  # pylint: disable=broad-except
      config = None  # reported below from ml_collections' own message
  if config is not None:
    keys = flat_keys(config)
    for arg in argv:
      if not arg.startswith("--config."):
        continue
      key = arg[len("--config."):].split("=", 1)[0]
      if key not in keys and not any(k.startswith(key + ".") for k in keys):
        close = closest_keys(key, keys)
        return errors.UsageError(
            f"unknown config key {key!r}" + (f"; closest: {', '.join(close)}" if close else ""),
            where=f"--config.{key}", fix="`--show_config` lists every key with its meaning")
  text = str(error.args[0] if error.args else error).replace("\\n", "\n").replace("\\'", "'")
  message = " ".join(part.strip(" '\"") for part in text.splitlines() if part.strip(" '\""))
  return errors.UsageError(f"bad --config override: {message}", where="--config",
                           fix="`--show_config` lists the keys")


def load_config_file(spec: str):
  """`get_config(arg)` of a config file given as FILE[:ARG] (an InputError if there is no FILE)."""
  import importlib.util
  path, _, arg = spec.partition(":")
  if not os.path.isfile(path):
    raise errors.InputError("no such config file", where=f"--config={spec}",
                            fix="give a Python file with get_config(), e.g. configs/experiments/tiny.py")
  module_spec = importlib.util.spec_from_file_location("_t5tune_config_file", path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module.get_config(arg) if arg else module.get_config()


def flat_keys(config, prefix: str = "") -> list[str]:
  """Every leaf key of a ConfigDict as a dotted path."""
  out = []
  for key, value in config.items():
    path = f"{prefix}{key}"
    if hasattr(value, "items") and not isinstance(value, dict):
      out.extend(flat_keys(value, path + "."))
    else:
      out.append(path)
  return out


def _initials(name: str) -> str:
  return "".join(part[0] for part in name.split("_") if part)


def closest_keys(key: str, keys: Sequence[str], n: int = 3) -> list[str]:
  """The valid dotted keys closest to a misspelt `key`, at any depth.

  difflib's closeness on the whole path and on the last component, plus
  abbreviations (`lr` for `learning_rate`) among the keys of the same section.
  """
  import difflib
  parent, _, leaf = key.rpartition(".")
  same_section = [k for k in keys if k.rpartition(".")[0] == parent]
  picked = [k for k in same_section
            if _initials(k.rpartition(".")[2]) == leaf or k.rpartition(".")[2].startswith(leaf)]
  leaves = {k.rpartition(".")[2]: k for k in same_section}
  picked += [leaves[m] for m in difflib.get_close_matches(leaf, list(leaves), n=n)]
  if not picked:  # a misspelt section: compare whole paths
    picked = difflib.get_close_matches(key, list(keys), n=n)
  return list(dict.fromkeys(picked))[:n]


def flag_modules(module) -> list[str]:
  """The modules whose absl flags a command reads: its own, the cli modules it delegates to
  (data -> data_quality) and this one (--verbose, --quiet). `--help` and the docs' command-line
  reference (docs/hooks.py) list these."""
  used = [m.__name__ for m in vars(module).values()
          if isinstance(m, types.ModuleType) and m.__name__.startswith("t5tune.cli.")
          and m.__name__ != __name__]
  return [module.__name__, *used, __name__]


def help_text(command: str, module, usage: str = "") -> str:
  """The command's usage (its module docstring) and the flags it defines, with their defaults."""
  doc = (usage or module.__doc__ or "").strip()
  lines = [doc, "", "flags:"]
  for name in flag_modules(module):
    text = flags.FLAGS.module_help(name)
    if text:
      lines.append(text)
  return "\n".join(lines)
