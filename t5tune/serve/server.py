"""Starting and stopping the server: load, listen, compile in the background, drain on SIGTERM.

The socket opens at once so that /health can say "compiling" while the
buckets compile on a background thread; completions answer 503 until then.
On SIGTERM (or Ctrl-C) uvicorn stops accepting connections and waits up to
`drain_timeout_s` for in-flight requests; the batcher then runs what is still
queued and stops, and the process exits 0.
"""
from __future__ import annotations

import dataclasses
import errno
import logging
import os
import signal
import socket
import threading
import time
from typing import Any

import uvicorn

from t5tune import errors
from t5tune.serve import app as app_lib
from t5tune.serve import batcher as batcher_lib
from t5tune.serve import completions
from t5tune.serve import engine as engine_lib
from t5tune.serve import metrics as metrics_lib

_log = logging.getLogger("t5tune.serve")


@dataclasses.dataclass
class Options:
  host: str = "127.0.0.1"
  port: int = 8000
  api_key: str | None = None
  model_name: str = "t5tune"
  template: Any = None  # a template string, or a registered `templates.Template`
  options_style: Any = None  # how a registered template's task writes {options_} (None: default)
  max_wait_ms: float = 5.0
  max_queue: int = 256
  stream_chunk: int = 4
  drain_timeout_s: float = 30.0
  limits: completions.Limits = dataclasses.field(default_factory=completions.Limits)
  started_at: float | None = None  # time.monotonic() at the command's start: time-to-ready


CACHE_ENV = "T5TUNE_CACHE_DIR"
CACHE_OFF = ("none", "off", "")


def default_model_name(checkpoint: str) -> str:
  """The served model id: the model directory's name, or the run's for a checkpoint step.

  runs/flan/checkpoints/600 -> "flan" (a bare step number says nothing to a
  client), runs/x/model -> "model", flan-t5-small/ -> "flan-t5-small".
  """
  parts = [p for p in os.path.normpath(os.path.abspath(checkpoint)).split(os.sep) if p]
  while len(parts) > 1 and (parts[-1].isdigit() or parts[-1] == "checkpoints"):
    parts.pop()
  return parts[-1] if parts else "t5tune"


def compilation_cache_dir(flag_value: str | None, environ=os.environ) -> str | None:
  """Where compiled programs persist across restarts: the flag, else $T5TUNE_CACHE_DIR/jax,
  else $XDG_CACHE_HOME/t5tune/jax (~/.cache/t5tune/jax); None when the flag says none/off."""
  if flag_value is not None:
    return None if flag_value.strip().lower() in CACHE_OFF else os.path.expanduser(flag_value)
  if environ.get(CACHE_ENV):
    return os.path.join(os.path.expanduser(environ[CACHE_ENV]), "jax")
  base = environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
  return os.path.join(base, "t5tune", "jax")


def enable_compilation_cache(path: str | None) -> None:
  """Turns on JAX's persistent compilation cache at `path` for every program, however quick.

  A restart of the same model and shapes then loads its programs instead of
  compiling them. (JAX caches only compilations over 1 s by default; a small
  model's many short ones add up to most of the start-up.)
  """
  if path is None:
    return
  import jax  # pylint: disable=g-import-not-at-top
  try:
    os.makedirs(path, exist_ok=True)
  except OSError as e:
    raise errors.OutputNotWritableError(
        f"cannot create the compilation cache ({e.strerror})", where=path,
        fix="give --compilation_cache=DIR that can be written, or none") from None
  jax.config.update("jax_compilation_cache_dir", path)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def check_port(host: str, port: int) -> None:
  """A UsageError now, before the model loads, if `port` is out of range or taken on `host`."""
  if not 0 <= port <= 65535:
    raise errors.UsageError(f"--port={port} is not a TCP port", where="--port",
                            fix="give 1-65535 (0 picks a free one)")
  if port == 0:
    return
  try:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
  except socket.gaierror as e:
    raise errors.UsageError(f"--host={host} is not an address of this machine ({e.strerror})",
                            where="--host", fix="give e.g. 127.0.0.1 or 0.0.0.0") from None
  family, kind, proto, _, address = infos[0]
  with socket.socket(family, kind, proto) as probe:
    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
    try:
      probe.bind(address)
    except OSError as e:
      if e.errno == errno.EADDRINUSE:
        raise errors.UsageError(f"port {port} on {host} is already in use", where="--port",
                                fix="stop the other server or give another --port (0 picks a"
                                " free one)") from None
      if e.errno == errno.EACCES:
        raise errors.UsageError(f"port {port} needs privileges to bind", where="--port",
                                fix="give a port above 1023") from None
      if e.errno == errno.EADDRNOTAVAIL:
        raise errors.UsageError(f"--host={host} is not an address of this machine",
                                where="--host", fix="give e.g. 127.0.0.1 or 0.0.0.0") from None
      raise


def make_service(model, vocabulary, buckets: engine_lib.Buckets, options: Options,
                 length_penalty: float = 1.0) -> completions.Service:
  engine = engine_lib.Engine(model, buckets, length_penalty=length_penalty)
  box = {}
  batcher = batcher_lib.Batcher(engine, max_wait_ms=options.max_wait_ms,
                                max_queue=options.max_queue, stream_chunk=options.stream_chunk,
                                on_batch=lambda *a: box["metrics"].on_batch(*a))
  box["metrics"] = metrics_lib.Metrics(max_batch=buckets.max_batch, queue_depth=batcher.depth,
                                       compilations=engine_lib.compilations)
  return completions.Service(engine=engine, batcher=batcher, vocabulary=vocabulary,
                             model_name=options.model_name, metrics=box["metrics"],
                             limits=options.limits, template=options.template,
                             options_style=options.options_style,
                             api_key=options.api_key)


def _warm_up(service: completions.Service, started_at: float | None = None) -> None:
  start = time.monotonic()
  try:
    shapes = service.engine.warm_up(_log.info)
  except Exception as e:  # pylint: disable=broad-except
    _log.exception("compilation failed")
    service.startup_error = f"{type(e).__name__}: {e}"
    return
  service.batcher.start()
  service.ready.set()
  service.metrics.ready.set(1)
  now = time.monotonic()
  since_start = now - (started_at if started_at is not None else start)
  service.metrics.time_to_ready.set(since_start)
  _log.info("ready %.1f s after start: %d shapes compiled in %.1f s (%d XLA compilations);"
            " serving %r", since_start, shapes, now - start, engine_lib.compilations(),
            service.model_name)


class _Server(uvicorn.Server):
  """uvicorn's server, telling the service when a shutdown signal arrives (health turns 503)."""

  def __init__(self, config, service):
    super().__init__(config)
    self.service = service

  def handle_exit(self, sig, frame):
    self.service.draining.set()
    super().handle_exit(sig, frame)


def run(service: completions.Service, options: Options) -> None:
  """Serves until SIGTERM / SIGINT; returns after draining."""
  config = uvicorn.Config(
      app_lib.build(service), host=options.host, port=options.port, log_level="info",
      timeout_graceful_shutdown=max(1, int(round(options.drain_timeout_s))), access_log=False,
      lifespan="off")
  server = _Server(config, service)
  threading.Thread(target=_warm_up, args=(service, options.started_at), name="t5tune-compile", daemon=True).start()
  # uvicorn re-raises the signal it caught once it has shut down, with the
  # handler that was installed before it; a handler that only logs turns a
  # drained SIGTERM into a normal return (exit 0) instead of death by signal.
  previous = {s: signal.signal(s, lambda sig, frame: _log.info("drained after signal %d", sig))
              for s in (signal.SIGTERM, signal.SIGINT)}
  try:
    server.run()
  finally:
    for s, handler in previous.items():
      signal.signal(s, handler)
  service.batcher.stop(timeout=options.drain_timeout_s)
  _log.info("stopped")
