"""Infilling templates: a blank in the instruction, T5's span format in the tokens, in training and rank classification."""
import random

import numpy as np
import pytest
import seqio

from t5tune import errors
from t5tune.data import tasks
from t5tune.data import templates
from t5tune.data import vocab as vocab_lib
from t5tune.infer import api
from t5tune.infer import judging

T = templates.Template
FILL = T("fill", "{premise} So, is it true that {hypothesis}? Answer: {blank_}.", "{answer}",
         templates.INFILL)
PLAIN = T("plain", "{premise}\nDoes it follow that {hypothesis}?\n{options_}", "{answer}",
          templates.ZERO_SHOT_OPTIONS)


@pytest.fixture(scope="module")
def spm(tmp_path_factory):
  rng = random.Random(0)
  words = "the cat dog is red blue big small yes no so true that answer it does follow".split()
  texts = [" ".join(rng.choice(words) for _ in range(10)) for _ in range(300)]
  path = vocab_lib.train_sentencepiece(texts, str(tmp_path_factory.mktemp("spm") / "spm"), vocab_size=60)
  return vocab_lib.get_vocabulary(path, extra_ids=10)  # T5's sentinels at the end of the ids


def _records(n=6):
  return [{"premise": f"the cat is red {i}", "hypothesis": "the cat is blue", "options": ["yes", "no"],
           "answer": ["yes", "no"][i % 2]} for i in range(n)]


def test_render_puts_the_sentinel_in_the_blank_and_before_the_answer():
  inputs, targets = templates.render(FILL, _records()[0])
  assert inputs == "the cat is red 0 So, is it true that the cat is blue? Answer: <extra_id_0>."
  assert targets == "<extra_id_0> yes"
  assert templates.render(PLAIN, _records()[0])[1] == "yes"


def test_tokens_are_t5_span_format_in_training_data(spm):
  tasks.register_task("infill_nli", source={"train": _records(), "validation": _records()},
                      fields=["premise", "hypothesis", "options", "answer"], templates=[FILL],
                      vocabulary=spm, overwrite=True)
  sentinel = spm.vocab_size - 1  # extra_id_0 is the last id (T5's convention)
  assert spm.encode(templates.SENTINEL) == [sentinel]
  ds = seqio.get_mixture_or_task("infill_nli").get_dataset(
      {"inputs": 64, "targets": 8}, split="train", shuffle=False)
  for ex in ds.as_numpy_iterator():
    assert list(ex["inputs"]).count(sentinel) == 1
    assert ex["targets"][0] == sentinel and ex["targets"][-1] == 1  # sentinel, answer, EOS
    assert spm.decode(ex["targets"][1:-1].tolist()) in ("yes", "no")


def test_rank_classification_scores_sentinel_plus_option(spm):
  from t5tune.models import config as model_config  # pylint: disable=g-import-not-at-top
  from t5tune.models import t5  # pylint: disable=g-import-not-at-top
  tasks.register_task("infill_mixed", source={"validation": _records(8)},
                      fields=["premise", "hypothesis", "options", "answer"], templates=[FILL, PLAIN],
                      vocabulary=spm, overwrite=True)
  examples = tasks.get_info("infill_mixed").source.prepared("validation").examples
  assert {ex["template_kind"] for ex in examples} == {templates.INFILL, templates.ZERO_SHOT_OPTIONS}
  assert set(judging.methods(examples)) == {judging.RANK_CLASSIFICATION}
  for ex in examples:
    assert ex["targets"] in ex["options"]
    want = ["<extra_id_0> yes", "<extra_id_0> no"] if ex["template_kind"] == templates.INFILL else ["yes", "no"]
    assert ex["options"] == want
  infill = [ex for ex in examples if ex["template_kind"] == templates.INFILL]
  tokens = api.option_tokens(spm, [ex["options"] for ex in infill])
  assert np.all(tokens[:, :, 0] == spm.vocab_size - 1)  # every option is scored after the sentinel
  model = t5.build_model(model_config.preset("tiny"))
  c = api.classify(model, [ex["inputs"] for ex in infill], [ex["options"] for ex in infill], vocabulary=spm)
  assert all(p in ex["options"] for p, ex in zip(c.predictions, infill))


def test_infilling_mistakes_are_usage_errors():
  with pytest.raises(errors.UsageError, match="belongs in the inputs of an infilling"):
    T("x", "{premise} {blank_}", "{answer}")  # a blank in a template of another kind
  with pytest.raises(errors.UsageError, match="belongs in the inputs of an infilling"):
    T("y", "{premise}", "{answer}", templates.INFILL)  # an infilling template without a blank
  with pytest.raises(errors.UsageError, match="need a vocabulary with T5's sentinels"):
    tasks.register_task("infill_bytes", source={"train": _records()}, templates=[FILL],
                        fields=["premise", "hypothesis", "options", "answer"], overwrite=True)
