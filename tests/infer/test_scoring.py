"""Scoring and rank classification against transformers' PyTorch T5 (same random weights)."""
import numpy as np
import pytest
import torch

import t5tune
from t5tune.infer import scoring
from tests.models import hf_reference

B, L, K, T = 4, 16, 3, 6


@pytest.fixture(scope="module", params=["v1_0_relu_tied", "v1_1_gated_untied"])
def pair(request, tmp_path_factory):
  hf_model, path = hf_reference.build_hf_t5(tmp_path_factory.mktemp(request.param),
                                            gated=request.param.startswith("v1_1"))
  return hf_model, t5tune.load_model(path)


def _data(seed=0):
  rng = np.random.RandomState(seed)
  enc = rng.randint(2, 128, (B, L)).astype(np.int32)
  enc[1, 9:] = 0
  enc[3, 4:] = 0
  options = rng.randint(2, 128, (B, K, T)).astype(np.int32)
  lengths = rng.randint(1, T, (B, K))
  for b in range(B):
    for k in range(K):
      options[b, k, lengths[b, k]] = 1  # EOS
      options[b, k, lengths[b, k] + 1:] = 0
  options[2, 2] = 0  # example 2 has only two options
  return enc, options


def _hf_loglik(hf_model, enc, targets):
  """Sum of per-token log-likelihoods of targets (EOS included, 0 ignored) from HF's loss."""
  labels = torch.tensor(np.where(targets == 0, -100, targets), dtype=torch.long)
  with torch.no_grad():
    logits = hf_model(input_ids=torch.tensor(enc, dtype=torch.long),
                      attention_mask=torch.tensor(enc != 0, dtype=torch.long),
                      labels=labels).logits
  nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), labels, reduction="none",
                                          ignore_index=-100)
  return -nll.sum(dim=1).numpy()


def test_option_loglikelihoods_match_transformers(pair):
  hf_model, model = pair
  enc, options = _data()
  r = scoring.rank_classify(model, enc, options)
  for k in range(K):
    present = (options[:, k] != 0).any(axis=1)
    ref = _hf_loglik(hf_model, enc, options[:, k])
    np.testing.assert_allclose(r.scores[present, k], ref[present], atol=1e-4)
  assert r.scores[2, 2] == -np.inf
  np.testing.assert_array_equal(r.best, np.argmax(r.scores, axis=1))
  # The same numbers as plain scoring of each option as the target.
  s = scoring.score(model, enc, options[:, 0])
  np.testing.assert_allclose(s.sum, r.scores[:, 0], atol=1e-5)
  np.testing.assert_allclose(s.mean, s.sum / (options[:, 0] != 0).sum(axis=1), rtol=1e-6)


def test_length_normalised_ranking(pair):
  _, model = pair
  enc, options = _data(seed=1)
  r = scoring.rank_classify(model, enc, options, length_normalize=True)
  np.testing.assert_array_equal(r.best, np.argmax(r.mean, axis=1))
