"""flan_mini's instruction templates: six or more per task for training, two unseen wordings.

    templates.training("sent_movie")   # [data.Template, ...] of kinds zs_opt/zs_noopt/cot/inv
    templates.unseen("sent_movie")     # wordings never used in training

Instructions are compositional: the words that name an operation mean the
same in every cluster ("Answer with one of the options.", "yes or no",
"Translate ... into Lumi", "Write ...", "Extract ..."), so an instruction for a
held-out cluster is made of phrases the model has seen doing the same job
elsewhere. Unseen wordings recombine those phrases in new frames.
"""
from __future__ import annotations

from t5tune import data

from experiments.flan_mini import collection

T = data.Template
OPT, NOOPT, COT, INV = data.ZERO_SHOT_OPTIONS, data.ZERO_SHOT, data.COT, data.INVERTED
PICK = "Answer with one of the options."

# Task-specific words baked into a cluster's templates.
_NOUN = {"sent_movie": "review", "sent_product": "review", "sent_food": "review"}
_LANGS = {"tr_to_lumi": ("English", "Lumi", "sentence"),
          "tr_from_lumi": ("Lumi", "English", "sentence"),
          "tr_phrase": ("English", "Lumi", "phrase")}
# (imperative, gerund phrase, undo instruction) of each text transformation.
_OPS = {"tf_reverse": ("Write the words in reverse order.", "writing words in reverse order",
                       "Write the words in reverse order."),
        "tf_upper": ("Write the words in capital letters.", "writing words in capital letters",
                     "Write the words in small letters."),
        "tf_sort": ("Write the words in alphabetical order.", "writing words in alphabetical order",
                    "Write the words in a possible original order.")}
_STRUCT = {"s2t_person": "facts about a person", "s2t_weather": "a weather record",
           "s2t_order": "a restaurant order", "s2t_recall": "a fact about a person",
           "s2t_review": "a review record"}


def _sentiment(task):
  noun = _NOUN[task]
  train = [
      T("opt_1", f"{{text}}\nIs this {noun} positive or negative?\n{PICK}\n{{options_}}",
        "{label}", OPT),
      T("opt_2", f"Read the {noun} and tell its sentiment.\n{{text}}\n{{options_}}",
        "{label}", OPT),
      T("opt_3", f"{noun.capitalize()}: {{text}}\nWhat is the sentiment?\n{{options_}}",
        "{label}", OPT),
      T("noopt_1", f"{{text}}\nIs this {noun} positive or negative?", "{label}", NOOPT),
      T("noopt_2", f"What is the sentiment of this {noun}?\n{{text}}", "{label}", NOOPT),
      T("inv_1", f"Write a {{label}} {noun}.", "{text}", INV),
  ]
  unseen = [
      T("unseen_opt", f"Tell me if the {noun} below is positive or negative.\n{{text}}\n"
        f"{{options_}}", "{label}", OPT),
      T("unseen_noopt", f"{noun.capitalize()}: {{text}}\nPositive or negative?", "{label}", NOOPT),
  ]
  return train, unseen


def _nli(task):
  del task
  train = [
      T("opt_1", "Premise: {premise}\nHypothesis: {hypothesis}\nDoes the premise entail the"
        f" hypothesis?\n{PICK}\n{{options_}}", "{answer}", OPT),
      T("opt_2", "{premise}\nIf this is true, is it also true that {hypothesis}\n{options_}",
        "{answer}", OPT),
      T("opt_3", "Read the text and decide if the sentence follows from it.\nText: {premise}\n"
        "Sentence: {hypothesis}\n{options_}", "{answer}", OPT),
      T("noopt_1", "Premise: {premise}\nHypothesis: {hypothesis}\nDoes the premise entail the"
        " hypothesis? Answer yes, no or it is not possible to tell.", "{answer}", NOOPT),
      T("noopt_2", "{premise}\nDoes it follow that {hypothesis}", "{answer}", NOOPT),
      T("inv_1", "Premise: {premise}\nWrite a hypothesis. Does the premise entail it? {answer}",
        "{hypothesis}", INV),
  ]
  unseen = [
      T("unseen_opt", "Text: {premise}\nIs it true that {hypothesis}\n{options_}",
        "{answer}", OPT),
      T("unseen_noopt", "Given that {premise}\nDoes the hypothesis \"{hypothesis}\" follow?",
        "{answer}", NOOPT),
  ]
  return train, unseen


def _paraphrase(task):
  del task
  train = [
      T("opt_1", "Sentence 1: {sentence1}\nSentence 2: {sentence2}\nDo the two sentences mean"
        f" the same thing?\n{PICK}\n{{options_}}", "{answer}", OPT),
      T("opt_2", "{sentence1}\n{sentence2}\nAre these two sentences paraphrases?\n{options_}",
        "{answer}", OPT),
      T("opt_3", "Do \"{sentence1}\" and \"{sentence2}\" mean the same thing?\n{options_}",
        "{answer}", OPT),
      T("noopt_1", "Sentence 1: {sentence1}\nSentence 2: {sentence2}\nDo the two sentences"
        " mean the same thing? Answer yes or no.", "{answer}", NOOPT),
      T("noopt_2", "Is \"{sentence1}\" a paraphrase of \"{sentence2}\"?", "{answer}", NOOPT),
      T("inv_1", "Sentence 1: {sentence1}\nWrite a sentence 2. Do the two sentences mean the"
        " same thing? {answer}", "{sentence2}", INV),
  ]
  unseen = [
      T("unseen_opt", "Tell me if the two sentences mean the same thing.\n{sentence1}\n"
        "{sentence2}\n{options_}", "{answer}", OPT),
      T("unseen_noopt", "Sentence A: {sentence1}\nSentence B: {sentence2}\nSame meaning, yes"
        " or no?", "{answer}", NOOPT),
  ]
  return train, unseen


def _reading_options(task):
  del task
  train = [
      T("opt_1", f"{{passage}}\nQuestion: {{question}}\n{PICK}\n{{options_}}", "{answer}", OPT),
      T("opt_2", "Read the text and answer the question.\nText: {passage}\n{question}\n{options_}",
        "{answer}", OPT),
      T("opt_3", "Text: {passage}\n{question}\nPick the right answer.\n{options_}", "{answer}", OPT),
      T("noopt_1", "{passage}\nAnswer the question using the text.\nQuestion: {question}",
        "{answer}", NOOPT),
      T("cot_1", "{passage}\n{question}\n{options_}\nThink step by step, then answer.",
        "{rationale} So the answer is {answer}.", COT),
      T("inv_1", "Text: {passage}\nWrite a question about the text whose answer is {answer}.",
        "{question}", INV),
  ]
  unseen = [
      T("unseen_opt", "Using only this text: {passage}\nTell me: {question}\n{options_}",
        "{answer}", OPT),
      T("unseen_noopt", "Question: {question}\nExtract the answer from this text: {passage}",
        "{answer}", NOOPT),
  ]
  return train, unseen


def _reading(task):
  if "options" in collection.TASKS[task].fields:
    return _reading_options(task)
  train = [
      T("noopt_1", "{passage}\nAnswer the question using the text.\nQuestion: {question}",
        "{answer}", NOOPT),
      T("noopt_2", "Read the text and answer the question.\nText: {passage}\n{question}",
        "{answer}", NOOPT),
      T("noopt_3", "Text: {passage}\nQuestion: {question}\nExtract the answer from the text.",
        "{answer}", NOOPT),
      T("cot_1", "{passage}\n{question}\nThink step by step, then answer.",
        "{rationale} So the answer is {answer}.", COT),
      T("cot_2", "Read the text and answer the question. Explain why.\nText: {passage}\n"
        "Question: {question}", "{rationale} So the answer is {answer}.", COT),
      T("inv_1", "Text: {passage}\nWrite a question about the text whose answer is {answer}.",
        "{question}", INV),
  ]
  unseen = [
      T("unseen_noopt", "Using only this text: {passage}\nTell me: {question}", "{answer}", NOOPT),
      T("unseen_noopt_2", "Question: {question}\nExtract the answer from this text: {passage}",
        "{answer}", NOOPT),
  ]
  return train, unseen


def _closed_book(task):
  del task
  train = [
      T("opt_1", f"Question: {{question}}\n{PICK}\n{{options_}}", "{answer}", OPT),
      T("opt_2", "Answer the question from what you know.\n{question}\n{options_}",
        "{answer}", OPT),
      T("opt_3", "{question}\nPick the right answer.\n{options_}", "{answer}", OPT),
      T("noopt_1", "Answer the question from what you know.\nQuestion: {question}",
        "{answer}", NOOPT),
      T("noopt_2", "{question}", "{answer}", NOOPT),
      T("inv_1", "Write a question whose answer is {answer}.", "{question}", INV),
  ]
  unseen = [
      T("unseen_opt", "Tell me the answer to this question.\n{question}\n{options_}",
        "{answer}", OPT),
      T("unseen_noopt", "Q: {question}\nA:", "{answer}", NOOPT),
  ]
  return train, unseen


def _struct_to_text(task):
  what = _STRUCT[task]
  train = [
      T("noopt_1", f"Write a sentence that states {what}.\n{{data}}", "{text}", NOOPT),
      T("noopt_2", "{data}\nWrite this data as a sentence.", "{text}", NOOPT),
      T("noopt_3", "Data: {data}\nDescribe the data in one sentence.", "{text}", NOOPT),
      T("noopt_4", f"Turn {what} into text: {{data}}", "{text}", NOOPT),
      T("inv_1", "Sentence: {text}\nWrite the data in this sentence.", "{data}", INV),
      T("inv_2", "{text}\nExtract the data as key: value pairs.", "{data}", INV),
  ]
  unseen = [
      T("unseen_noopt", f"Here is {what}: {{data}}\nTell me this in a sentence.", "{text}", NOOPT),
      T("unseen_noopt_2", "Describe in one sentence: {data}", "{text}", NOOPT),
  ]
  return train, unseen


def _summarize(task):
  del task
  train = [
      T("noopt_1", "{passage}\nSummarize the text in one sentence.", "{summary}", NOOPT),
      T("noopt_2", "Text: {passage}\nWrite a short summary.", "{summary}", NOOPT),
      T("noopt_3", "Extract the main point of the text.\n{passage}", "{summary}", NOOPT),
      T("noopt_4", "Summarize: {passage}", "{summary}", NOOPT),
      T("inv_1", "Summary: {summary}\nWrite a text with this summary.", "{passage}", INV),
      T("inv_2", "{summary}\nWrite a longer text that says this.", "{passage}", INV),
  ]
  unseen = [
      T("unseen_noopt", "Tell me the main point in one sentence.\nText: {passage}",
        "{summary}", NOOPT),
      T("unseen_noopt_2", "{passage}\nIn short:", "{summary}", NOOPT),
  ]
  return train, unseen


def _translate(task):
  src, tgt, unit = _LANGS[task]
  train = [
      T("noopt_1", f"Translate into {tgt}: {{source}}", "{target}", NOOPT),
      T("noopt_2", f"{src}: {{source}}\n{tgt}:", "{target}", NOOPT),
      T("noopt_3", f"Translate this {src} {unit} into {tgt}.\n{{source}}", "{target}", NOOPT),
      T("noopt_4", f"{{source}}\nWrite this {unit} in {tgt}.", "{target}", NOOPT),
      T("inv_1", f"Translate into {src}: {{target}}", "{source}", INV),
      T("inv_2", f"{tgt}: {{target}}\n{src}:", "{source}", INV),
  ]
  unseen = [
      T("unseen_noopt", f"How do you say this in {tgt}? {{source}}", "{target}", NOOPT),
      T("unseen_noopt_2", f"Tell me the {tgt} for: {{source}}", "{target}", NOOPT),
  ]
  return train, unseen


def _arithmetic(task):
  del task
  train = [
      T("noopt_1", "{question}", "{answer}", NOOPT),
      T("noopt_2", "Answer the question with a number.\n{question}", "{answer}", NOOPT),
      T("cot_1", "{question}\nThink step by step, then answer.",
        "{rationale} So the answer is {answer}.", COT),
      T("cot_2", "Solve the problem. Explain why.\n{question}",
        "{rationale} So the answer is {answer}.", COT),
      T("cot_3", "Question: {question}\nShow the steps.", "{rationale} So the answer is {answer}.",
        COT),
      T("inv_1", "Write a word problem whose answer is {answer}.", "{question}", INV),
  ]
  unseen = [
      T("unseen_noopt", "Tell me the number. {question}", "{answer}", NOOPT),
      T("unseen_cot", "Q: {question}\nExplain why, then answer.",
        "{rationale} So the answer is {answer}.", COT),
  ]
  return train, unseen


def _transform(task):
  op, gerund, undo = _OPS[task]
  train = [
      T("noopt_1", f"{op}\n{{text}}", "{output}", NOOPT),
      T("noopt_2", f"{{text}}\n{op}", "{output}", NOOPT),
      T("noopt_3", f"Words: {{text}}\n{op}", "{output}", NOOPT),
      T("noopt_4", f"Transform the text by {gerund}: {{text}}", "{output}", NOOPT),
      T("inv_1", f"This is the result of {gerund}: {{output}}\nWrite the words it came from.",
        "{text}", INV),
      T("inv_2", f"{undo}\n{{output}}", "{text}", INV),
  ]
  unseen = [
      T("unseen_noopt", f"Tell me the result of {gerund}: {{text}}", "{output}", NOOPT),
      T("unseen_noopt_2", f"Here are some words: {{text}}\n{op}", "{output}", NOOPT),
  ]
  return train, unseen


_BY_CLUSTER = {
    "sentiment": _sentiment, "nli": _nli, "paraphrase": _paraphrase,
    "reading": _reading, "closed_book": _closed_book,
    "struct_to_text": _struct_to_text, "summarize": _summarize,
    "translate": _translate, "arithmetic": _arithmetic, "transform": _transform,
}


def training(task: str) -> list[data.Template]:
  """The templates examples of `task` are trained (and evaluated) with."""
  return _BY_CLUSTER[collection.TASKS[task].cluster](task)[0]


def unseen(task: str) -> list[data.Template]:
  """Instruction wordings never used in training: held-in tasks, new phrasing."""
  return _BY_CLUSTER[collection.TASKS[task].cluster](task)[1]
