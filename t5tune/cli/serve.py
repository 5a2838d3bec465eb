"""`t5tune serve`: an HTTP inference server for a t5tune or Hugging Face T5 model.

    t5tune serve --checkpoint=runs/x/model --vocab=byte
    t5tune serve --checkpoint=flan-t5-small/ --vocab=flan-t5-small/spiece.model \\
        --template='{question}\\n{options_}' --port=8000 --api_key=$KEY

Endpoints: POST /v1/completions (OpenAI-compatible), POST /v1/score, GET
/v1/models, GET /health, GET /metrics. See docs/serving.md.
"""
import logging
import os
import time

from absl import flags

from t5tune import errors
from t5tune.cli import arguments
from t5tune.cli import common

API_KEY_ENV = "T5TUNE_API_KEY"
_STARTED_AT = time.monotonic()  # this module is imported first: time-to-ready counts from here

_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "t5tune model dir or Hugging Face T5 dir (LoRA is folded in).", allow_override=True)
_VOCAB = flags.DEFINE_string("vocab", None, "'byte' or a SentencePiece .model path (default: byte for byte-sized vocabularies).", allow_override=True)
_TEMPLATE = flags.DEFINE_string("template", None, "Prompt template over request fields: a string, e.g. '{question}\\n{options_}', or TASK:TEMPLATE of a registered task (see --module); clients then send an object of fields as the prompt.", allow_override=True)
_MODULES = flags.DEFINE_multi_string("module", [], "Python module(s) whose import registers the task named by --template=TASK:TEMPLATE.", allow_override=True)
_HOST = flags.DEFINE_string("host", "127.0.0.1", "Address to bind (loopback by default; 0.0.0.0 exposes the server).", allow_override=True)
_PORT = flags.DEFINE_integer("port", 8000, "TCP port (0 picks a free one; the log says which).", allow_override=True)
_API_KEY = flags.DEFINE_string("api_key", None, f"Key every endpoint but /health requires as 'Authorization: Bearer KEY' (default: ${API_KEY_ENV}).", allow_override=True)
_MODEL_NAME = flags.DEFINE_string("model_name", None, "Model id in responses and /v1/models (default: the model dir's name; for a checkpoint step, the run's).", allow_override=True)
_COMPILATION_CACHE = flags.DEFINE_string("compilation_cache", None, "Directory of JAX's persistent compilation cache, so that a restart loads its compiled shapes (default: $T5TUNE_CACHE_DIR/jax, else ~/.cache/t5tune/jax; 'none' turns it off).", allow_override=True)
# The defaults are engine.Buckets' (8 shapes: ready in well under a minute for a small model
# on a CPU); not imported from there, so that `--help` and the port check stay fast.
_BATCH_SIZES = flags.DEFINE_list("batch_sizes", ["1", "8"], "Compiled batch sizes; the largest is the most rows per batch.", allow_override=True)
_INPUT_LENGTHS = flags.DEFINE_list("input_lengths", ["128", "512"], "Compiled prompt lengths in tokens; the largest is the prompt limit.", allow_override=True)
_DECODE_LENGTHS = flags.DEFINE_list("decode_lengths", ["32", "128"], "Compiled decode (and score target) lengths; the largest is the max_tokens limit.", allow_override=True)
_BEAM_WIDTHS = flags.DEFINE_list("beam_widths", [], "Compiled beam search widths (num_beams); none by default.", allow_override=True)
_LENGTH_PENALTY = flags.DEFINE_float("length_penalty", 1.0, "Beam score = logprob / length ** length_penalty (compiled in).", allow_override=True)
_MAX_WAIT_MS = flags.DEFINE_float("max_wait_ms", 5.0, "Longest a row waits for its batch to fill.", allow_override=True)
_MAX_QUEUE = flags.DEFINE_integer("max_queue", 256, "Rows that may wait; beyond it requests get 503 with Retry-After.", allow_override=True)
_MAX_N = flags.DEFINE_integer("max_n", 8, "Largest n (choices per prompt).", allow_override=True)
_MAX_BODY_BYTES = flags.DEFINE_integer("max_body_bytes", 1 << 20, "Largest request body (413 beyond).", allow_override=True)
_REQUEST_TIMEOUT_S = flags.DEFINE_float("request_timeout_s", 60.0, "A request still unanswered after this gets 504.", allow_override=True)
_DRAIN_TIMEOUT_S = flags.DEFINE_float("drain_timeout_s", 30.0, "On SIGTERM, how long in-flight requests may finish.", allow_override=True)
_STREAM_CHUNK = flags.DEFINE_integer("stream_chunk", 4, "Decode steps between streamed chunks.", allow_override=True)
_MESH_SHAPE = flags.DEFINE_list("mesh_shape", ["-1", "1", "1"], "(data, fsdp, tensor) mesh shape over the local devices.", allow_override=True)


# Allowed ranges of the numeric flags, checked before anything is loaded (t5tune.ranges).
_RANGES = [(_MAX_WAIT_MS, "[0, inf)"), (_MAX_QUEUE, "[1, inf)"), (_MAX_N, "[1, inf)"),
           (_MAX_BODY_BYTES, "[1, inf)"), (_REQUEST_TIMEOUT_S, "(0, inf)"),
           (_DRAIN_TIMEOUT_S, "[0, inf)"), (_STREAM_CHUNK, "[1, inf)"),
           (_LENGTH_PENALTY, "[0, inf)")]


def _check_numbers() -> None:
  from t5tune import ranges
  for flag, spec in _RANGES:
    ranges.check(f"--{flag.name}", flag.value, spec)
  arguments.mesh_shape(_MESH_SHAPE.value)


def _ints(flag) -> tuple:
  try:
    return tuple(int(v) for v in flag.value)
  except ValueError:
    raise errors.UsageError(f"--{flag.name}={','.join(flag.value)} must be a comma-separated"
                            " list of integers") from None


def _template():
  """(template, options style) from --template: a string, or TASK:TEMPLATE of a registered task."""
  if not _TEMPLATE.value:
    return None, None
  if "{" not in _TEMPLATE.value:  # no placeholder: it names a registered template
    from t5tune.data import tasks
    return tasks.registered_template(_TEMPLATE.value)
  from t5tune.data import templates
  try:
    templates.placeholders(_TEMPLATE.value)
  except ValueError as e:
    raise errors.UsageError(f"--template: {e}") from None
  return _TEMPLATE.value, None


def main(argv):
  arguments.no_extra_args(argv, "serve")
  arguments.require([_CHECKPOINT], "serve")
  if not os.path.isdir(_CHECKPOINT.value):
    raise errors.InputError(f"{_CHECKPOINT.value}: no such model directory", where="--checkpoint")
  shapes = {f.name: _ints(f) for f in (_BATCH_SIZES, _INPUT_LENGTHS, _DECODE_LENGTHS, _BEAM_WIDTHS)}
  _check_numbers()
  from t5tune.serve import engine
  from t5tune.serve import server
  from t5tune.serve import completions
  server.check_port(_HOST.value, _PORT.value)  # before minutes of loading and compiling
  buckets = engine.Buckets(**shapes)
  # Every --module is imported, also without --template=TASK:...: it may register decoding
  # methods; a module that is not there is an error, not a server without it.
  common.import_modules(_MODULES.value)
  template, options_style = _template()
  server.enable_compilation_cache(server.compilation_cache_dir(_COMPILATION_CACHE.value))
  options = server.Options(
      host=_HOST.value, port=_PORT.value, started_at=_STARTED_AT,
      api_key=_API_KEY.value or os.environ.get(API_KEY_ENV) or None,
      model_name=_MODEL_NAME.value or server.default_model_name(_CHECKPOINT.value),
      template=template, options_style=options_style, max_wait_ms=_MAX_WAIT_MS.value, max_queue=_MAX_QUEUE.value,
      stream_chunk=_STREAM_CHUNK.value, drain_timeout_s=_DRAIN_TIMEOUT_S.value,
      limits=completions.Limits(max_n=_MAX_N.value, max_body_bytes=_MAX_BODY_BYTES.value,
                                request_timeout_s=_REQUEST_TIMEOUT_S.value))
  # The server's own progress (compiling, ready, draining) at INFO on stderr, beside
  # uvicorn's lines; libraries stay quiet (absl's handler would hide INFO).
  log = logging.getLogger("t5tune.serve")
  handler = logging.StreamHandler()
  handler.setFormatter(logging.Formatter("%(levelname)s:     t5tune: %(message)s"))
  log.addHandler(handler)
  log.setLevel(logging.INFO)
  log.propagate = False
  from t5tune import sharding
  from t5tune.convert import loading
  from t5tune.infer import api
  mesh = sharding.make_mesh(arguments.mesh_shape(_MESH_SHAPE.value))
  model = loading.load_model(_CHECKPOINT.value, mesh, dropout_rate=0.0)
  vocabulary = api.resolve_vocabulary(model, _VOCAB.value)
  service = server.make_service(model, vocabulary, buckets, options,
                                length_penalty=_LENGTH_PENALTY.value)
  server.run(service, options)
