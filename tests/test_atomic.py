"""t5tune.atomic: a write that fails leaves the old file byte-identical and no temporary file behind."""
import json
import os
import subprocess
import sys

import pytest

from t5tune import atomic

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Boom(Exception):
  pass


def test_text_json_and_bytes_replace_the_file(tmp_path):
  path = tmp_path / "sub" / "out.json"
  atomic.write_json(path, {"b": 1, "a": [1, 2]}, indent=1, sort_keys=True)
  assert path.read_text() == json.dumps({"a": [1, 2], "b": 1}, indent=1, sort_keys=True)
  atomic.write_text(path, "ünïcode\n")
  assert path.read_text(encoding="utf-8") == "ünïcode\n"
  atomic.write_bytes(path, b"\x00\xff")
  assert path.read_bytes() == b"\x00\xff"
  assert sorted(os.listdir(path.parent)) == ["out.json"]


def test_a_failure_mid_write_leaves_the_old_file_and_no_temporary(tmp_path):
  path = tmp_path / "state.json"
  path.write_bytes(b'{"step": 1}\n')
  with pytest.raises(Boom):
    with atomic.writing(path) as tmp:
      with open(tmp, "w") as f:
        f.write('{"step": 2, "half')
      raise Boom()
  assert path.read_bytes() == b'{"step": 1}\n'
  assert os.listdir(tmp_path) == ["state.json"]
  # An object json cannot serialise fails before anything is written.
  with pytest.raises(TypeError):
    atomic.write_json(path, {"x": object()})
  assert path.read_bytes() == b'{"step": 1}\n' and os.listdir(tmp_path) == ["state.json"]


def test_a_killed_writer_leaves_the_old_file_byte_identical(tmp_path):
  path = tmp_path / "model.bin"
  path.write_bytes(b"old" * 1000)
  code = ("import os, sys\nfrom t5tune import atomic\n"
          "with atomic.writing(sys.argv[1]) as tmp:\n"
          "  open(tmp, 'wb').write(b'new')\n"
          "  os._exit(9)\n")  # dies inside the block: no rename, no cleanup
  proc = subprocess.run([sys.executable, "-c", code, str(path)], cwd=REPO,
                        env={**os.environ, "PYTHONPATH": REPO})
  assert proc.returncode == 9
  assert path.read_bytes() == b"old" * 1000
  leftovers = [n for n in os.listdir(tmp_path) if n != "model.bin"]
  assert len(leftovers) == 1 and leftovers[0].startswith(".tmp-model.bin-")


def test_suffix_for_libraries_that_pick_a_format_from_the_name(tmp_path):
  with atomic.writing(tmp_path / "plot.png", suffix=".png") as tmp:
    assert tmp.endswith(".png") and os.path.dirname(tmp) == str(tmp_path)
    with open(tmp, "wb") as f:
      f.write(b"png")
  assert (tmp_path / "plot.png").read_bytes() == b"png"


def test_directories_are_replaced_whole_or_not_at_all(tmp_path):
  path = tmp_path / "model"
  path.mkdir()
  (path / "a").write_text("old")
  with pytest.raises(Boom):
    with atomic.writing_dir(path) as tmp:
      (open(os.path.join(tmp, "a"), "w")).write("new")
      raise Boom()
  assert (path / "a").read_text() == "old" and os.listdir(tmp_path) == ["model"]
  with atomic.writing_dir(path, tag="t5tune") as tmp:
    assert os.path.basename(tmp).startswith(".tmp-t5tune-")
    with open(os.path.join(tmp, "b"), "w") as f:
      f.write("new")
  assert os.listdir(path) == ["b"] and os.listdir(tmp_path) == ["model"]


def test_written_files_and_directories_get_the_users_mode(tmp_path):
  """mkstemp/mkdtemp make temporaries private (0600/0700); what t5tune renames into place gets
  the mode `open`/`mkdir` give under the umask, as every other file of the user."""
  old = os.umask(0o027)
  try:
    atomic.write_text(tmp_path / "a.txt", "x")
    with atomic.writing_dir(tmp_path / "d") as tmp:
      atomic.write_text(os.path.join(tmp, "b.json"), "{}")
    assert atomic.umask() == 0o027
  finally:
    os.umask(old)
  assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o640
  assert (tmp_path / "d").stat().st_mode & 0o777 == 0o750
  assert (tmp_path / "d" / "b.json").stat().st_mode & 0o777 == 0o640
  atomic.write_text(tmp_path / "a.txt", "y")  # a replaced file too
  assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o666 & ~old


def test_a_failed_command_removes_what_it_started_and_keeps_what_was_there(tmp_path):
  new = tmp_path / "new_out"
  with pytest.raises(Boom):
    with atomic.output(new):
      atomic.write_text(new / "metrics.json", "{}")
      raise Boom()
  assert not new.exists()
  old = tmp_path / "old_out"
  old.mkdir()
  (old / "keep.txt").write_text("the user's")
  with pytest.raises(Boom):
    with atomic.output(old):
      atomic.write_text(old / "sub" / "part.json", "{}")
      raise Boom()
  assert sorted(os.listdir(old)) == ["keep.txt"] and (old / "keep.txt").read_text() == "the user's"


def test_a_full_disk_is_the_one_disk_full_error_naming_the_output(tmp_path):
  import errno
  from t5tune import errors
  with pytest.raises(errors.DiskFullError, match="the disk is full: No space left on device") as e:
    with atomic.writing(tmp_path / "model.safetensors") as tmp:
      raise OSError(errno.ENOSPC, "No space left on device", tmp)
  assert e.value.where == str(tmp_path / "model.safetensors") and e.value.exit_code == 2
  assert os.listdir(tmp_path) == []


def test_files_a_library_writes_privately_inside_a_directory_get_the_users_mode(tmp_path):
  """safetensors creates model.safetensors 0600 inside the temporary model directory."""
  with atomic.writing_dir(tmp_path / "model") as tmp:
    fd = os.open(os.path.join(tmp, "model.safetensors"), os.O_WRONLY | os.O_CREAT, 0o600)
    os.close(fd)
    os.mkdir(os.path.join(tmp, "params"), 0o700)
  mask = atomic.umask()
  assert (tmp_path / "model" / "model.safetensors").stat().st_mode & 0o777 == 0o666 & ~mask
  assert (tmp_path / "model" / "params").stat().st_mode & 0o777 == 0o777 & ~mask
