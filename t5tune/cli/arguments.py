"""Checks and readings of a command's flags and arguments, shared by the `t5tune` commands.

Required flags, `--output` and its old spellings, flags of another
sub-command, mesh shapes, stray arguments and decoding options: each wrong
value is a `t5tune.errors.UsageError` naming the flag (printed as one line by
`t5tune.cli.common`'s error path).
"""
from __future__ import annotations

import sys
from typing import Sequence

from absl import flags

from t5tune import errors


def require(flag_values: Sequence, command: str) -> None:
  """A UsageError naming the first of `flag_values` (absl FlagHolders) that was not given."""
  for holder in flag_values:
    if holder.value in (None, "", []):
      raise errors.UsageError(f"--{holder.name} is required", where=f"--{holder.name}",
                              fix=f"`t5tune {command} --help` describes it")


def output_flag(help_text: str, old_names: Sequence[str] = ()):
  """Defines `--output` (the one spelling of "where this command writes") and its old spellings.

  Every command that writes names its destination `--output` (a file, a
  directory or a prefix, as its help says). Old spellings stay accepted with a
  one-line note (`resolve_output`), so existing scripts keep working.
  """
  holder = flags.DEFINE_string("output", None, help_text, allow_override=True)
  for old in old_names:
    flags.DEFINE_string(old, None, "deprecated spelling of --output.", allow_override=True)
  return holder


_NOTED: set[str] = set()


def resolve_output(command: str, old_names: Sequence[str] = ()) -> str | None:
  """The value of `--output`, or of an old spelling given instead (with a deprecation note).

  Giving both with different values is a usage error naming both flags.
  """
  value = flags.FLAGS["output"].value
  for old in old_names:
    flag = flags.FLAGS[old]
    if not flag.present:
      continue
    if flags.FLAGS["output"].present and flag.value != value:
      raise errors.UsageError(f"--{old}={flag.value} and --output={value} disagree",
                              where=f"--{old}", fix="give only --output")
    if old not in _NOTED:  # once per process, however often the value is read
      _NOTED.add(old)
      print(f"t5tune {command}: note: --{old} is deprecated; use --output", file=sys.stderr)
    value = flag.value
  return value


def check_sub_command_flags(command: str, sub: str, flags_of: dict[str, Sequence[str]]) -> None:
  """A flag given on the command line that sub-command `sub` does not use is a UsageError.

  `flags_of` maps each sub-command of `command` to the flags it reads; flags
  no sub-command lists (--module, --verbose, ...) are shared and never refused.
  The error names the sub-commands that do use the flag, so a flag meant for
  one sub-command is not silently ignored by another.
  """
  ours = set(flags_of.get(sub, ()))
  listed = {name for names in flags_of.values() for name in names}
  for name in sorted(listed - ours):
    if name in flags.FLAGS and flags.FLAGS[name].present:
      users = [s for s, names in flags_of.items() if name in names]
      raise errors.UsageError(
          f"--{name} is not a flag of `t5tune {command} {sub}`", where=f"--{name}",
          fix=f"it is read by {', '.join(f'`{command} {u}`' for u in users)}; drop it here")


def mesh_shape(values: Sequence[str], flag: str = "--mesh_shape") -> tuple[int, ...]:
  """A (data, fsdp, tensor) shape from a list flag (one -1 allowed: the remaining devices)."""
  try:
    shape = tuple(int(v) for v in values)
  except ValueError:
    shape = ()
  if len(shape) != 3 or any(n == 0 or n < -1 for n in shape) or shape.count(-1) > 1:
    raise errors.UsageError(
        f"{flag}={','.join(values)} is not a (data, fsdp, tensor) shape",
        fix="give three sizes, at most one -1 (all remaining devices), e.g. -1,1,1 or 1,1,8")
  return shape


def no_extra_args(argv: Sequence[str], command: str, expected: str = "") -> None:
  if len(argv) > 1:
    raise errors.UsageError(
        f"unexpected arguments {' '.join(argv[1:])}", where="command line",
        fix=(f"usage: t5tune {command} {expected}".rstrip() if expected
             else "flags take the form --name=value"))


def decode_options(command: str, **fields):
  """`t5tune.infer.decoding.DecodeOptions(**fields)`; a value it refuses is one line naming the flag.

  The flags carry the options' names, and DecodeOptions declares the one range
  of every decoding setting (NaN and values its dtype cannot hold are outside).
  """
  from t5tune import ranges  # pylint: disable=g-import-not-at-top
  from t5tune.infer import decoding  # pylint: disable=g-import-not-at-top
  for name, value in fields.items():
    if name in decoding.DecodeOptions().numbers():
      ranges.check(f"--{name}", value, ranges.of_field(decoding.DecodeOptions, name))
  try:
    return decoding.DecodeOptions(**fields)
  except decoding.OptionError as e:
    raise errors.UsageError(e.what, where=f"--{e.field}",
                            fix=f"see t5tune {command} --help") from None
