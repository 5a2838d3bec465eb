"""The test tasks: the package's demo tasks plus two inference tasks with variants and more metrics.

    t5tune_demo_*           see t5tune/demo_tasks.py (registered by importing it)
    t5tune_infer_cls        classification with yes/no options (the adjective decides
                            the label); variants "" and "fs2"
    t5tune_infer_reverse    generation on the demo reverse data, scored with
                            ROUGE, BLEU and SQuAD
"""
from t5tune import data
from t5tune import demo_tasks
from t5tune.infer import metrics

CLS_TEMPLATES = [
    data.Template("cls_opt", "{text} Liked it?\n{options_}", "{label}", data.ZERO_SHOT_OPTIONS),
    data.Template("cls_noopt", "{text} Did they like it?", "{label}", data.ZERO_SHOT),
]


def cls_records(n: int, seed: int):
  return demo_tasks.review_records(
      n, seed, labels=("yes", "no"), good=["great", "superb", "lovely", "fine", "good", "nice"],
      bad=["awful", "dull", "poor", "bad", "weak", "grim"], things=["film", "meal", "show", "book"],
      names=())


if "t5tune_infer_cls" not in data.task_names():
  data.register_variants(
      "t5tune_infer_cls", variants=("", "fs2"),
      source=data.sources.function({
          "train": lambda: cls_records(600, 1), "validation": lambda: cls_records(48, 2)}),
      fields=["text", "options", "label"], templates=CLS_TEMPLATES,
      metric_fns=[metrics.accuracy, metrics.f1_macro], dedup=None,
      metadata={"cluster": "infer_test_sentiment"})
  data.register_task(
      "t5tune_infer_reverse", source=demo_tasks.reverse_files(),
      fields=["instruction", "input", "output"],
      templates=[data.Template("rev", "{instruction}\n{input}", "{output}")],
      metric_fns=[metrics.rouge, metrics.bleu, metrics.squad],
      metadata={"cluster": "infer_test_generation"})
