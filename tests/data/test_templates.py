"""Template rendering for each kind, few-shot exemplars, field checks at registration."""
import pytest

from t5tune import data
from t5tune.data import templates

RECORD = {"premise": "It rains.", "hypothesis": "It is wet.", "options": ["yes", "no"],
          "answer": "yes", "rationale": "Rain makes things wet."}


def test_zero_shot_with_options_renders_options_block_in_configured_style():
  t = data.Template("a", "{premise} {hypothesis}?\n{options_}", "{answer}", data.ZERO_SHOT_OPTIONS)
  assert templates.render(t, RECORD) == (
      "It rains. It is wet.?\nOPTIONS:\n- yes\n- no", "yes")
  style = data.OptionsStyle(header="Choices:", bullet="* ", separator=" ")
  assert templates.render(t, RECORD, style)[0].endswith("Choices: * yes * no")


def test_zero_shot_cot_and_inverted_render():
  zs = data.Template("z", "Does '{premise}' mean '{hypothesis}'?", "{answer}")
  cot = data.Template("c", "{premise} So {hypothesis}? Think first.",
                      "{rationale} So the answer is {answer}.", data.COT)
  inv = data.Template("i", "Write a sentence that '{premise}' makes '{answer}'.",
                      "{hypothesis}", data.INVERTED)
  assert templates.render(zs, RECORD) == ("Does 'It rains.' mean 'It is wet.'?", "yes")
  assert templates.render(cot, RECORD)[1] == "Rain makes things wet. So the answer is yes."
  assert templates.render(inv, RECORD) == (
      "Write a sentence that 'It rains.' makes 'yes'.", "It is wet.")


def test_no_template_is_raw_input_fields():
  t = data.Template("a", "P: {premise} H: {hypothesis}", "{answer}")
  inputs, targets = templates.render_no_template(RECORD, ["premise", "hypothesis"], t.targets)
  assert inputs == "It rains.\nIt is wet.\nOPTIONS:\n- yes\n- no" and targets == "yes"


def test_few_shot_render_puts_exemplars_first_and_fits_a_token_budget():
  t = data.Template("a", "Q: {premise}", "{answer}")
  shots = [dict(RECORD, premise=f"p{i}", answer=f"a{i}") for i in range(3)]
  fs = data.FewShot(k=3, example_separator=" || ", target_separator=" -> ")
  inputs, targets = templates.render_few_shot(t, RECORD, shots, fs)
  assert inputs == "Q: p0 -> a0 || Q: p1 -> a1 || Q: p2 -> a2 || Q: It rains."
  assert targets == "yes"
  budget = data.FewShot(k=3, example_separator=" || ", target_separator=" -> ", max_tokens=30)
  inputs, _ = templates.render_few_shot(t, RECORD, shots, budget, count_tokens=len)
  assert inputs == "Q: p0 -> a0 || Q: It rains." and len(inputs) <= 30


def test_exemplar_draw_is_deterministic_and_never_the_example_itself():
  keys = [f"k{i}" for i in range(6)]
  for key in keys:
    for seed in range(20):
      drawn = templates.draw_exemplars(keys, "task", key, seed, 5)
      assert drawn == templates.draw_exemplars(keys, "task", key, seed, 5)
      assert keys.index(key) not in drawn and len(drawn) == 5 and len(set(drawn)) == 5


def test_template_choice_is_deterministic_and_uses_every_template():
  ts = [data.Template(f"t{i}", "{premise}", "{answer}") for i in range(3)]
  chosen = [templates.choose(ts, "task", f"key{i}", 0).name for i in range(300)]
  assert chosen == [templates.choose(ts, "task", f"key{i}", 0).name for i in range(300)]
  assert min(chosen.count(n) for n in ("t0", "t1", "t2")) > 70
  assert chosen != [templates.choose(ts, "task", f"key{i}", 1).name for i in range(300)]


def test_missing_template_field_fails_at_registration_naming_task_template_field():
  bad = data.Template("asks_for_label", "{premise}", "{label}")
  with pytest.raises(ValueError, match=r"task 'tmpl_missing'.*template 'asks_for_label'.*\{label\}"):
    data.register_task("tmpl_missing", source={"train": [RECORD]},
                       fields=["premise", "hypothesis", "answer"], templates=[bad])
  opts = data.Template("o", "{premise}\n{options_}", "{answer}", data.ZERO_SHOT_OPTIONS)
  with pytest.raises(ValueError, match=r"template 'o'.*options"):
    data.register_task("tmpl_no_options", source={"train": [RECORD]},
                       fields=["premise", "answer"], templates=[opts])


def test_bad_kind_and_bad_format_string_are_rejected():
  with pytest.raises(ValueError, match="kind 'fewshot'"):
    data.Template("x", "{a}", "{b}", "fewshot")
  with pytest.raises(ValueError, match="template 'y': inputs"):
    data.Template("y", "{a", "{b}")
