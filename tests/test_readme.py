"""The snippets of the README and of the documentation (docs/*.md) run as written (issues 23, 41).

Every fenced block of README.md and docs/*.md has an info string: `python` (run), `sh`
(its `t5tune ...` lines run), `console` (`$ t5tune ...` lines run, the lines
after them must appear in the output, `...` elides) or `text` (not code: a
synopsis, a format, a layout). A `python`, `sh` or `console` block that cannot
run offline in bounded time says so on the line before its fence:

    <!-- readme-test: skip REASON -->

and a command that runs as written but for a bounded length says what the test
appends to it:

    <!-- readme-test: append ARGS -->

The test fails on a block without an info string, on a skip without a reason,
and on any unmarked runnable block that did not run and pass. The files a
snippet assumes the user has (data/train.jsonl, my_text/*.txt) are written by
the test into a scratch directory where the snippets run; `configs/` is linked
there so that the README's relative paths work. All files' snippets run in one
scratch directory and one Python process, README first, then docs/ by name; a
Python block whose first line is `# NAME.py` is also written there before the
training commands start, so that they can import it (`--config.data.modules`), and
a command naming a training command's workdir runs once that training is done.
"""
import dataclasses
import json
import os
import re
import shlex
import subprocess
import sys

import pytest

from tests import cli
from tests.faults import quiet

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(REPO, "README.md")
DOCS = os.path.join(REPO, "docs")
KINDS = ("python", "sh", "console", "text")
MARK = re.compile(r"<!--\s*readme-test:\s*(skip|append)\b\s*(.*?)\s*-->")
ENV = dict(cli.ENV, JAX_NUM_CPU_DEVICES="8")


@dataclasses.dataclass
class Block:
  line: int  # 1-based line of the opening fence
  kind: str
  text: str
  skip: str | None = None  # the reason, when marked
  append: str = ""
  path: str = "README.md"  # relative to the repository

  @property
  def where(self) -> str:
    return f"{self.path}:{self.line}"


def pages() -> list[str]:
  """The files whose snippets run: README.md, then docs/*.md by name."""
  return [README] + [os.path.join(DOCS, n) for n in sorted(os.listdir(DOCS)) if n.endswith(".md")]


def all_blocks() -> list[Block]:
  return [b for path in pages() for b in blocks(path)]


def blocks(path=README):
  """Every fenced block of a Markdown file with its info string and its marker."""
  with open(path) as f:
    lines = f.read().splitlines()
  out, i = [], 0
  while i < len(lines):
    if lines[i].startswith("```"):
      kind = lines[i][3:].strip()
      start, body = i, []
      i += 1
      while not lines[i].startswith("```"):
        body.append(lines[i])
        i += 1
      block = Block(start + 1, kind, "\n".join(body), path=os.path.relpath(path, REPO))
      mark = MARK.search(lines[start - 1]) if start else None
      if mark and mark.group(1) == "skip":
        block.skip = mark.group(2)
      elif mark:
        block.append = mark.group(2)
      out.append(block)
    i += 1
  return out


def commands(block):
  """The `t5tune ...` command lines of an sh block, continuation lines joined, comments cut."""
  joined = re.sub(r"\\\n\s*", " ", block.text)
  out = []
  for line in joined.splitlines():
    line = line.strip()
    if line.startswith("t5tune "):
      argv = shlex.split(line, comments=True)
      out.append(argv[1:] + shlex.split(block.append))
  return out


def console(block):
  """[(argv, expected output lines)] of a console block."""
  out = []
  for line in block.text.splitlines():
    if line.startswith("$ t5tune "):
      out.append((shlex.split(line[2:])[1:], []))
    elif line.strip() and line.strip() != "...":
      out[-1][1].append(line)
  return out


def _scratch(tmp_path):
  """The directory the snippets run in, with the files they assume the user has."""
  os.symlink(os.path.join(REPO, "configs"), tmp_path / "configs")
  (tmp_path / "data").mkdir()
  rows = [{"question": f"Is {i} even?", "options": ["yes", "no"],
           "answer": "yes" if i % 2 == 0 else "no"} for i in range(12)]
  (tmp_path / "data" / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
  (tmp_path / "raw").mkdir()
  for name in ("train.jsonl", "dev.jsonl"):
    (tmp_path / "raw" / name).write_text((tmp_path / "data" / "train.jsonl").read_text())
  (tmp_path / "my_text").mkdir()
  (tmp_path / "my_text" / "a.txt").write_text(
      "".join(f"Document {i} says the river runs past the old mill to the sea.\n"
              for i in range(20)))


# A snippet whose first line is `# NAME.py` is a module file: written there, then imported as
# the commands' --module would; any other runs as a script in a fresh namespace.
_PYTHON_DRIVER = r"""
import importlib, json, os, re, sys, traceback
sys.path.insert(0, os.getcwd())
results = []
for i, (line, code) in enumerate(json.load(open(sys.argv[1]))):
  try:
    module = re.match(r"# ([\w/]+)\.py\b", code)
    if module:
      os.makedirs(os.path.dirname(module.group(1)) or ".", exist_ok=True)
      with open(module.group(1) + ".py", "w") as f:
        f.write(code)
      importlib.import_module(module.group(1).replace("/", "."))
    else:
      exec(compile(code, line, "exec"), {"__name__": f"readme_{i}"})
    results.append(None)
  except BaseException:
    results.append(traceback.format_exc())
print("RESULTS " + json.dumps(results))
"""


def _t5tune(argv, cwd, timeout=300):
  return cli.run(argv, cwd=cwd, env=ENV, timeout=timeout)


def test_every_block_is_classified():
  assert len(pages()) > 10, "docs/*.md not found"
  found = all_blocks()
  assert blocks(), "no fenced blocks found in README.md"
  for block in found:
    assert block.kind in KINDS, (
        f"{block.where}: give the fence an info string, one of {KINDS}")
    if block.skip is not None:
      assert block.kind != "text", f"{block.where}: a text block is never run"
      assert len(block.skip) > 10, f"{block.where}: a skip needs its reason"
    elif block.kind == "sh":
      assert commands(block), (f"{block.where}: an sh block runs `t5tune ...` lines;"
                               " mark it skip with the reason, or make it text")


def _workdir(argv):
  return next((a.split("=", 1)[1] for a in argv if a.startswith("--workdir=")), None)


def _module_files(python, root):
  """Writes the `# NAME.py` blocks where the commands' imports will find them."""
  for block in python:
    module = re.match(r"# ([\w/]+)\.py\b", block.text)
    if module:
      path = root / (module.group(1) + ".py")
      path.parent.mkdir(parents=True, exist_ok=True)
      path.write_text(block.text)


def test_readme_snippets_run(tmp_path):
  _scratch(tmp_path)
  runnable = [b for b in all_blocks() if b.kind != "text" and b.skip is None]
  ran = set()
  python = [b for b in runnable if b.kind == "python"]
  _module_files(python, tmp_path)
  # The training commands go first, in the background: they are the slow part, and later
  # blocks may read the workdirs they leave (commands naming one wait for its training).
  sh = [b for b in runnable if b.kind == "sh"]
  train = [(b, argv) for b in sh for argv in commands(b) if argv[0] == "train"]
  workdirs = [w for _, argv in train if (w := _workdir(argv))]

  def after_training(argv):
    return argv[0] != "train" and any(w in a for w in workdirs for a in argv)
  background = [(b, argv, subprocess.Popen(
      [sys.executable, "-m", "t5tune"] + argv, cwd=tmp_path, env=ENV, stdout=subprocess.PIPE,
      stderr=subprocess.PIPE, text=True)) for b, argv in train]

  (tmp_path / "snippets.json").write_text(json.dumps([(b.where, b.text) for b in python]))
  proc = subprocess.run([sys.executable, "-c", _PYTHON_DRIVER, "snippets.json"], cwd=tmp_path,
                        env=ENV, capture_output=True, text=True, timeout=300)
  assert "RESULTS " in proc.stdout, proc.stderr[-3000:]
  for block, error in zip(python, json.loads(proc.stdout.split("RESULTS ", 1)[1])):
    assert error is None, f"{block.where} does not run as written:\n{error}"
    ran.add(block.where)

  def run_commands(block, deferred):
    for argv in commands(block):
      if argv[0] != "train" and after_training(argv) == deferred:
        result = _t5tune(argv, tmp_path)
        assert result.returncode == 0, (block.where, argv, result.stderr[-3000:])

  for block in sh:
    run_commands(block, deferred=False)
    if all(argv[0] != "train" and not after_training(argv) for argv in commands(block)):
      ran.add(block.where)
  for block in (b for b in runnable if b.kind == "console"):
    for argv, expected in console(block):
      result = _t5tune(argv, tmp_path)
      output = (result.stdout + result.stderr).splitlines()
      for line in expected:
        assert line in output, (f"{block.where}: `t5tune {' '.join(argv)}` did not"
                                f" print {line!r}", (result.stdout + result.stderr)[-3000:])
    ran.add(block.where)

  for block, argv, p in background:
    _, err = p.communicate(timeout=600)
    assert p.returncode == 0, (block.where, argv, err[-3000:])
    # A fresh process as a user starts it: no library noise, and t5tune's own log lines (the
    # demo tasks' truncation warnings) name t5tune's file:line, not absl's.
    quiet.assert_quiet(err, "train")
  for block in sh:
    if any(argv[0] == "train" or after_training(argv) for argv in commands(block)):
      run_commands(block, deferred=True)
      ran.add(block.where)
  missing = [b.where for b in runnable if b.where not in ran]
  assert not missing, f"blocks {missing} were neither run nor marked skip"
  assert commands(next(b for b, _, _ in background)), "the README trains nothing"


def test_markers_parse(tmp_path):
  readme = tmp_path / "R.md"
  readme.write_text("a\n<!-- readme-test: skip needs the network -->\n```sh\nt5tune x \\\n"
                    "  --a=1  # note\n```\n<!-- readme-test: append --b=2 -->\n```sh\n"
                    "t5tune y\n```\n```\nbare\n```\n")
  found = blocks(str(readme))
  assert [b.kind for b in found] == ["sh", "sh", ""]
  assert found[0].skip == "needs the network" and commands(found[0]) == [["x", "--a=1"]]
  assert commands(found[1]) == [["y", "--b=2"]]
