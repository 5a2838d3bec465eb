"""Starting and stopping the server: load, listen, compile in the background, drain on SIGTERM.

The socket opens at once so that /health can say "compiling" while the
buckets compile on a background thread; completions answer 503 until then.
On SIGTERM (or Ctrl-C) uvicorn stops accepting connections and waits up to
`drain_timeout_s` for in-flight requests; the batcher then runs what is still
queued and stops, and the process exits 0.
"""
from __future__ import annotations

import dataclasses
import logging
import signal
import threading
import time
from typing import Any

import uvicorn

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


def _warm_up(service: completions.Service) -> None:
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
  _log.info("ready: %d shapes compiled in %.1f s (%d XLA compilations); serving %r",
            shapes, time.monotonic() - start, engine_lib.compilations(), service.model_name)


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
  threading.Thread(target=_warm_up, args=(service,), name="t5tune-compile", daemon=True).start()
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
