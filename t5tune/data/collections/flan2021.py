"""The FLAN 2021 collection (Wei et al., 2021) as data: its datasets, clusters, TFDS sources and templates.

    from t5tune.data.collections import flan2021
    flan2021.register(data_dir="~/tensorflow_datasets")   # tasks flan2021_*, held-out mixtures
    seqio.get_mixture_or_task("flan2021_heldout_nli_train")

Every entry names a TFDS builder and a version the installed
tensorflow-datasets has (`flan_version` records FLAN's pin where it is gone),
the labelled raw splits (carved by `protocol.carve`), a field mapping from the
raw TFDS record and the template family (`flan2021_templates`). How the
collection is split, capped, mixed and held out is `protocol`'s.
"""
from __future__ import annotations

import re

from t5tune.data import formats as formats_lib
from t5tune.data.collections import flan2021_templates as T
from t5tune.data.collections import heldout
from t5tune.data.collections import protocol

COLLECTION = "flan2021"
CLUSTERS = ("nli", "reading_comprehension", "closed_book_qa", "commonsense", "coreference",
            "paraphrase", "sentiment", "struct_to_text", "summarization", "translation",
            "reading_comprehension_commonsense", "misc")

TRAIN_VALIDATION = {"train": "train", "validation": "validation"}
TRAIN_TEST = {"train": "train", "test": "test"}
ALL_THREE = {"train": "train", "validation": "validation", "test": "test"}


def _text(value) -> str:
  """A string from a decoded record value (nested TFDS dicts keep bytes and numpy scalars)."""
  if getattr(value, "ndim", None) == 0 or (hasattr(value, "item") and not hasattr(value, "ndim")):
    value = value.item()  # a 0-d array or a numpy scalar
  if isinstance(value, bytes):
    return value.decode("utf-8")
  return str(value)


def _texts(values) -> list[str]:
  return [_text(v) for v in (values.tolist() if hasattr(values, "tolist") else values)]


def _first(values) -> str:
  """The first of several reference answers ("" when there are none, which drops the record)."""
  values = _texts(values)
  return values[0] if values else ""


def _pick(options, label) -> str:
  """options[label]; "" (record dropped) for a negative label, e.g. SNLI's missing gold labels."""
  return options[label] if 0 <= label < len(options) else ""


def _labelled(options):
  return lambda r: _pick(options, r["label"])


def _index(choices, label) -> str:
  # For labels stored as plain integers (no ClassLabel): mock data draws any integer, the
  # real data is in range; modulo keeps both readable.
  choices = _texts(choices)
  return choices[label % len(choices)] if choices else ""


def _spec(name, cluster, tfds, fields, templates, **kw):
  return protocol.DatasetSpec(name=name, cluster=cluster, tfds=tfds, fields=fields,
                              templates=templates, **kw)


def _nli(name, tfds, premise, hypothesis, label_names, options, splits=TRAIN_VALIDATION, **kw):
  return _spec(name, "nli", tfds,
               {"premise": lambda r: r[premise], "hypothesis": lambda r: r[hypothesis],
                "answer": _labelled(options)},
               T.NLI, splits=splits, options=options, label_feature="label",
               label_names=label_names, **kw)


_ANLI = dict(label_names=("e", "n", "c"), options=("yes", "it is not possible to tell", "no"),
             splits=ALL_THREE)
_NLI3 = ("entailment", "neutral", "contradiction")
_NLI2 = ("entailment", "not_entailment")

NLI = [
    _nli("anli_r1", "anli/r1:0.1.0", "context", "hypothesis", **_ANLI),
    _nli("anli_r2", "anli/r2:0.1.0", "context", "hypothesis", **_ANLI),
    _nli("anli_r3", "anli/r3:0.1.0", "context", "hypothesis", **_ANLI),
    _nli("cb", "super_glue/cb:1.0.2", "premise", "hypothesis",
         ("entailment", "contradiction", "neutral"), ("yes", "no", "it is not possible to tell")),
    _nli("mnli", "glue/mnli:2.0.0", "premise", "hypothesis", _NLI3,
         ("yes", "it is not possible to tell", "no"),
         splits={"train": "train", "validation": "validation_matched"}),
    _nli("qnli", "glue/qnli:2.0.0", "sentence", "question", _NLI2, ("yes", "no")),
    _nli("rte", "super_glue/rte:1.0.2", "premise", "hypothesis", _NLI2, ("yes", "no")),
    _nli("snli", "snli:1.1.0", "premise", "hypothesis", _NLI3,
         ("yes", "it is not possible to tell", "no"), splits=ALL_THREE),
    _nli("wnli", "glue/wnli:2.0.0", "sentence1", "sentence2", ("not_entailment", "entailment"),
         ("no", "yes")),
]

_YES_NO = ("no", "yes")

READING_COMPREHENSION = [
    _spec("bool_q", "reading_comprehension", "super_glue/boolq:1.0.2",
          {"passage": lambda r: r["passage"], "question": lambda r: r["question"] + "?",
           "answer": _labelled(_YES_NO)},
          T.PASSAGE_CHOICE, options=_YES_NO, label_feature="label", label_names=("False", "True")),
    _spec("drop", "reading_comprehension", "drop:2.0.0",
          {"passage": lambda r: r["passage"], "question": lambda r: r["question"],
           "answer": lambda r: r["answer"]},
          T.PASSAGE_QA, splits={"train": "train", "validation": "dev"}, metrics=("squad",)),
    _spec("multirc", "reading_comprehension", "super_glue/multirc:1.0.2",
          {"passage": lambda r: r["paragraph"],
           "question": lambda r: f"is \"{r['answer']}\" a correct answer to \"{r['question']}\"?",
           "answer": _labelled(_YES_NO)},
          T.PASSAGE_CHOICE, options=_YES_NO, label_feature="label", label_names=("False", "True")),
    _spec("openbookqa", "reading_comprehension", "openbookqa:0.1.0",
          {"passage": lambda r: r["fact1"], "question": lambda r: _text(r["question"]["stem"]),
           "options": lambda r: [_text(r["question"][f"choice_{c}"]) for c in "ABCD"],
           "answer": lambda r: _text(r["question"]["choice_" + "ABCD"[r["answerKey"]]])},
          T.PASSAGE_CHOICE, splits=ALL_THREE, label_feature="answerKey",
          label_names=("A", "B", "C", "D")),
    _spec("squad_v1", "reading_comprehension", "squad/v1.1:3.0.0",
          {"passage": lambda r: r["context"], "question": lambda r: r["question"],
           "answer": lambda r: _first(r["answers"]["text"])},
          T.PASSAGE_QA, metrics=("squad",)),
    _spec("squad_v2", "reading_comprehension", "squad/v2.0:3.0.0",
          {"passage": lambda r: r["context"], "question": lambda r: r["question"],
           "answer": lambda r: _first(r["answers"]["text"]) or "unanswerable"},
          T.PASSAGE_QA, metrics=("squad",)),
]


def _arc(name, config):
  return _spec(name, "closed_book_qa", f"ai2_arc/{config}:1.0.0",
               {"question": lambda r: r["question"],
                "options": lambda r: _texts(r["choices"]["text"]),
                "answer": lambda r: _index(r["choices"]["text"], r["answerKey"])},
               T.CHOICE_QA, splits=ALL_THREE, label_feature="answerKey",
               label_names=("A", "B", "C", "D", "E"))


CLOSED_BOOK_QA = [
    _arc("arc_easy", "ARC-Easy"),
    _arc("arc_challenge", "ARC-Challenge"),
    _spec("natural_questions", "closed_book_qa", "natural_questions_open:1.0.0",
          {"question": lambda r: _text(r["question"]) + "?", "answer": lambda r: _first(r["answer"])},
          T.OPEN_QA, metrics=("squad",)),
    _spec("trivia_qa", "closed_book_qa", "trivia_qa/rc:1.1.0",
          {"question": lambda r: r["question"], "answer": lambda r: _text(r["answer"]["value"])},
          T.OPEN_QA, metrics=("squad",)),
]

COMMONSENSE = [
    _spec("copa", "commonsense", "super_glue/copa:1.0.2",
          {"context": lambda r: f"{r['premise']} What was the {r['question']}?",
           "options": lambda r: [r["choice1"], r["choice2"]],
           "answer": lambda r: [r["choice1"], r["choice2"]][r["label"]]},
          T.CONTINUATION, label_feature="label", label_names=("choice1", "choice2")),
    _spec("hellaswag", "commonsense", "hellaswag:1.1.0",
          {"context": lambda r: r["context"], "options": lambda r: _texts(r["endings"]),
           "answer": lambda r: _index(r["endings"], r["label"])},
          T.CONTINUATION),
    _spec("piqa", "commonsense", "piqa:1.0.0",
          {"context": lambda r: f"Goal: {r['goal']}", "options": lambda r: [r["sol1"], r["sol2"]],
           "answer": lambda r: [r["sol1"], r["sol2"]][r["label"]]},
          T.CONTINUATION, label_feature="label", label_names=("0", "1")),
    _spec("story_cloze", "commonsense", "story_cloze/2016:1.0.0",
          {"context": lambda r: r["context"], "options": lambda r: _texts(r["endings"]),
           "answer": lambda r: _index(r["endings"], r["label"] - 1)},  # AnswerRightEnding: 1 or 2
          # No train split: FLAN trains on the validation split and tests on test.
          T.CONTINUATION, splits={"train": "validation", "test": "test"}),
]

COREFERENCE = [
    _spec("definite_pronoun_resolution", "coreference", "definite_pronoun_resolution:1.1.0",
          {"sentence": lambda r: r["sentence"], "pronoun": lambda r: r["pronoun"],
           "options": lambda r: _texts(r["candidates"]),
           "answer": lambda r: _texts(r["candidates"])[r["label"]]},
          T.COREF, splits=TRAIN_TEST, label_feature="label", label_names=("0", "1")),
    _spec("winogrande", "coreference", "winogrande:1.2.0",
          {"sentence": lambda r: r["sentence"], "pronoun": lambda r: "_",
           "options": lambda r: [r["option1"], r["option2"]],
           "answer": lambda r: [r["option1"], r["option2"]][r["label"]]},
          T.COREF, splits={"train": "train_xl", "validation": "validation"},
          label_feature="label", label_names=("1", "2")),
    _spec("wsc273", "coreference", "wsc273:1.0.0",
          {"sentence": lambda r: r["text"], "pronoun": lambda r: r["pronoun_text"],
           "options": lambda r: [r["option1"], r["option2"]],
           "answer": lambda r: [r["option1"], r["option2"]][r["label"] % 2]},
          # 273 test examples only: an evaluation task, never in a training mixture.
          T.COREF, splits={"test": "test"}),
]


def _pair(name, tfds, first, second, label_names, options, splits=TRAIN_VALIDATION):
  return _spec(name, "paraphrase", tfds,
               {"sentence1": lambda r: r[first], "sentence2": lambda r: r[second],
                "answer": _labelled(options)},
               T.PARAPHRASE, splits=splits, options=options, label_feature="label",
               label_names=label_names)


_STSB_OPTIONS = ("0", "1", "2", "3", "4", "5")

PARAPHRASE = [
    _pair("glue_mrpc", "glue/mrpc:2.0.0", "sentence1", "sentence2",
          ("not_equivalent", "equivalent"), _YES_NO),
    _pair("glue_qqp", "glue/qqp:2.0.0", "question1", "question2",
          ("not_duplicate", "duplicate"), _YES_NO),
    _pair("paws_wiki", "paws_wiki:1.1.0", "sentence1", "sentence2",
          ("different_meaning", "paraphrase"), _YES_NO, splits=ALL_THREE),
    # STS-B: a 0-5 similarity score, rounded to the nearest integer as an option.
    _spec("stsb", "paraphrase", "glue/stsb:2.0.0",
          {"sentence1": lambda r: r["sentence1"], "sentence2": lambda r: r["sentence2"],
           "answer": lambda r: _STSB_OPTIONS[min(5, max(0, round(r["label"])))]},
          T.PARAPHRASE, options=_STSB_OPTIONS),
]

_POS_NEG = ("negative", "positive")


def _sentiment(name, tfds, label_names, splits=TRAIN_TEST, text="text"):
  return _spec(name, "sentiment", tfds,
               {"text": lambda r: r[text], "answer": _labelled(_POS_NEG)},
               T.SENTIMENT, splits=splits, options=_POS_NEG, label_feature="label",
               label_names=label_names)


SENTIMENT = [
    _sentiment("imdb_reviews", "imdb_reviews/plain_text:1.0.0", ("neg", "pos")),
    # Sentiment140: polarity 0 (negative) or 4 (positive), a plain integer.
    _spec("sentiment140", "sentiment", "sentiment140:1.0.0",
          {"text": lambda r: r["text"], "answer": lambda r: _POS_NEG[int(r["polarity"] >= 2)]},
          T.SENTIMENT, splits=TRAIN_TEST, options=_POS_NEG),
    _sentiment("sst2", "glue/sst2:2.0.0", _POS_NEG, splits=TRAIN_VALIDATION, text="sentence"),
    _sentiment("yelp_polarity_reviews", "yelp_polarity_reviews:0.2.0", ("1", "2")),
]


def _gem(name, config, data):
  # FLAN read these from their own TFDS builders (common_gen is gone from TFDS 4.9);
  # GEM's versions carry the same data and a `target` reference.
  return _spec(name, "struct_to_text", f"gem/{config}:1.1.0",
               {"data": data, "text": lambda r: _text(r["target"])},
               T.STRUCT, splits=ALL_THREE, metrics=("rouge",))


STRUCT_TO_TEXT = [
    _gem("common_gen", "common_gen", lambda r: ", ".join(_texts(r["concepts"]))),
    _gem("dart", "dart", lambda r: "; ".join(_texts(r["tripleset"]))),
    _gem("e2e_nlg", "e2e_nlg", lambda r: _text(r["meaning_representation"])),
    _gem("web_nlg_en", "web_nlg_en", lambda r: "; ".join(_texts(r["input"]))),
]


def _summary(name, tfds, document, summary, splits=ALL_THREE, **kw):
  return _spec(name, "summarization", tfds,
               {"document": document if callable(document) else (lambda r: _text(r[document])),
                "summary": summary if callable(summary) else (lambda r: _text(r[summary]))},
               T.SUMMARY, splits=splits, metrics=("rouge",), **kw)


def _joined_values(key):
  return lambda r: " ".join(_texts(r[key]["value"]))


_AG_NEWS = ("World", "Sports", "Business", "Sci/Tech")

SUMMARIZATION = [
    _summary("aeslc", "aeslc:1.0.0", "email_body", "subject_line"),
    _summary("cnn_dailymail", "cnn_dailymail:3.4.0", "article", "highlights",
             flan_version="3.1.0"),
    _summary("gigaword", "gigaword:1.2.0", "document", "summary"),
    _summary("multi_news", "multi_news:2.1.0", "document", "summary"),
    _summary("newsroom", "newsroom:1.0.0", "text", "summary"),
    _summary("opinion_abstracts_idebate", "opinion_abstracts/idebate:1.0.0",
             _joined_values("_argument_sentences"), "_claim", splits={"train": "train"}),
    _summary("opinion_abstracts_rotten_tomatoes", "opinion_abstracts/rotten_tomatoes:1.0.0",
             _joined_values("_critics"), "_critic_consensus", splits={"train": "train"}),
    _summary("samsum", "samsum:1.0.0", "dialogue", "summary"),
    _summary("xsum", "xsum:1.1.0", "document", "summary"),
    # FLAN's wiki_lingua builder is not in TFDS 4.9; GEM's English config is.
    _summary("wiki_lingua_english_en", "gem/wiki_lingua_english_en:1.1.0", "source", "target"),
    # AG News is topic classification (FLAN puts it with summarisation: headline-like labels).
    _spec("ag_news_subset", "summarization", "ag_news_subset:1.0.0",
          {"text": lambda r: f"{r['title']}\n{r['description']}", "answer": _labelled(_AG_NEWS)},
          T.TOPIC, splits=TRAIN_TEST, options=_AG_NEWS, label_feature="label",
          label_names=_AG_NEWS),
]

_LANGUAGES = {"fr": "French", "de": "German", "tr": "Turkish", "cs": "Czech", "fi": "Finnish",
              "ro": "Romanian", "ru": "Russian"}


def _wmt(year, code):
  return _spec(f"wmt{year}_translate_{code}_en", "translation",
               f"wmt{year}_translate/{code}-en:1.0.0",
               {"source": lambda r: r[code], "target": lambda r: r["en"]},
               T.translation(_LANGUAGES[code], "English"), splits=ALL_THREE, metrics=("bleu",))


TRANSLATION = [_wmt(14, "fr")] + [_wmt(16, c) for c in ("de", "tr", "cs", "fi", "ro", "ru")] + [
    # ParaCrawl has a train split only: validation is carved from its end, and evaluation reads it.
    _spec("para_crawl_enes", "translation", "para_crawl/enes:1.2.0",
          {"source": lambda r: r["en"], "target": lambda r: r["es"]},
          T.translation("English", "Spanish"), splits={"train": "train"}, metrics=("bleu",)),
]

READING_COMPREHENSION_COMMONSENSE = [
    _spec("cosmos_qa", "reading_comprehension_commonsense", "cosmos_qa:1.0.0",
          {"passage": lambda r: r["context"], "question": lambda r: r["question"],
           "options": lambda r: [r[f"answer{i}"] for i in range(4)],
           "answer": lambda r: r[f"answer{r['label']}"]},
          T.PASSAGE_CHOICE, label_feature="label", label_names=("0", "1", "2", "3")),
    _spec("record", "reading_comprehension_commonsense", "super_glue/record:1.0.2",
          {"passage": lambda r: r["passage"].replace("@highlight\n", "- "),
           "question": lambda r: f"what should \"@placeholder\" be in: {r['query']}",
           # The answer is one of the entities in the real data; the union also holds on mock data.
           "options": lambda r: sorted(set(_texts(r["entities"]) + _texts(r["answers"])[:1])),
           "answer": lambda r: _first(r["answers"])},
          T.PASSAGE_CHOICE),
]

_TREC = ("DESC", "ENTY", "ABBR", "HUM", "NUM", "LOC")
_TREC_WORDS = ("description", "entity", "abbreviation", "person", "number", "location")

MISC = [
    _spec("trec", "misc", "trec:1.0.0",
          {"text": lambda r: r["text"], "answer": lambda r: _pick(_TREC_WORDS, r["label-coarse"])},
          T.TOPIC, splits=TRAIN_TEST, options=_TREC_WORDS, label_feature="label-coarse",
          label_names=_TREC),
    _spec("cola", "misc", "glue/cola:2.0.0",
          {"text": lambda r: r["sentence"] + " (is this grammatical?)",
           "answer": _labelled(("unacceptable", "acceptable"))},
          T.TOPIC, options=("unacceptable", "acceptable"), label_feature="label",
          label_names=("unacceptable", "acceptable")),
    _spec("wic", "misc", "super_glue/wic:1.0.2",
          {"sentence1": lambda r: r["sentence1"],
           "sentence2": lambda r: f"{r['sentence2']} (the word \"{r['word']}\")",
           "answer": _labelled(_YES_NO)},
          T.PARAPHRASE, options=_YES_NO, label_feature="label", label_names=("False", "True")),
    _spec("coqa", "misc", "coqa:1.0.0",
          {"passage": lambda r: r["story"], "question": lambda r: _first(r["questions"]),
           "answer": lambda r: _first(r["answers"]["input_text"])},
          T.PASSAGE_QA, splits=TRAIN_TEST, metrics=("squad",)),
    _spec("quac", "misc", "quac:1.0.0",
          {"passage": lambda r: f"{r['title']}: {r['context']}", "question": lambda r: r["question"],
           "answer": lambda r: _first(r["answers"]["text"])},
          T.PASSAGE_QA, metrics=("squad",)),
    _spec("math_dataset", "misc", "math_dataset/algebra__linear_1d:1.0.0",
          {"question": lambda r: r["question"], "answer": lambda r: r["answer"]},
          T.OPEN_QA, splits=TRAIN_TEST, metrics=("accuracy",)),
]

_PUNCT = re.compile(r"[^\w\s']")


def unpunctuated(text: str) -> str:
  """`text` lower-cased, every punctuation mark but apostrophes removed, spaces collapsed."""
  return " ".join(_PUNCT.sub(" ", text).lower().split())


# FLAN's fix_punct is derived from other text. The text here: MNLI's premises (varied,
# punctuated English sentences), so it carries MNLI's overlap (OVERLAPS) and is dropped from
# training whenever MNLI is evaluated.
MISC.append(_spec(
    "fix_punct", "misc", "glue/mnli:2.0.0",
    {"text": lambda r: r["premise"], "unpunctuated": lambda r: unpunctuated(r["premise"])},
    T.FIX_PUNCT, splits={"train": "train", "validation": "validation_matched"},
    metrics=("bleu",)))

DATASETS = (NLI + READING_COMPREHENSION + CLOSED_BOOK_QA + COMMONSENSE + COREFERENCE + PARAPHRASE
            + SENTIMENT + STRUCT_TO_TEXT + SUMMARIZATION + TRANSLATION
            + READING_COMPREHENSION_COMMONSENSE + MISC)

# Datasets whose data shares a source with another's, so that training on one sees the
# other's test data. A held-out cluster's training mixture drops every dataset that
# overlaps one of the cluster's (`heldout.training_datasets`).
OVERLAPS = (
    heldout.Overlap("qnli", ("squad_v1", "squad_v2"),
                    "QNLI pairs SQuAD v1.1 questions with sentences of their Wikipedia paragraphs"
                    " (SQuAD v2.0 contains every v1.1 question)"),
    heldout.Overlap("wnli", ("wsc273",),
                    "WNLI is the Winograd Schema Challenge rewritten as sentence pairs"),
    heldout.Overlap("record", ("cnn_dailymail",),
                    "ReCoRD's passages are CNN/Daily Mail articles and its queries their highlights"),
    heldout.Overlap("dart", ("e2e_nlg", "web_nlg_en"),
                    "DART merges the E2E and WebNLG data with its table-derived triples"),
    heldout.Overlap("fix_punct", ("mnli",), "fix_punct's texts are MNLI's premises (one source, two tasks)"),
    heldout.Overlap("hellaswag", ("wiki_lingua_english_en",),
                    "HellaSwag's WikiHow contexts and WikiLingua's articles both come from WikiHow"),
)

# FLAN 2021 datasets not registered here, and why.
MISSING: dict[str, str] = {}


def register(data_dir: str | None = None, **kwargs) -> list[str]:
  """Registers every FLAN 2021 task (TFDS from `data_dir`) and the held-out mixtures; see `protocol.register`.

  Also the Flan 2022 formats variant of each (`formats=None` leaves it out).
  """
  kwargs.setdefault("overlaps", OVERLAPS)
  kwargs.setdefault("formats", formats_lib.Flan2022())
  return protocol.register(COLLECTION, DATASETS, CLUSTERS, data_dir=data_dir, **kwargs)
