"""A t5tune model backend for lm-evaluation-harness (`lm_eval`), registered as `t5tune`.

    from t5tune.infer import harness
    harness.register()
    lm_eval.simple_evaluate(model="t5tune", model_args="checkpoint=DIR,vocab=spiece.model",
                            tasks=["mmlu"], num_fewshot=5)

or from the command line, `t5tune harness --model t5tune --model_args pretrained=DIR ...`
(the harness's own arguments; see t5tune/cli/harness.py). `pretrained=` and
`checkpoint=` are one argument: the harness names its output folder after
`pretrained=`, and a random name otherwise.

The requests follow the conventions of the harness's Hugging Face seq2seq
backend (`lm_eval.models.huggingface.HFLM` with an encoder-decoder model), so
the two give the same numbers on the same weights:

* loglikelihood(context, continuation): trailing spaces of the context move
  to the continuation; the context is tokenized with EOS appended (what a T5
  tokenizer's `encode` does) and goes to the encoder; the continuation is
  tokenized without EOS and scored in the decoder after the start token. An
  empty context becomes the single token EOS. `is_greedy` says whether greedy
  decoding emits exactly the continuation's tokens.
* loglikelihood_rolling(text): the text's tokens in disjoint windows of
  `max_length`, each scored in the decoder with the EOS token (then the
  window's preceding tokens) as encoder input, as the harness's rolling
  windows with context length 1 give.
* generate_until(context, {until, max_gen_toks, ...}): greedy decoding (the
  harness's default) of at most `max_gen_toks` tokens, the text cut at the
  first stop string. Special tokens are dropped from the text as the HF
  backend's `tok_decode` drops them (`skip_special_tokens=True`): pad, UNK and
  T5's sentinels (`<extra_id_N>`, the ids past the SentencePiece pieces) are
  left out instead of decoded as " ⁇ " (`decode_generated`). As in the HF backend, `do_sample: true` samples
  (`temperature`, default 1, `top_k`, `top_p`), `num_beams` > 1 searches
  (beam search), `max_new_tokens` overrides `max_gen_toks`, and transformers'
  `repetition_penalty`, `no_repeat_ngram_size` and `min_new_tokens` apply
  (`t5tune.infer.penalties`); request n samples with
  `decoding.row_key(seed, n)` (`seed` a model_arg, default 0), so a sampled
  run repeats itself whatever the batching. Any other generation argument is
  refused, naming it.

Speed: requests with the same context (a question's options) share one
encoder pass, and rows are batched in power-of-two buckets (context length,
number of targets, target length) with a fixed batch size, so a benchmark
compiles a handful of programs, never one per request. `compiled_shapes`
records them.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from lm_eval.api import model as lm_model

from t5tune import errors
from t5tune import ranges
from t5tune.data import tokenizers
from t5tune.infer import api
from t5tune.infer import decoding
from t5tune.infer import scoring

MODEL_NAME = "t5tune"


_MAX_SHARED = 8  # targets scored against one encoder pass (a question's options)
# generation_kwargs the backend reads besides until and max_gen_toks: transformers' names -> t5tune's.
_GENERATION_KWARGS = {"temperature": "temperature", "top_k": "top_k", "top_p": "top_p",
                      "repetition_penalty": "repetition_penalty",
                      "no_repeat_ngram_size": "no_repeat_ngram_size",
                      "min_new_tokens": "min_tokens"}


def decode_fields(kwargs: dict) -> tuple[tuple[str, Any], ...]:
  """`DecodeOptions` fields (a hashable tuple, max_decode_len aside) of a request's generation_kwargs.

  Greedy unless `do_sample` is true, as the HF backend decides (a temperature
  alone does not sample there either); what this backend cannot honour is
  refused rather than ignored.
  """
  kwargs = dict(kwargs)
  sample = bool(kwargs.pop("do_sample", False))
  beams = int(kwargs.pop("num_beams", 1) or 1)
  fields = {ours: kwargs.pop(theirs) for theirs, ours in _GENERATION_KWARGS.items()
            if theirs in kwargs}
  if kwargs:
    raise errors.UsageError(
        f"t5tune backend: generation_kwargs {sorted(kwargs)} are not supported",
        where="the task's generation_kwargs",
        fix=f"it reads until, max_gen_toks (max_new_tokens), do_sample, num_beams,"
        f" {', '.join(_GENERATION_KWARGS)}")
  if beams > 1:
    if sample:
      raise errors.UsageError("t5tune backend: do_sample with num_beams > 1 (beam sampling) is"
                              " not supported", where="the task's generation_kwargs",
                              fix="sample (num_beams 1) or search (do_sample false)")
    fields = {k: v for k, v in fields.items() if k not in ("temperature", "top_k", "top_p")}
    return tuple(sorted({**fields, "method": "beam", "num_beams": beams}.items()))
  if not sample:
    fields = {k: v for k, v in fields.items() if k not in ("temperature", "top_k", "top_p")}
  else:
    fields.setdefault("temperature", 1.0)
    fields["temperature"] = float(fields["temperature"])
  fields["method"] = "sample" if sample else "greedy"
  return tuple(sorted(fields.items()))


def _bucket(n: int, cap: int | None = None, minimum: int = 8) -> int:
  width = api.bucket_length(max(n, 1), minimum=minimum)
  return min(width, cap) if cap else width


def _pad(rows: Sequence[Sequence[int]], width: int, batch: int) -> np.ndarray:
  out = np.zeros((batch, width), np.int32)
  for i, row in enumerate(rows):
    out[i, :len(row)] = row
  return out


def _special_id(vocabulary: Any, name: str) -> int | None:
  """The vocabulary's pad_id or unk_id, None where it has none."""
  try:
    value = getattr(vocabulary, name, None)
  except NotImplementedError:  # seqio's base class for a vocabulary without one
    return None
  return None if value is None else int(value)


def _model_arg(name: str, value: Any, spec: Any) -> int:
  """An integer of --model_args within its declared range, or a UsageError naming it."""
  try:
    number = int(str(value).strip())
  except ValueError:
    raise errors.UsageError(f"t5tune backend: {name}={value!r} is not an integer",
                            where="--model_args", fix=f"give {name}=N") from None
  message = ranges.problem(name, number, spec)
  if message:
    raise errors.UsageError(f"t5tune backend: {message}", where="--model_args",
                            fix=f"give {name} in {spec if isinstance(spec, str) else spec.allowed}")
  return number


class T5tuneLM(lm_model.LM):
  """lm-evaluation-harness model over a t5tune (or Hugging Face T5) model directory."""

  def __init__(self, checkpoint: str = "", vocab: str | None = None, batch_size: Any = 16,
               max_length: int = 512, max_gen_toks: int = 256, model: Any = None,
               vocabulary: Any = None, seed: Any = 0, pretrained: str = "", **unused: Any):
    super().__init__()
    unused.pop("device", None)  # the mesh decides where t5tune runs
    unused.pop("max_batch_size", None)
    if unused:
      raise errors.UsageError(f"t5tune backend: unknown model_args {sorted(unused)}",
                              where="--model_args",
                              fix="it takes checkpoint (or pretrained), vocab, batch_size, max_length,"
                              " max_gen_toks, seed")
    # `pretrained=` is the harness's own name for the model (its HF backend's): the harness names
    # its output folder from it, so `pretrained=DIR` files results under DIR's name.
    if pretrained and checkpoint and pretrained != checkpoint:
      raise errors.UsageError(
          f"t5tune backend: checkpoint={checkpoint!r} and pretrained={pretrained!r} name two models",
          where="--model_args", fix="give one of them (pretrained= is checkpoint='s other name)")
    checkpoint = checkpoint or pretrained
    # The numbers first, before a model is loaded; the harness passes batch_size as given on its
    # command line ("auto", "auto:4", "8" or None), the others as the strings of --model_args.
    self._batch_size = (16 if batch_size is None or str(batch_size).startswith("auto")
                        else _model_arg("batch_size", batch_size, "[1, inf)"))
    self.max_length = _model_arg("max_length", max_length, "[2, inf)")
    self.max_gen_toks = _model_arg("max_gen_toks", max_gen_toks, "[1, inf)")
    self.seed = _model_arg("seed", seed, decoding.SEED_RANGE)
    if model is None:
      if not checkpoint:
        raise errors.UsageError("t5tune backend: no checkpoint", where="--model_args",
                                fix="give pretrained=DIR or checkpoint=DIR (a t5tune model directory,"
                                " a training checkpoint step or a Hugging Face T5 directory)")
      import t5tune  # pylint: disable=g-import-not-at-top
      model = t5tune.load_model(checkpoint)
      vocab = vocab or tokenizers.model_dir_vocabulary(checkpoint)
    self.model = model
    self.vocabulary = api.resolve_vocabulary(model, vocabulary if vocabulary is not None else vocab)
    self.eos_id = int(self.vocabulary.eos_id)
    self.compiled_shapes: set[tuple[str, int, int]] = set()

  # -- tokenization under the seq2seq conventions (see the module docstring) ---------

  def _encode(self, text: str) -> list[int]:
    return [int(t) for t in self.vocabulary.encode(text)]

  def encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """(encoder tokens, decoder target tokens) of one loglikelihood request."""
    if not context:
      cont = self._encode(continuation)
      if cont and cont[0] == self.eos_id:
        return cont[:1], cont[1:]
      return [self.eos_id], cont
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces:
      continuation = context[-n_spaces:] + continuation
      context = context[:-n_spaces]
    return self._encode(context) + [self.eos_id], self._encode(continuation)

  def decode_generated(self, tokens: Sequence[int]) -> str:
    """Text of generated ids up to the first EOS, special tokens left out (see the module docstring)."""
    ids = [int(t) for t in tokens]
    if self.eos_id in ids:
      ids = ids[:ids.index(self.eos_id)]
    pieces = int(getattr(self.vocabulary, "_base_vocab_size", self.vocabulary.vocab_size))
    special = {_special_id(self.vocabulary, name) for name in ("pad_id", "unk_id")}
    return self.vocabulary.decode([i for i in ids if i < pieces and i not in special])

  # -- batched scoring --------------------------------------------------------------

  def score_tokens(self, pairs: Sequence[tuple[list[int], list[int]]]) -> list[tuple[float, bool]]:
    """(log-likelihood, is_greedy) of each (encoder tokens, target tokens) pair.

    Pairs with the same encoder tokens (a question's options) share one encoder
    pass: they are scored as up to K targets of one row. Rows are batched by
    (context bucket, K, target bucket), so few programs are compiled.
    """
    results: list[tuple[float, bool] | None] = [None] * len(pairs)
    # Contexts are truncated from the left to max_length, as the harness does.
    pairs = [(tuple(enc[-self.max_length:]), list(tgt[-self.max_length:])) for enc, tgt in pairs]
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, (enc, _) in enumerate(pairs):
      groups.setdefault(enc, []).append(i)
    units: dict[tuple[int, int, int], list[tuple[tuple[int, ...], list[int]]]] = {}
    for enc, members in groups.items():
      for lo in range(0, len(members), _MAX_SHARED):
        chunk = members[lo:lo + _MAX_SHARED]
        key = (_bucket(len(enc), self.max_length), _bucket(len(chunk), _MAX_SHARED, minimum=1),
               _bucket(max(len(pairs[i][1]) for i in chunk), self.max_length))
        units.setdefault(key, []).append((enc, chunk))
    for (l_b, k_b, t_b), rows in sorted(units.items()):
      per_batch = max(1, self._batch_size // k_b)  # about batch_size decoder rows per call
      self.compiled_shapes.add(("score", l_b, k_b, t_b))
      for lo in range(0, len(rows), per_batch):
        batch = rows[lo:lo + per_batch]
        targets = np.zeros((per_batch, k_b, t_b), np.int32)
        for r, (_, chunk) in enumerate(batch):
          for k, i in enumerate(chunk):
            targets[r, k, :len(pairs[i][1])] = pairs[i][1]
        out = scoring.score_greedy(self.model, _pad([enc for enc, _ in batch], l_b, per_batch),
                                   targets)
        for r, (_, chunk) in enumerate(batch):
          for k, i in enumerate(chunk):
            results[i] = (float(out.sum[r, k]), bool(out.greedy[r, k]))
    return results

  # -- the harness's three request types ----------------------------------------------

  def loglikelihood(self, requests, disable_tqdm: bool = False) -> list[tuple[float, bool]]:
    """The harness's loglikelihood requests: (log-likelihood, is_greedy) of each continuation."""
    del disable_tqdm
    return self.score_tokens([self.encode_pair(*req.args) for req in requests])

  def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
    """The harness's rolling log-likelihood of each text, over disjoint windows of max_length tokens."""
    del disable_tqdm
    from lm_eval import utils as lm_utils  # pylint: disable=g-import-not-at-top
    pairs, owner = [], []
    for n, req in enumerate(requests):
      (text,) = req.args
      windows = lm_utils.get_rolling_token_windows(
          token_list=self._encode(text), prefix_token=self.eos_id, max_seq_len=self.max_length,
          context_len=1)
      for window in map(lm_utils.make_disjoint_window, windows):
        pairs.append((list(window[0]), list(window[1])))
        owner.append(n)
    totals = [0.0] * len(requests)
    for n, (logp, _) in zip(owner, self.score_tokens(pairs)):
      totals[n] += logp
    return totals

  def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
    """The harness's generation requests: each decoded with its generation_kwargs and cut at the first stop string."""
    del disable_tqdm
    outputs: list[str | None] = [None] * len(requests)
    groups: dict[tuple[int, int], list[int]] = {}
    prompts, stops = [], []
    for n, req in enumerate(requests):
      context, kwargs = req.args
      kwargs = dict(kwargs or {})
      until = kwargs.pop("until", None) or []
      until = [until] if isinstance(until, str) else list(until)
      max_gen = int(kwargs.pop("max_gen_toks", self.max_gen_toks))
      max_gen = int(kwargs.pop("max_new_tokens", max_gen))  # transformers' name wins, as in HF
      fields = decode_fields(kwargs)
      tokens = (self._encode(context) + [self.eos_id])[-self.max_length:]
      prompts.append(tokens)
      stops.append(until)
      # Greedy and sampled tokens do not depend on how many steps follow them, so the step count
      # is bucketed; a beam search's result does (what is finished at the limit), so it is exact.
      steps = max_gen if dict(fields)["method"] == "beam" else _bucket(max_gen)
      key = (_bucket(len(tokens), self.max_length), steps, fields)
      groups.setdefault(key, []).append((n, max_gen))
    for (l_b, t_b, fields), members in sorted(groups.items(), key=lambda g: repr(g[0])):
      try:
        options = decoding.DecodeOptions(max_decode_len=t_b, **dict(fields))
      except ValueError as e:
        raise errors.UsageError(f"t5tune backend: {e}", where="the task's generation_kwargs") from None
      for start in range(0, len(members), self._batch_size):
        chunk = members[start:start + self._batch_size]
        self.compiled_shapes.add(("generate", l_b, t_b))
        keys = np.zeros((self._batch_size, 2), np.uint32)  # padding rows: any key
        keys[:len(chunk)] = [decoding.row_key(self.seed, n) for n, _ in chunk]
        out = decoding.decode(self.model, _pad([prompts[n] for n, _ in chunk], l_b, self._batch_size),
                              options, rng=keys)
        for row, (n, max_gen) in enumerate(chunk):
          text = self.decode_generated(out.tokens[row][:max_gen])
          for stop in stops[n]:
            if stop and stop in text:
              text = text.split(stop, 1)[0]
          outputs[n] = text
    return outputs


def register() -> type:
  """Registers the backend with lm_eval as `t5tune` (idempotent); returns its class."""
  # lm_eval fills its registry lazily only while it is empty: load its own
  # models first, so registering ours does not hide "hf" and the others.
  import lm_eval.models  # noqa: F401  pylint: disable=g-import-not-at-top,unused-import
  from lm_eval.api import registry  # pylint: disable=g-import-not-at-top
  if MODEL_NAME not in registry.model_registry:
    registry.register_model(MODEL_NAME)(T5tuneLM)
  return T5tuneLM
