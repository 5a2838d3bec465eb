"""Augmentation: paraphrased templates, back-translation through two tasks, marked for evaluation."""
import pytest

from t5tune import data
from t5tune.quality import augment
from t5tune.infer import eval_tasks
from t5tune.infer import metrics

BASE = data.Template("ask", "Question: {question}\n{options_}", "{answer}", data.ZERO_SHOT_OPTIONS)
RECORDS = [{"question": "Is fire hot?", "options": ["yes", "no"], "answer": "yes"},
           {"question": "Is ice hot?", "options": ["yes", "no"], "answer": "no"},
           {"question": "Is snow cold?", "options": ["yes", "no"], "answer": "yes"}]


def test_paraphrases_back_translation_and_evaluation_exclusion():
  extra = augment.paraphrase_templates(BASE, ["{question} Pick one.\n{options_}", "Q: {question}\n{options_}"])
  assert [(t.name, t.targets, t.kind) for t in extra] == [
      ("ask_para0", "{answer}", "zs_opt"), ("ask_para1", "{answer}", "zs_opt")]
  with pytest.raises(ValueError, match="placeholders"):
    augment.paraphrase_templates(BASE, ["{question} (no options)"])
  # A pair of "translation tasks" whose model is a word-for-word dictionary.
  for name, wording in (("aug_to_x", "To X: {text}"), ("aug_from_x", "From X: {text}")):
    data.register_task(name, source=data.sources.function({"train": lambda: [{"text": "a", "out": "b"}]}),
                       fields=["text", "out"], templates=[data.Template("t", wording, "{out}")],
                       overwrite=True)
  to_x = {"Is": "Ist", "fire": "Feuer", "hot?": "heiss?", "ice": "Eis", "snow": "Schnee",
          "cold?": "kalt?"}
  back = {"Ist": "Is", "Feuer": "flame", "heiss?": "hot?", "Eis": "ice", "Schnee": "", "kalt?": ""}
  prompts = []

  def model(batch):
    prompts.extend(batch)
    table = to_x if batch[0].startswith("To X: ") else back
    return [" ".join(w for w in (table[w] for w in p.split(": ", 1)[1].split()) if w)
            for p in batch]

  forward = augment.translation_fn("aug_to_x", model)
  backward = augment.translation_fn("aug_from_x", model)
  new, counts = augment.back_translate(RECORDS, "question", forward, backward, via="x")
  assert prompts[:2] == ["To X: Is fire hot?", "To X: Is ice hot?"]
  assert counts == {"kept": 2, "unchanged": 1}  # "Is ice hot?" comes back as it was
  assert new[0]["question"] == "Is flame hot?" and new[0]["answer"] == "yes"
  assert new[0]["augmentation"] == {"method": "back_translation", "via": "x", "field": "question",
                                    "source": 0}
  # Registered as augmented tasks, they train but are not evaluated by cluster.
  data.register_task("aug_qa", source=data.sources.function({"validation": lambda: RECORDS}),
                     fields=["question", "options", "answer"], templates=[BASE],
                     metric_fns=[metrics.accuracy], metadata={"cluster": "aug_test"}, overwrite=True)
  data.register_task("aug_qa_bt", source=data.sources.function({"validation": lambda: new}),
                     fields=["question", "options", "answer"], templates=[BASE, *extra],
                     metric_fns=[metrics.accuracy], overwrite=True,
                     metadata=augment.mark({"cluster": "aug_test"}, "back_translation", via="x",
                                           templates=[t.name for t in extra]))
  assert augment.is_augmented(data.tasks.get_info("aug_qa_bt").metadata)
  rendered = data.tasks.get_info("aug_qa_bt").source.prepared("validation").examples
  assert {ex["inputs"].split("\n")[0] for ex in rendered} <= {
      "Question: Is flame hot?", "Is flame hot? Pick one.", "Q: Is flame hot?",
      "Question: Is", "Is Pick one.", "Q: Is"}
  assert [n for _, _, n in eval_tasks.resolve_tasks(clusters=["aug_test"])] == ["aug_qa"]
