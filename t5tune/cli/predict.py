"""`t5tune predict`: decode instructions from a JSONL file into a JSONL file, resumably.

    t5tune predict --checkpoint=runs/x/checkpoints/2000 --input=prompts.jsonl \\
        --output=out.jsonl --vocab=byte --method=beam --num_beams=4
    t5tune predict --checkpoint=flan-t5-small/ --vocab=flan-t5-small/spiece.model \\
        --input=tasks.jsonl --template='{instruction}\\n\\n{input}' --output=out.jsonl

--checkpoint is a t5tune model directory (or training checkpoint step) or a
Hugging Face T5 directory. Rerunning the same command after an interruption
continues where it stopped (see t5tune.infer.predict).
"""
from absl import flags

from t5tune.cli import common
from t5tune.infer import decoding

_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "t5tune model/checkpoint dir or Hugging Face T5 dir.")
_INPUT = flags.DEFINE_string("input", None, "JSONL input: objects with an 'inputs' field, or strings.")
_OUTPUT = flags.DEFINE_string("output", None, "JSONL output (appended to on a rerun).")
_TEMPLATE = flags.DEFINE_string("template", None, "Prompt template over the input fields, e.g. '{instruction}\\n\\n{input}'.")
_VOCAB = flags.DEFINE_string("vocab", None, "'byte' or a SentencePiece .model path (default: byte for byte-sized vocabularies).")
_METHOD = flags.DEFINE_enum("method", "greedy", decoding.METHODS, "Decoding method.")
_MAX_DECODE_LEN = flags.DEFINE_integer("max_decode_len", 64, "Maximum number of generated tokens.")
_MAX_INPUT_LEN = flags.DEFINE_integer("max_input_len", None, "Truncate prompts to this many tokens.")
_NUM_BEAMS = flags.DEFINE_integer("num_beams", 4, "Beam search width.")
_LENGTH_PENALTY = flags.DEFINE_float("length_penalty", 1.0, "Beam score = logprob / length ** length_penalty.")
_TEMPERATURE = flags.DEFINE_float("temperature", 1.0, "Sampling temperature (0 = greedy).")
_TOP_K = flags.DEFINE_integer("top_k", 0, "Sample among the k most likely tokens (0 = all).")
_TOP_P = flags.DEFINE_float("top_p", 1.0, "Nucleus sampling mass (1 = off).")
_SEED = flags.DEFINE_integer("seed", 0, "Sampling seed (line N uses fold_in(key(seed), N)).")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 16, "Lines decoded together.")
_CHUNK_SIZE = flags.DEFINE_integer("chunk_size", 64, "Lines written (and fsynced) together.")
_MESH_SHAPE = flags.DEFINE_list("mesh_shape", ["-1", "1", "1"], "(data, fsdp, tensor) mesh shape.")


def main(argv):
  common.no_extra_args(argv, "predict")
  common.require([_CHECKPOINT, _INPUT, _OUTPUT], "predict")
  from t5tune import sharding
  from t5tune.convert import loading
  from t5tune.infer import predict
  predict.read_inputs(_INPUT.value, _TEMPLATE.value)  # fail fast, before loading
  mesh = sharding.make_mesh([int(s) for s in _MESH_SHAPE.value])
  model = loading.load_model(_CHECKPOINT.value, mesh, dropout_rate=0.0)
  options = decoding.DecodeOptions(
      method=_METHOD.value, max_decode_len=_MAX_DECODE_LEN.value, temperature=_TEMPERATURE.value,
      top_k=_TOP_K.value, top_p=_TOP_P.value, num_beams=_NUM_BEAMS.value,
      length_penalty=_LENGTH_PENALTY.value)
  n = predict.predict_file(
      model, _INPUT.value, _OUTPUT.value, vocabulary=_VOCAB.value, template=_TEMPLATE.value,
      options=options, batch_size=_BATCH_SIZE.value, chunk_size=_CHUNK_SIZE.value,
      max_input_len=_MAX_INPUT_LEN.value, seed=_SEED.value)
  print(f"wrote {n} predictions to {_OUTPUT.value}")
