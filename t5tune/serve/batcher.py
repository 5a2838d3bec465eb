"""Dynamic batching: a bounded queue of rows grouped by shape bucket, run one batch at a time.

Request handlers (on the event loop) tokenize and submit `Work` rows; one
device thread takes the bucket whose oldest row has waited longest, and runs
it as soon as it holds `max_batch` rows or its oldest row has waited
`max_wait_ms`. While a batch is on the device, new rows keep arriving and
queue up, so the next batch is assembled by the time the device is free.
Each row carries its own `concurrent.futures.Future`: results are routed back
row by row, a row whose client left is skipped before its batch starts (or
stopped at the next chunk when streaming), and a batch that fails is run
again row by row, so an error fails only the row that causes it.
"""
from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import logging
import threading
import time
from typing import Any, Callable

import numpy as np

from t5tune.serve import engine as engine_lib

_log = logging.getLogger("t5tune.serve")


class QueueFull(Exception):
  """The bounded queue has no room for the request's rows."""


@dataclasses.dataclass(eq=False)
class Work:
  """One row: a decode, beam or score job of one bucket, with its result future."""
  kind: str  # "decode" | "beam" (a search method: beam search or another) | "score"
  input_len: int  # the input bucket
  out_len: int  # the decode or target bucket
  payload: Any  # DecodeRow; prompt ids (beam); (input ids, target ids) (score)
  num_beams: int = 0
  method: str = ""  # the search method of a "beam" row
  stream: Callable[[engine_lib.Progress, int], bool] | None = None  # returns True to stop the row
  future: concurrent.futures.Future = dataclasses.field(default_factory=concurrent.futures.Future)
  cancelled: bool = False
  enqueued: float = dataclasses.field(default_factory=time.monotonic)

  @property
  def bucket(self) -> tuple:
    return (self.kind, self.input_len, self.out_len, self.num_beams, self.method)

  def cancel(self) -> None:
    self.cancelled = True
    self.future.cancel()


class Batcher:
  """Groups queued rows into batches of declared shapes and runs them on the engine."""

  def __init__(self, engine: engine_lib.Engine, *, max_wait_ms: float, max_queue: int,
               stream_chunk: int, on_batch: Callable[[str, int, float], None] = lambda *a: None):
    self.engine = engine
    self.max_batch = engine.buckets.max_batch
    self.max_wait = max_wait_ms / 1000.0
    self.max_queue = max_queue
    self.stream_chunk = stream_chunk
    self.on_batch = on_batch
    self._pending: dict[tuple, collections.deque] = collections.OrderedDict()
    self._size = 0
    self._cond = threading.Condition()
    self._stopping = False
    self._thread = threading.Thread(target=self._loop, name="t5tune-batcher", daemon=True)

  def start(self) -> None:
    self._thread.start()

  def stop(self, timeout: float | None = None) -> None:
    """Runs what is queued, then stops the device thread."""
    with self._cond:
      self._stopping = True
      self._cond.notify_all()
    if self._thread.is_alive():
      self._thread.join(timeout)

  def depth(self) -> int:
    return self._size

  def submit(self, works: list[Work]) -> None:
    """Queues all rows of one request, or none of them (QueueFull)."""
    with self._cond:
      if self._stopping:
        raise QueueFull("the server is shutting down")
      if self._size + len(works) > self.max_queue:
        raise QueueFull(f"the queue is full ({self._size} of max_queue={self.max_queue} rows waiting)")
      for w in works:
        self._pending.setdefault(w.bucket, collections.deque()).append(w)
      self._size += len(works)
      self._cond.notify_all()

  def _take(self) -> list[Work] | None:
    """Blocks until a batch is due; None when stopping with nothing left."""
    with self._cond:
      while True:
        for key in [k for k, q in self._pending.items() if not q]:
          del self._pending[key]
        if not self._pending:
          if self._stopping:
            return None
          self._cond.wait()
          continue
        limit = self.max_batch
        # A full bucket runs at once, even behind an older bucket that is still filling.
        full = [kv for kv in self._pending.items() if len(kv[1]) >= limit]
        key, queue = min(full or self._pending.items(), key=lambda kv: kv[1][0].enqueued)
        wait = queue[0].enqueued + self.max_wait - time.monotonic()
        if len(queue) >= limit or wait <= 0 or self._stopping:
          batch = [queue.popleft() for _ in range(min(limit, len(queue)))]
          self._size -= len(batch)
          return batch
        self._cond.wait(wait)

  def _loop(self) -> None:
    while True:
      batch = self._take()
      if batch is None:
        return
      # A row whose client has gone is dropped here, before it costs device time.
      batch = [w for w in batch if not w.cancelled and w.future.set_running_or_notify_cancel()]
      if not batch:
        continue
      start = time.monotonic()
      self._run_or_split(batch)
      self.on_batch(batch[0].kind, len(batch), time.monotonic() - start)

  def _run_or_split(self, batch: list[Work]) -> None:
    """Runs the batch; if it fails, runs its unanswered rows one at a time, so that a row that
    cannot run fails alone and the rows batched with it are answered."""
    try:
      self._run(batch)
      return
    except Exception as e:  # pylint: disable=broad-except
      # One failing row fails itself, never the server, its batch or other batches.
      _log.error("batch of %d %s rows failed (%s: %s)%s", len(batch), batch[0].kind,
                 type(e).__name__, e, "; running its rows alone" if len(batch) > 1 else "")
      error = e
    left = [w for w in batch if not w.future.done()]
    if len(batch) == 1 or not left:
      for w in left:
        w.future.set_exception(error)
      return
    for w in left:
      self._run_or_split([w])

  def _run(self, batch: list[Work]) -> None:
    first = batch[0]
    size = engine_lib.Buckets.fit(self.engine.buckets.batch_sizes, len(batch))
    if first.kind == "score":
      out = self.engine.score([w.payload[0] for w in batch], [w.payload[1] for w in batch],
                              size, first.input_len, first.out_len)
      for i, w in enumerate(batch):
        w.future.set_result((float(out.sum[i]), float(out.mean[i]), int(out.num_tokens[i])))
    elif first.kind == "beam":
      out = self.engine.search(first.method, [w.payload for w in batch], size, first.input_len,
                               first.out_len, first.num_beams)
      # A search without beams of its own returns its one sequence as the only beam.
      beams = out.tokens[:, None] if out.beams is None else out.beams
      beam_scores = out.scores[:, None] if out.beam_scores is None else out.beam_scores
      for i, w in enumerate(batch):
        w.future.set_result((beams[i], beam_scores[i]))
    else:
      streaming = [w.stream is not None for w in batch]

      def on_chunk(progress: engine_lib.Progress) -> np.ndarray:
        stop = np.zeros(len(batch), bool)
        for i, w in enumerate(batch):
          if w.cancelled:
            stop[i] = True
          elif w.stream is not None:
            stop[i] = bool(w.stream(progress, i))
        return stop

      progress = self.engine.decode(
          [w.payload for w in batch], size, first.input_len, first.out_len,
          chunk=self.stream_chunk if any(streaming) else None, on_chunk=on_chunk)
      for i, w in enumerate(batch):
        w.future.set_result((progress, i))
