"""`t5tune predict`: decode instructions from a JSONL file into a JSONL file, resumably.

    t5tune predict --checkpoint=runs/x/checkpoints/2000 --input=prompts.jsonl \\
        --output=out.jsonl --vocab=byte --method=beam --num_beams=4
    t5tune predict --checkpoint=flan-t5-small/ --vocab=flan-t5-small/spiece.model \\
        --input=tasks.jsonl --template='{instruction}\\n\\n{input}' --output=out.jsonl

--checkpoint is a t5tune model directory (or training checkpoint step) or a
Hugging Face T5 directory. Rerunning the same command after an interruption
continues where it stopped (see t5tune.infer.predict).
"""
import os

from absl import flags

from t5tune import errors
from t5tune.cli import arguments
from t5tune.infer import decoding

_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "t5tune model/checkpoint dir or Hugging Face T5 dir.", allow_override=True)
_INPUT = flags.DEFINE_string("input", None, "JSONL input: objects with an 'inputs' field, or strings.", allow_override=True)
_OUTPUT = flags.DEFINE_string("output", None, "JSONL output (appended to on a rerun).", allow_override=True)
_TEMPLATE = flags.DEFINE_string("template", None, "Prompt template over the input fields, e.g. '{instruction}\\n\\n{input}'.", allow_override=True)
_VOCAB = flags.DEFINE_string("vocab", None, "'byte' or a SentencePiece .model path (default: byte for byte-sized vocabularies).", allow_override=True)
_METHOD = flags.DEFINE_enum("method", "greedy", decoding.METHODS, "Decoding method.", allow_override=True)
_MAX_DECODE_LEN = flags.DEFINE_integer("max_decode_len", 64, "Maximum number of generated tokens.", allow_override=True)
_MAX_INPUT_LEN = flags.DEFINE_integer("max_input_len", None, "Longest prompt in tokens, EOS included (default 512); a longer line is refused unless --truncate.", allow_override=True)
_TRUNCATE = flags.DEFINE_bool("truncate", False, "Cut prompts longer than --max_input_len instead of refusing the input.", allow_override=True)
_NUM_BEAMS = flags.DEFINE_integer("num_beams", 4, "Beam search width.", allow_override=True)
_LENGTH_PENALTY = flags.DEFINE_float("length_penalty", 1.0, "Beam score = logprob / length ** length_penalty.", allow_override=True)
_TEMPERATURE = flags.DEFINE_float("temperature", 1.0, "Sampling temperature (0 = greedy).", allow_override=True)
_TOP_K = flags.DEFINE_integer("top_k", 0, "Sample among the k most likely tokens (0 = all).", allow_override=True)
_TOP_P = flags.DEFINE_float("top_p", 1.0, "Nucleus sampling mass (1 = off).", allow_override=True)
_REPETITION_PENALTY = flags.DEFINE_float("repetition_penalty", 1.0, "Logits of tokens already emitted: / r if positive, * r if not (transformers'; 1 = off).", allow_override=True)
_FREQUENCY_PENALTY = flags.DEFINE_float("frequency_penalty", 0.0, "Minus f times a token's count so far (OpenAI's; in [-2, 2], 0 = off).", allow_override=True)
_PRESENCE_PENALTY = flags.DEFINE_float("presence_penalty", 0.0, "Minus p for a token emitted before (OpenAI's; in [-2, 2], 0 = off).", allow_override=True)
_MIN_TOKENS = flags.DEFINE_integer("min_tokens", 0, "No EOS before this many tokens (0 = off).", allow_override=True)
_NO_REPEAT_NGRAM = flags.DEFINE_integer("no_repeat_ngram_size", 0, "No n-gram of this size twice (transformers'; 0 = off).", allow_override=True)
_SEED = flags.DEFINE_integer("seed", 0, "Sampling seed (line N uses fold_in(key(seed), N)).", allow_override=True)
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 16, "Lines decoded together.", allow_override=True)
_CHUNK_SIZE = flags.DEFINE_integer("chunk_size", 64, "Lines written (and fsynced) together.", allow_override=True)
_MESH_SHAPE = flags.DEFINE_list("mesh_shape", ["-1", "1", "1"], "(data, fsdp, tensor) mesh shape.", allow_override=True)
_OVERWRITE = flags.DEFINE_bool(
    "overwrite", False, "Start --output over (only a predictions file t5tune wrote is replaced);"
    " without it a rerun continues an output of the same checkpoint and settings.", allow_override=True)


def _check_numbers():
  """The flags that are not decoding options (those are checked against DecodeOptions' ranges)."""
  from t5tune import ranges
  for holder, spec in ((_BATCH_SIZE, "[1, inf)"), (_CHUNK_SIZE, "[1, inf)"),
                       (_MAX_INPUT_LEN, "[2, inf)"), (_SEED, decoding.SEED_RANGE)):
    ranges.check(f"--{holder.name}", holder.value, spec)


def main(argv):
  arguments.no_extra_args(argv, "predict")
  arguments.require([_CHECKPOINT, _INPUT, _OUTPUT], "predict")
  _check_numbers()
  arguments.mesh_shape(_MESH_SHAPE.value)
  from t5tune import sharding
  from t5tune.convert import loading
  from t5tune.infer import predict
  # Everything the user can get wrong is checked before the model is loaded.
  if not os.path.isdir(_CHECKPOINT.value):
    raise errors.InputError("no such model directory", where=f"--checkpoint={_CHECKPOINT.value}",
                            fix="give a t5tune model dir, a checkpoint step or a Hugging Face T5 dir")
  if _VOCAB.value not in (None, "byte") and not os.path.isfile(_VOCAB.value):
    raise errors.InputError("no such SentencePiece model file", where=f"--vocab={_VOCAB.value}",
                            fix="give 'byte' or the .model file the model was trained with")
  if _TEMPLATE.value:
    from t5tune.data import templates
    try:
      templates.placeholders(_TEMPLATE.value)
    except ValueError as e:
      raise errors.UsageError(f"--template={_TEMPLATE.value!r} is not a template: {e}",
                              fix="write fields as {name}, a literal brace as {{ or }}") from None
  predict.read_inputs(_INPUT.value, _TEMPLATE.value)
  options = arguments.decode_options(
      "predict", method=_METHOD.value, max_decode_len=_MAX_DECODE_LEN.value,
      temperature=_TEMPERATURE.value, top_k=_TOP_K.value, top_p=_TOP_P.value,
      num_beams=_NUM_BEAMS.value, length_penalty=_LENGTH_PENALTY.value,
      repetition_penalty=_REPETITION_PENALTY.value, frequency_penalty=_FREQUENCY_PENALTY.value,
      presence_penalty=_PRESENCE_PENALTY.value, min_tokens=_MIN_TOKENS.value,
      no_repeat_ngram_size=_NO_REPEAT_NGRAM.value)
  made_by = predict.model_producer(_CHECKPOINT.value, _VOCAB.value)
  limit = _MAX_INPUT_LEN.value or predict.DEFAULT_MAX_INPUT_LEN
  predict.check_output(_OUTPUT.value, predict.full_producer(
      made_by, template=_TEMPLATE.value, max_input_len=limit if _TRUNCATE.value else None,
      seed=_SEED.value, options=options), _OVERWRITE.value)
  mesh = sharding.make_mesh(arguments.mesh_shape(_MESH_SHAPE.value))
  model = loading.load_model(_CHECKPOINT.value, mesh, dropout_rate=0.0)
  n = predict.predict_file(
      model, _INPUT.value, _OUTPUT.value, vocabulary=_VOCAB.value, template=_TEMPLATE.value,
      options=options, batch_size=_BATCH_SIZE.value, chunk_size=_CHUNK_SIZE.value,
      max_input_len=limit, seed=_SEED.value, producer=made_by, overwrite=_OVERWRITE.value,
      truncate=_TRUNCATE.value)
  print(f"wrote {n} predictions to {_OUTPUT.value}")
