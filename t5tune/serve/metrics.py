"""The server's Prometheus metrics (prometheus_client), in a registry of their own."""
from __future__ import annotations

from typing import Callable

import prometheus_client as prom

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class Metrics:
  """Counters, gauges and histograms of one server; `render()` is the /metrics body."""

  def __init__(self, *, max_batch: int, queue_depth: Callable[[], float],
               compilations: Callable[[], float]):
    self.registry = prom.CollectorRegistry()
    r = self.registry
    self.requests = prom.Counter("t5tune_requests", "HTTP requests by endpoint.",
                                 ["endpoint"], registry=r)
    self.errors = prom.Counter("t5tune_errors", "Error responses by HTTP status code.",
                               ["code"], registry=r)
    self.latency = prom.Histogram("t5tune_request_latency_seconds",
                                  "Time from request to last byte, by endpoint.", ["endpoint"],
                                  buckets=_LATENCY_BUCKETS, registry=r)
    sizes = sorted({2 ** i for i in range(max_batch.bit_length() + 1)} | {max_batch})
    self.batch_size = prom.Histogram("t5tune_batch_size", "Rows per device batch, by kind.",
                                     ["kind"], buckets=sizes, registry=r)
    self.batch_seconds = prom.Histogram("t5tune_batch_seconds", "Device time per batch, by kind.",
                                        ["kind"], buckets=_LATENCY_BUCKETS, registry=r)
    self.tokens_generated = prom.Counter("t5tune_tokens_generated",
                                         "Completion tokens generated (EOS included).", registry=r)
    self.prompt_tokens = prom.Counter("t5tune_prompt_tokens", "Prompt tokens received.",
                                      registry=r)
    self.queue_depth = prom.Gauge("t5tune_queue_depth", "Rows waiting for the device.",
                                  registry=r)
    self.queue_depth.set_function(queue_depth)
    self.compilations = prom.Gauge("t5tune_xla_compilations",
                                   "XLA compilations in this process (all at start-up).",
                                   registry=r)
    self.compilations.set_function(compilations)
    self.ready = prom.Gauge("t5tune_ready", "1 once every bucket is compiled.", registry=r)
    self.time_to_ready = prom.Gauge(
        "t5tune_time_to_ready_seconds", "Seconds from the command's start to ready (0 until"
        " then); a restart with a warm compilation cache is faster.", registry=r)

  def on_batch(self, kind: str, size: int, seconds: float) -> None:
    self.batch_size.labels(kind).observe(size)
    self.batch_seconds.labels(kind).observe(seconds)

  def render(self) -> bytes:
    return prom.generate_latest(self.registry)

  content_type = prom.CONTENT_TYPE_LATEST
