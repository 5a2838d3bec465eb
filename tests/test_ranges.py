"""Declared ranges: the interval text is the check and the message."""
import pytest

from t5tune import errors
from t5tune import ranges
from t5tune.models import config as model_config


@pytest.mark.parametrize("spec, inside, outside", [
    ("[0, 1)", [0, 0.5, 0.999], [-0.1, 1, 1.5, float("nan"), "x"]),
    ("(0, inf)", [1e-9, 3, 1e30], [0, -1, float("nan")]),
    ("[1, 65535]", [1, 8000, 65535], [0, 65536, 70000]),
])
def test_interval_membership(spec, inside, outside):
  interval = ranges.Interval.parse(spec)
  for v in inside:
    assert v in interval, (spec, v)
  for v in outside:
    assert v not in interval, (spec, v)


def test_bad_spec_is_refused():
  with pytest.raises(ValueError, match="bad interval spec"):
    ranges.Interval.parse("0..1")


def test_check_names_key_value_and_range():
  ranges.check("k", 0.3, "[0, 1)")
  ranges.check("k", None, "[0, 1)")  # unset values are not checked
  with pytest.raises(errors.UsageError, match=r"config.x=-1 is out of range: allowed \(0, inf\)") as e:
    ranges.check("config.x", -1, "(0, inf)")
  assert e.value.exit_code == 2


@pytest.mark.parametrize("field, value", [("dropout_rate", 1.5), ("dropout_rate", -0.1),
                                          ("layer_norm_epsilon", 0.0), ("lora_alpha", -2.0)])
def test_t5config_refuses_out_of_range_fields(field, value):
  with pytest.raises(errors.UsageError, match=f"T5Config.{field}={value} is out of range"):
    model_config.T5Config(**{field: value})
  model_config.preset("tiny")  # the presets themselves are in range


@pytest.mark.parametrize("spec, dtype, inside, outside", [
    ("[0, inf)", "int32", [0, 7, 2**31 - 1], [2**31, -1, 2.5, float("nan"), True, 10**400]),
    ("[0, inf)", "float32", [0.0, 1e38], [1e39, float("inf"), float("nan")]),
    ("(-inf, inf)", "float32", [-3.0, 0.0], [float("nan"), float("-inf")]),
])
def test_a_declared_dtype_bounds_the_interval(spec, dtype, inside, outside):
  interval = ranges.Interval.parse(spec, dtype)
  for v in inside:
    assert v in interval, (spec, dtype, v)
  for v in outside:
    assert v not in interval, (spec, dtype, v)
  with pytest.raises(errors.UsageError, match=rf"allowed \{spec[0]}.* as {dtype}"):
    ranges.check("--x", outside[0], interval)


def test_decoding_options_declare_their_ranges_once():
  """predict's flags, the server's fields and library calls all read DecodeOptions' declarations."""
  from t5tune.infer import decoding
  for name, value in [("temperature", float("nan")), ("length_penalty", float("nan")),
                      ("top_k", 2**31), ("top_p", 1.5), ("num_beams", 0), ("min_tokens", -1)]:
    with pytest.raises(decoding.OptionError, match=f"{name}=.* is out of range") as e:
      decoding.DecodeOptions(**{name: value})
    assert e.value.field == name
  assert set(decoding.DecodeOptions().numbers()) >= {"temperature", "top_k", "top_p",
                                                      "max_decode_len", "repetition_penalty"}
