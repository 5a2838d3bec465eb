"""Builds Hugging Face PyTorch T5 models with random weights: the numerical reference."""
import torch
import transformers


def build_hf_t5(tmp_dir, *, gated: bool, seed: int = 0, vocab_size: int = 128,
                num_layers: int = 2, num_decoder_layers: int = 3):
  """A random HF T5 saved (safetensors) in tmp_dir; returns (model, dir)."""
  torch.manual_seed(seed)
  cfg = transformers.T5Config(
      vocab_size=vocab_size, d_model=32, d_kv=8, d_ff=64, num_heads=4,
      num_layers=num_layers, num_decoder_layers=num_decoder_layers,
      relative_attention_num_buckets=16, relative_attention_max_distance=24,
      dropout_rate=0.0, layer_norm_epsilon=1e-6,
      feed_forward_proj="gated-gelu" if gated else "relu",
      pad_token_id=0, eos_token_id=1,
      decoder_start_token_id=0)
  model = transformers.T5ForConditionalGeneration(cfg).eval()
  # Unit-variance activations everywhere (HF's own init leaves some tensors
  # near zero, which would hide mapping mistakes): projections get
  # 1/sqrt(fan_in), embeddings and position biases unit normals, layer norms
  # a perturbed 1.
  with torch.no_grad():
    for name, p in model.named_parameters():
      if p.ndim == 1:
        p.copy_(1.0 + 0.2 * torch.randn_like(p))
      elif name == "shared.weight" or "relative_attention_bias" in name:
        p.normal_(0.0, 1.0)
      else:
        p.normal_(0.0, p.shape[1] ** -0.5)
    if gated:
      # T5 v1.1 / Flan-T5: a separate, unscaled output head. transformers 5
      # builds every T5 tied; untie it the way a Flan-T5 checkpoint loads.
      model.lm_head.weight = torch.nn.Parameter(torch.randn(vocab_size, 32) * 32 ** -0.5)
      model.config.tie_word_embeddings = False
      model.config.scale_decoder_outputs = False
  model.save_pretrained(str(tmp_dir), safe_serialization=True)
  return model, str(tmp_dir)
