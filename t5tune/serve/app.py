"""The ASGI application: endpoints, API-key and body-size checks, SSE streaming, metrics.

Starlette (not FastAPI) because every request is validated by hand-picked
pydantic models that must answer 400 with the field named (FastAPI answers
422 in its own shape), the body size is checked before parsing, and the API
key guards every route but /health; FastAPI's remaining value (OpenAPI
pages) would be one more unauthenticated surface. uvicorn runs it.
"""
from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
import uuid

from starlette import applications
from starlette import requests
from starlette import responses
from starlette import routing

from t5tune.serve import batcher as batcher_lib
from t5tune.serve import completions
from t5tune.serve import protocol

_log = logging.getLogger("t5tune.serve")
_PUBLIC = ("/health",)


class _BodyTooLarge(Exception):
  pass


def _json(status: int, body: dict, headers: dict | None = None) -> responses.JSONResponse:
  return responses.JSONResponse(body, status_code=status, headers=headers)


def _error(e: protocol.ApiError) -> responses.JSONResponse:
  return _json(e.status, e.body(), e.headers)


class Guard:
  """Pure ASGI middleware: API key, body-size limit, error counts, latency.

  Pure ASGI (not BaseHTTPMiddleware) so that streamed responses pass through
  untouched and the body limit applies while the body is being received.
  """

  def __init__(self, app, service: completions.Service):
    self.app, self.service = app, service

  async def __call__(self, scope, receive, send):
    if scope["type"] != "http":
      return await self.app(scope, receive, send)
    service, path = self.service, scope["path"]
    start = time.monotonic()
    status = [500]

    async def counted_send(message):
      if message["type"] == "http.response.start":
        status[0] = message["status"]
        if status[0] >= 400:
          service.metrics.errors.labels(str(status[0])).inc()
      await send(message)

    try:
      if path not in _PUBLIC and service.api_key:
        headers = dict(scope["headers"])
        given = headers.get(b"authorization", b"").decode("latin-1")
        if not hmac.compare_digest(given.encode(), f"Bearer {service.api_key}".encode()):
          return await _error(protocol.ApiError(
              401, "missing or wrong API key: send the header 'Authorization: Bearer KEY'",
              kind="authentication_error"))(scope, receive, counted_send)
      limit = service.limits.max_body_bytes
      length = dict(scope["headers"]).get(b"content-length")
      if length is not None and length.isdigit() and int(length) > limit:
        return await self._too_large(scope, receive, counted_send)
      received = [0]

      async def limited_receive():
        message = await receive()
        if message["type"] == "http.request":
          received[0] += len(message.get("body", b""))
          if received[0] > limit:
            raise _BodyTooLarge()
        return message

      try:
        await self.app(scope, limited_receive, counted_send)
      except _BodyTooLarge:
        await self._too_large(scope, receive, counted_send)
    finally:
      endpoint = path if path in _ROUTES else "other"
      service.metrics.latency.labels(endpoint).observe(time.monotonic() - start)

  async def _too_large(self, scope, receive, send):
    limit = self.service.limits.max_body_bytes
    await _error(protocol.ApiError(413, f"the request body is over the limit max_body_bytes={limit}"))(
        scope, receive, send)


async def _body(request: requests.Request) -> bytes:
  return await request.body()


async def _until_disconnected(request: requests.Request) -> None:
  while True:
    message = await request.receive()
    if message["type"] == "http.disconnect":
      return


async def _results(request, service, works: list[batcher_lib.Work]) -> list:
  """Every row's result; cancels the rows if the client leaves or the request times out."""
  gathered = asyncio.ensure_future(asyncio.gather(*[asyncio.wrap_future(w.future) for w in works]))
  left = asyncio.ensure_future(_until_disconnected(request))
  try:
    done, _ = await asyncio.wait({gathered, left}, timeout=service.limits.request_timeout_s,
                                 return_when=asyncio.FIRST_COMPLETED)
  finally:
    left.cancel()
  if gathered in done:
    return gathered.result()
  for w in works:
    w.cancel()
  gathered.cancel()
  if left in done:
    raise protocol.ApiError(499, "the client closed the connection")
  raise protocol.ApiError(504, f"the request took longer than request_timeout_s="
                          f"{service.limits.request_timeout_s:g}", kind="timeout")


def _submit(service, works) -> None:
  try:
    service.batcher.submit(works)
  except batcher_lib.QueueFull as e:
    raise protocol.ApiError(503, f"server busy: {e}; retry later", kind="server_busy",
                            headers={"Retry-After": "1"}) from None


def _check_ready(service) -> None:
  """503 while compiling or draining; called once a request is judged valid, so that a client
  starting with the server hears of its own mistake (400) at once, not after a retry."""
  if service.draining.is_set():
    raise protocol.ApiError(503, "the server is shutting down", kind="server_busy",
                            headers={"Retry-After": "5"})
  if not service.ready.is_set():
    raise protocol.ApiError(503, "the model is still compiling; see GET /health",
                            kind="server_busy", headers={"Retry-After": "5"})


def build(service: completions.Service) -> applications.Starlette:
  """The application serving `service`."""

  def endpoint(name):
    def wrap(fn):
      async def handler(request):
        service.metrics.requests.labels(name).inc()
        try:
          return await fn(request)
        except protocol.ApiError as e:
          return _error(e)
        except Exception as e:  # pylint: disable=broad-except
          # A row that failed on the device (its batch retried it alone, so it is this
          # request's own): a JSON error as OpenAI's clients parse it, never a plain-text 500.
          _log.error("%s failed: %s: %s", name, type(e).__name__, e)
          return _error(protocol.ApiError(500, f"{type(e).__name__}: {e}", kind="server_error"))
      return handler
    return wrap

  @endpoint("/health")
  async def health(request):
    del request
    if service.startup_error:
      return _json(500, {"status": "failed", "error": service.startup_error})
    if service.draining.is_set():
      return _json(503, {"status": "draining"})
    if not service.ready.is_set():
      return _json(503, {"status": "compiling"}, {"Retry-After": "5"})
    return _json(200, {"status": "ready", "model": service.model_name})

  @endpoint("/v1/models")
  async def models(request):
    del request
    return _json(200, {"object": "list", "data": [
        {"id": service.model_name, "object": "model", "created": 0, "owned_by": "t5tune"}]})

  @endpoint("/metrics")
  async def metrics(request):
    del request
    return responses.Response(service.metrics.render(), media_type=service.metrics.content_type)

  @endpoint("/v1/score")
  async def score(request):
    req = protocol.parse(protocol.ScoreRequest, await _body(request))
    service.check_model(req.model)
    texts = service.render(req.prompt)
    cands = req.candidates
    if not cands:
      raise protocol.ApiError(400, "candidates is empty", param="candidates")
    per_prompt = cands if isinstance(cands[0], list) else [cands] * len(texts)
    if len(per_prompt) != len(texts):
      raise protocol.ApiError(400, f"candidates has {len(per_prompt)} lists for {len(texts)}"
                              " prompts; give one list per prompt, or one shared list",
                              param="candidates")
    b = service.buckets
    inputs = service.encode(texts, limit=b.max_input_len, limit_name="max_input_len",
                            param="prompt", truncate=req.truncate)
    works = []
    for i, (ids, opts) in enumerate(zip(inputs, per_prompt)):
      if not opts:
        raise protocol.ApiError(400, f"candidates[{i}] is empty", param="candidates")
      targets = service.encode(opts, limit=b.max_decode_len, limit_name="max_target_len",
                               param="candidates", truncate=req.truncate)
      for tgt in targets:
        works.append(batcher_lib.Work(
            "score", completions.engine_lib.Buckets.fit(b.input_lengths, len(ids)),
            completions.engine_lib.Buckets.fit(b.decode_lengths, len(tgt)), (ids, tgt)))
    if len(works) > service.batcher.max_queue:
      raise protocol.ApiError(400, f"{len(works)} (prompt, candidate) pairs; the limit is"
                              f" max_queue={service.batcher.max_queue}", param="candidates")
    _check_ready(service)
    _submit(service, works)
    results = iter(await _results(request, service, works))
    data = []
    for i, opts in enumerate(per_prompt):
      rows = [next(results) for _ in opts]
      sums, means = [r[0] for r in rows], [r[1] for r in rows]
      data.append({
          "index": i,
          "candidates": [{"text": t, "logprob_sum": s, "logprob_mean": m, "num_tokens": k}
                         for t, (s, m, k) in zip(opts, rows)],
          "best": max(range(len(opts)), key=sums.__getitem__),
          "best_by_mean": max(range(len(opts)), key=means.__getitem__)})
    service.metrics.prompt_tokens.inc(sum(len(x) for x in inputs))
    return _json(200, {"id": f"score-{uuid.uuid4().hex}", "object": "score",
                       "created": int(time.time()), "model": service.model_name, "data": data})

  @endpoint("/v1/completions")
  async def complete(request):
    req = protocol.parse(protocol.CompletionRequest, await _body(request))
    service.check_model(req.model)
    req.check_ranges()
    req.check_unsupported()
    stops = req.stops()
    texts = service.render(req.prompt)
    prompt_ids = service.encode(texts, limit=service.buckets.max_input_len,
                                limit_name="max_input_len", param="prompt", truncate=req.truncate)
    works = service.completion_works(req, prompt_ids)
    _check_ready(service)
    prompt_tokens = sum(len(x) for x in prompt_ids)
    service.metrics.prompt_tokens.inc(prompt_tokens)
    head = {"id": f"cmpl-{uuid.uuid4().hex}", "object": "text_completion",
            "created": int(time.time()), "model": service.model_name}
    if req.stream:
      return _stream(service, req, works, stops, head, prompt_tokens)
    _submit(service, works)
    results = await _results(request, service, works)
    choices, generated = [], 0
    if works and works[0].kind == "beam":
      for i, (beams, _) in enumerate(results):
        for j in range(req.n):
          text, reason, k = service.text_of(beams[j], stops, req.max_tokens)
          generated += k
          choices.append({"index": i * req.n + j, "text": text, "logprobs": None,
                          "finish_reason": reason})
    else:
      for index, (progress, row) in enumerate(results):
        text, reason, k = service.text_of(progress.tokens[row], stops, req.max_tokens)
        generated += k
        lp = service.logprobs_of(progress, row, req.logprobs) if req.logprobs is not None else None
        choices.append({"index": index, "text": text, "logprobs": lp, "finish_reason": reason})
    service.metrics.tokens_generated.inc(generated)
    return _json(200, dict(head, choices=choices, usage={
        "prompt_tokens": prompt_tokens, "completion_tokens": generated,
        "total_tokens": prompt_tokens + generated}))

  routes = [routing.Route("/health", health), routing.Route("/v1/models", models),
            routing.Route("/metrics", metrics),
            routing.Route("/v1/completions", complete, methods=["POST"]),
            routing.Route("/v1/score", score, methods=["POST"])]
  app = applications.Starlette(routes=routes)
  return Guard(app, service)


_ROUTES = ("/health", "/v1/models", "/metrics", "/v1/completions", "/v1/score")


def _sse(obj) -> bytes:
  return b"data: " + json.dumps(obj).encode() + b"\n\n"


def _stream(service, req, works, stops, head, prompt_tokens):
  """An SSE response: one chunk per choice per decoded chunk of steps, then [DONE]."""
  loop = asyncio.get_running_loop()
  events: asyncio.Queue = asyncio.Queue()
  texts = [completions.StreamText(service, stops) for _ in works]

  for index, work in enumerate(works):
    def on_progress(progress, row, index=index):
      loop.call_soon_threadsafe(events.put_nowait, ("tokens", index, progress.tokens[row]))
      return texts[index].stopped  # a met stop sequence ends the row on the device too
    work.stream = on_progress
    work.future.add_done_callback(
        lambda f, index=index: loop.call_soon_threadsafe(events.put_nowait, ("end", index, f)))
  _submit(service, works)

  async def body():
    open_rows, generated = len(works), 0
    deadline = time.monotonic() + service.limits.request_timeout_s
    try:
      while open_rows:
        try:
          kind, index, value = await asyncio.wait_for(events.get(), deadline - time.monotonic())
        except asyncio.TimeoutError:
          yield _sse({"error": {"message": "the request took longer than request_timeout_s="
                                f"{service.limits.request_timeout_s:g}", "type": "timeout"}})
          return
        if kind == "tokens":
          delta = texts[index].update(value)
          if delta:
            yield _sse(dict(head, choices=[{"index": index, "text": delta, "logprobs": None,
                                            "finish_reason": None}]))
          continue
        open_rows -= 1
        if value.cancelled() or value.exception() is not None:
          message = "cancelled" if value.cancelled() else str(value.exception())
          yield _sse({"error": {"message": message, "type": "server_error"}})
          return
        progress, row = value.result()
        text, reason, k = service.text_of(progress.tokens[row], stops, req.max_tokens)
        generated += k
        yield _sse(dict(head, choices=[{"index": index, "text": texts[index].finish(text),
                                        "logprobs": None, "finish_reason": reason}]))
      service.metrics.tokens_generated.inc(generated)
      if req.stream_options is not None and req.stream_options.include_usage:
        yield _sse(dict(head, choices=[], usage={
            "prompt_tokens": prompt_tokens, "completion_tokens": generated,
            "total_tokens": prompt_tokens + generated}))
      yield b"data: [DONE]\n\n"
    finally:
      # Normal end, or the client left (the generator is closed): stop the rows either way.
      for w in works:
        w.cancel()

  return responses.StreamingResponse(body(), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache"})
