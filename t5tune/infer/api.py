"""The notebook API on raw strings: `t5tune.generate`, `t5tune.score`, `classify`.

    model = t5tune.load_model("flan_t5_small_dir")
    t5tune.generate(model, ["Translate to German: hello"], vocabulary="spiece.model")
    t5tune.generate(model, prompts, method="beam", num_beams=4, max_decode_len=32)
    t5tune.generate(model, prompts, method="sample", top_p=0.9, rng=0)
    t5tune.score(model, ["2 + 2 ="], ["4"]).mean
    classify(model, ["Is the sky blue?"], [["yes", "no"]]).predictions

Strings are tokenized with the model's vocabulary (`vocabulary=`: "byte", a
SentencePiece .model path, a `seqio.Vocabulary` or any object with `encode`,
`decode` and `eos_id`; left out, a model whose
vocabulary size fits the byte vocabulary (ByT5, the `tiny` preset) uses
bytes; strings load without seqio or TensorFlow, `t5tune.data.tokenizers`), an EOS is appended, and batches are padded to a fixed size and to a
power-of-two length so that repeated calls reuse one compilation.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import numpy as np

from t5tune.infer import batching
from t5tune.infer import decoding
from t5tune.infer import scoring
from t5tune.models import t5

_MAX_BYTE_MODEL_VOCAB = 384  # ByT5 pads its embedding to 384


def resolve_vocabulary(model: t5.Transformer, vocabulary: Any = None):
  """The vocabulary for `model` (see the module docstring): one given as an object as it is;
  "byte" or a .model path as `t5tune.data.tokenizers` loads it (seqio's ids, no TensorFlow)."""
  from t5tune.data import tokenizers  # pylint: disable=g-import-not-at-top
  if vocabulary is not None:
    # An object: anything with encode/decode/eos_id (a seqio vocabulary, flan_mini's own).
    loaded = tokenizers.load(vocabulary) if isinstance(vocabulary, str) else vocabulary
    tokenizers.check_fits(loaded, model.config.vocab_size, where=f"vocabulary={vocabulary if isinstance(vocabulary, str) else type(vocabulary).__name__}")
    return loaded
  if tokenizers.Bytes.vocab_size <= model.config.vocab_size <= _MAX_BYTE_MODEL_VOCAB:
    return tokenizers.Bytes()
  raise ValueError(
      f"the model's vocabulary ({model.config.vocab_size} ids) is not the byte vocabulary;"
      " pass vocabulary='path/to/spiece.model' (the SentencePiece model it was trained with)")


def bucket_length(n: int, minimum: int = 16) -> int:
  """The next power of two >= n (at least `minimum`): few distinct shapes, few compilations."""
  return max(minimum, 1 << max(n - 1, 0).bit_length())


def encode_texts(vocabulary, texts: Sequence[str], max_len: int | None = None,
                 *, rows: int | None = None) -> np.ndarray:
  """int32 [rows or len(texts), bucketed length]: tokens + EOS, truncated to max_len, 0-padded."""
  ids = []
  for text in texts:
    tokens = list(vocabulary.encode(text))
    if max_len is not None:
      tokens = tokens[:max_len - 1]
    ids.append(tokens + [vocabulary.eos_id])
  width = bucket_length(max(len(x) for x in ids) if ids else 1)
  if max_len is not None:
    width = min(width, max_len)
  return batching.stack_rows(ids, rows or len(ids), width)


def _batches(n: int, batch_size: int):
  for start in range(0, n, batch_size):
    yield start, min(start + batch_size, n)


def decode_tokens(vocabulary, tokens: np.ndarray) -> str:
  """Text of generated ids, up to (not including) the first EOS."""
  ids = [int(t) for t in tokens]
  if vocabulary.eos_id in ids:
    ids = ids[:ids.index(vocabulary.eos_id)]
  return vocabulary.decode([i for i in ids if i != 0])


def generate(model: t5.Transformer, inputs: str | Sequence[str], *, method: str = "greedy",
             max_decode_len: int = 64, vocabulary: Any = None, batch_size: int = 16,
             max_input_len: int | None = None, rng: Any = 0, return_scores: bool = False,
             **options: Any):
  """Decodes each input string; returns the output strings (and scores if asked).

  `options` are `DecodeOptions` fields: temperature, top_k, top_p, num_beams,
  length_penalty, length_penalty_style, and the penalties of
  `t5tune.infer.penalties` (repetition_penalty, frequency_penalty,
  presence_penalty, min_tokens). With `method="sample"`, input i of
  the call samples with `decoding.row_key(rng, i)`, whatever the batching
  (`rng`: an int seed or a key).

  Args:
    model: a loaded model (`t5tune.load_model`).
    inputs: one prompt or a list of prompts.
    method: a registered decoding method: greedy, sample, beam or one of yours.
    max_decode_len: the most tokens generated per prompt (EOS included).
    vocabulary: a SentencePiece `.model` path, "byte", or a vocabulary object;
      default: the model directory's `spiece.model`, else bytes for a byte-sized
      model.
    batch_size: prompts per decoder call (rows are padded to it).
    max_input_len: prompts are encoded to at most this many tokens.
    rng: the seed (or key) of sampled decoding.
    return_scores: also return each output's score (its log-likelihood).
    **options: `DecodeOptions` fields, as above.

  Returns:
    A string for a single prompt, else a list of strings; with `return_scores`,
    (texts, scores).

  Raises:
    decoding.OptionError: an option out of its range or unknown to the method
      (a ValueError naming the option).
  """
  single = isinstance(inputs, str)
  texts = [inputs] if single else list(inputs)
  vocabulary = resolve_vocabulary(model, vocabulary)
  opts = decoding.DecodeOptions(method=method, max_decode_len=max_decode_len, **options)
  outputs, scores = [], []
  for start, end in _batches(len(texts), batch_size):
    enc = encode_texts(vocabulary, texts[start:end], max_input_len, rows=batch_size)
    out = decoding.decode(model, enc, opts, rng=decoding.row_keys(rng, batch_size, start))
    for row in range(end - start):
      outputs.append(decode_tokens(vocabulary, out.tokens[row]))
      scores.append(float(out.scores[row]))
  if single:
    return (outputs[0], scores[0]) if return_scores else outputs[0]
  return (outputs, scores) if return_scores else outputs


def score(model: t5.Transformer, inputs: Sequence[str], targets: Sequence[str], *,
          vocabulary: Any = None, batch_size: int = 16, max_input_len: int | None = None,
          max_target_len: int | None = None) -> scoring.Scores:
  """Log-likelihood of each target string (EOS included) given its input string.

  Args:
    model: a loaded model (`t5tune.load_model`).
    inputs: the prompts, one per target.
    targets: the strings scored, one per input.
    vocabulary: as for `generate`.
    batch_size: pairs per scoring call.
    max_input_len: prompts are encoded to at most this many tokens.
    max_target_len: targets are encoded to at most this many tokens.

  Returns:
    `scoring.Scores` over the N pairs: `sum` and `mean` float [N] (log-likelihood
    summed and per token), `num_tokens` int [N], `token_logprobs` float [N, T].

  Raises:
    ValueError: `inputs` and `targets` differ in length.
  """
  inputs, targets = list(inputs), list(targets)
  if len(inputs) != len(targets):
    raise ValueError(f"score: {len(inputs)} inputs but {len(targets)} targets; give one target per input")
  vocabulary = resolve_vocabulary(model, vocabulary)
  parts = []
  for start, end in _batches(len(inputs), batch_size):
    enc = encode_texts(vocabulary, inputs[start:end], max_input_len, rows=batch_size)
    tgt = encode_texts(vocabulary, targets[start:end], max_target_len, rows=batch_size)
    s = scoring.score(model, enc, tgt)
    parts.append(batching.head(s, end - start))
  width = max(p.token_logprobs.shape[1] for p in parts)
  return scoring.Scores(
      sum=np.concatenate([p.sum for p in parts]),
      mean=np.concatenate([p.mean for p in parts]),
      num_tokens=np.concatenate([p.num_tokens for p in parts]),
      token_logprobs=np.concatenate([np.pad(p.token_logprobs, ((0, 0), (0, width - p.token_logprobs.shape[1])))
                                     for p in parts]))


@dataclasses.dataclass
class Classification:
  """`classify` results: the chosen option per input, its index, and every option's score."""
  predictions: list[str]
  best: np.ndarray
  scores: list[list[float]]


def option_tokens(vocabulary, options: Sequence[Sequence[str]], max_len: int | None = None,
                  *, rows: int | None = None, width_options: int | None = None) -> np.ndarray:
  """int32 [rows, K, T] of EOS-terminated options, padded with empty (all-0) options."""
  k = width_options or max(len(o) for o in options)
  flat = [o for opts in options for o in opts]
  tokens = encode_texts(vocabulary, flat, max_len)
  out = np.zeros((rows or len(options), k, tokens.shape[1]), np.int32)
  i = 0
  for row, opts in enumerate(options):
    for j in range(len(opts)):
      out[row, j] = tokens[i]
      i += 1
  return out


def classify(model: t5.Transformer, inputs: Sequence[str], options: Sequence[Sequence[str]], *,
             vocabulary: Any = None, batch_size: int = 16, max_input_len: int | None = None,
             length_normalize: bool = False) -> Classification:
  """Rank classification: each input's options scored as targets; the most likely one wins."""
  inputs, options = list(inputs), [list(o) for o in options]
  if len(inputs) != len(options):
    raise ValueError(f"classify: {len(inputs)} inputs but {len(options)} option lists")
  for i, opts in enumerate(options):
    if not opts:
      raise ValueError(f"classify: input {i} has no options")
  vocabulary = resolve_vocabulary(model, vocabulary)
  width = max(len(o) for o in options)
  predictions, best, scores = [], [], []
  for start, end in _batches(len(inputs), batch_size):
    enc = encode_texts(vocabulary, inputs[start:end], max_input_len, rows=batch_size)
    opts = option_tokens(vocabulary, options[start:end], rows=batch_size, width_options=width)
    r = scoring.rank_classify(model, enc, opts, length_normalize=length_normalize)
    for row in range(end - start):
      i = start + row
      best.append(int(r.best[row]))
      predictions.append(options[i][best[-1]])
      scores.append([float(x) for x in r.scores[row, :len(options[i])]])
  return Classification(predictions=predictions, best=np.asarray(best), scores=scores)
