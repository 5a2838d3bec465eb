"""The FLAN 2021 collection over TFDS mock data (importing registers it): CPU smoke runs and offline tests.

    t5tune train --config=configs/experiments/flan2021_heldout.py:nli,smoke --workdir=/tmp/smoke

Every task, variant and mixture of `t5tune.flan_tasks`, same names, but each
split holds MOCK_EXAMPLES random records that TFDS generates from the real
builder's features (`tfds.testing.mock_data`), so the whole path (carving,
templates, mixtures, formats, evaluation variants) runs without any data.
"""
import tensorflow_datasets as tfds

from t5tune.data import sources
from t5tune.data.collections import flan2021
from t5tune.infer import metrics

MOCK_EXAMPLES = 8


class MockTfdsSource(sources.Source):
  """A TFDS source read under `tfds.testing.mock_data`: random records with the builder's features."""

  def __init__(self, name: str, splits):
    self.inner = sources.tfds(name, data_dir="/nonexistent/t5tune_mock", splits=splits)
    super().__init__(self.inner.splits)
    self.name = name

  def describe(self) -> str:
    return f"tfds mock {self.name}"

  def records(self, split):
    with tfds.testing.mock_data(num_examples=MOCK_EXAMPLES, policy=tfds.testing.MockPolicy.USE_CODE):
      items = list(self.inner.records(split))  # read whole inside the mock, then handed out
    yield from items


# A shuffle buffer of 8 splits: seqio's default (1000 examples) repeated each 8-record split 125
# times to fill it, and every buffer is saved in the data iterator's checkpoint (55 MB against
# 16 MB for the smoke run's two steps).
NAMES = flan2021.register(metric_fns=metrics, source_fn=lambda spec, carved: MockTfdsSource(spec.tfds, carved),
                         shuffle_buffer_size=8 * MOCK_EXAMPLES)
