"""t5tune: FLAN-style instruction tuning of T5-style encoder-decoder models in JAX/Flax NNX.

The three-line API (attributes load lazily so `import t5tune` stays cheap):

    model = t5tune.load_model(path)          # t5tune checkpoint dir or Hugging Face T5 dir
    logits = model(encoder_input_tokens, decoder_input_tokens)   # [batch, target_len, vocab]
    tokens = t5tune.greedy_decode(model, encoder_input_tokens, max_decode_len)
"""
from t5tune import lazy as _lazy

__version__ = "0.1.0"

_LAZY = {
    "t5tune.convert.loading": ("load_model", "save_model"),
    "t5tune.infer.decoding": ("greedy_decode",),
    "t5tune.models.config": ("T5Config",),
    "t5tune.infer.api": ("generate", "score"),
}


__getattr__, __dir__ = _lazy.attach(__name__, _LAZY)
