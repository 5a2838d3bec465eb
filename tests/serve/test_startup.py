"""Start-up settings of `t5tune serve` that need no server (model id, compilation cache, port), and the app's answers before it is ready."""
import os
import socket

import pytest

from t5tune import errors
from t5tune.serve import server


@pytest.mark.parametrize("path, name", [
    ("runs/flan_mini/checkpoints/600", "flan_mini"),  # a step says nothing: the run's name
    ("runs/flan_mini/checkpoints/600/", "flan_mini"),
    ("runs/flan_mini/checkpoints", "flan_mini"),
    ("runs/x/model", "model"),
    ("flan-t5-small/", "flan-t5-small"),
    ("exports/2024", "exports"),
])
def test_default_model_name_skips_step_directories(path, name):
  assert server.default_model_name(path) == name


def test_compilation_cache_dir_flag_env_and_default(tmp_path):
  assert server.compilation_cache_dir("none", {}) is None
  assert server.compilation_cache_dir("OFF", {}) is None
  assert server.compilation_cache_dir(str(tmp_path / "c"), {"T5TUNE_CACHE_DIR": "/x"}) == str(
      tmp_path / "c")  # the flag wins over the environment
  assert server.compilation_cache_dir(None, {"T5TUNE_CACHE_DIR": "/srv/cache"}) == "/srv/cache/jax"
  assert server.compilation_cache_dir(None, {"XDG_CACHE_HOME": "/xdg"}) == "/xdg/t5tune/jax"
  default = server.compilation_cache_dir(None, {})
  assert default == os.path.join(os.path.expanduser("~"), ".cache", "t5tune", "jax")


def test_enable_compilation_cache_sets_jax_and_refuses_an_unwritable_dir(tmp_path):
  import jax
  before = jax.config.jax_compilation_cache_dir
  try:
    server.enable_compilation_cache(str(tmp_path / "cache"))
    assert jax.config.jax_compilation_cache_dir == str(tmp_path / "cache")
    assert os.path.isdir(tmp_path / "cache")
    (tmp_path / "afile").write_text("x")
    with pytest.raises(errors.OutputNotWritableError, match="compilation cache"):
      server.enable_compilation_cache(str(tmp_path / "afile" / "cache"))
  finally:
    jax.config.update("jax_compilation_cache_dir", before)


def test_check_port_refuses_range_and_a_port_in_use():
  with pytest.raises(errors.UsageError, match="--port=70000 is not a TCP port"):
    server.check_port("127.0.0.1", 70000)
  server.check_port("127.0.0.1", 0)  # 0: the OS picks one
  with socket.socket() as listener:
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    with pytest.raises(errors.UsageError, match=f"port {port} on 127.0.0.1 is already in use"):
      server.check_port("127.0.0.1", port)
  server.check_port("127.0.0.1", port)  # free again once the other listener is gone


def test_default_shapes_are_the_engines_few_and_keep_the_limits():
  """`serve`'s flag defaults are engine.Buckets' (written twice so that --help stays fast)."""
  from t5tune.cli import serve as serve_cli
  from t5tune.serve import engine
  buckets = engine.Buckets()
  for flag in (serve_cli._BATCH_SIZES, serve_cli._INPUT_LENGTHS, serve_cli._DECODE_LENGTHS):
    assert tuple(int(v) for v in flag.default) == getattr(buckets, flag.name), flag.name
  # Few enough to be ready in about a minute for a small model on a CPU (docs/serving.md),
  # with the limits that page states: 512-token prompts, 128 new tokens.
  assert len(buckets.shapes()) <= 8
  assert max(buckets.input_lengths) == 512 and max(buckets.decode_lengths) == 128


def test_while_compiling_a_bad_request_is_400_and_a_good_one_503():
  # In this process, with the buckets never compiled (no warm-up): a client that starts with the
  # server learns of its own mistake at once instead of retrying it until the model is ready.
  from starlette import testclient
  from t5tune.infer import api
  from t5tune.models import config as model_config
  from t5tune.models import t5
  from t5tune.serve import app as app_lib
  from t5tune.serve import engine as engine_lib
  model = t5.build_model(model_config.preset("tiny"), seed=0)
  service = server.make_service(model, api.resolve_vocabulary(model, "byte"),
                                engine_lib.Buckets(batch_sizes=(1,), input_lengths=(16,),
                                                   decode_lengths=(8,)),
                                server.Options(model_name="tiny"))
  assert not service.ready.is_set()
  client = testclient.TestClient(app_lib.build(service))
  for path, body, param in (
      ("/v1/completions", {"prompt": "hi", "max_tokens": -5}, "max_tokens"),
      ("/v1/completions", {"prompt": "hi", "max_tokens": 9}, "max_tokens"),  # over the buckets
      ("/v1/completions", {"prompt": "hi", "temperature": "hot"}, "temperature"),
      ("/v1/score", {"prompt": "hi", "candidates": []}, "candidates")):
    r = client.post(path, json=body)
    assert r.status_code == 400 and r.json()["error"]["param"] == param, (body, r.text)
  for path, body in (("/v1/completions", {"prompt": "hi", "max_tokens": 4}),
                     ("/v1/score", {"prompt": "hi", "candidates": ["a", "b"]})):
    r = client.post(path, json=body)
    assert r.status_code == 503 and r.headers["Retry-After"], r.text
    assert "still compiling" in r.json()["error"]["message"]
  assert client.get("/health").json()["status"] == "compiling"
