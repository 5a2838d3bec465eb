"""The flan_mini world corpus, its SentencePiece vocabulary, and its span-corruption task (stage A).

    docs = corpus.documents(seed=0)                 # list of str, fixed for a seed
    path = corpus.vocabulary()                      # runs/flan_mini_vocab/...model (trained once, cached)
    name = corpus.register(vocabulary=path)         # seqio task "flan_mini_corpus_..." (span corruption)

FLAN tunes pretrained models: the words of its held-out instructions
("premise", "entail", "pick the right answer") had meaning for the model
before instruction tuning. This corpus gives the miniature the same start.
It is text about the same world as the tasks, and it is the same whichever
cluster is held out:

  biographies   every fact-base person in many wordings (facts stated, so
                closed-book QA can recall them; never in the closed-book
                question wordings)
  stories       everyday scenes in which the words of every template and
                option occur with their meaning: reviews and their sentiment,
                what follows from what (and what it is not possible to tell),
                sentences that mean the same thing, picking among options,
                yes/no answers, summaries, data records, word games
  glossary      one definition per instruction word
  Lumi          sentences with their English meaning
  arithmetic    sums and differences told in prose

Stories use their own cast (`CAST`, names no task uses), so no task example
(input with its answer) is in the corpus; `tests/experiments/test_corpus.py`
audits that, and that every template word and option occurs here.
"""
from __future__ import annotations

import hashlib
import os
import random
import re
import string

from experiments.flan_mini import collection
from experiments.flan_mini import world as world_lib

# Names that no task uses (tasks draw from World.people and World.strangers).
CAST = ["Elin", "Oskar", "Tove", "Arvid", "Sigrid", "Nils", "Astrid", "Jonas", "Freja",
        "Henrik", "Ingrid", "Magnus", "Liv", "Sten", "Ylva", "Bertil", "Karin", "Eskil",
        "Runa", "Torvald", "Greta", "Vidar", "Maja", "Hugo"]
# T5's 100 sentinels after the pieces: sentinels count down from the last id.
EXTRA_IDS = 100
# BPE keeps the corpus words whole (unigram split rare ones at this size).
VOCAB_SIZE = 1500
VOCAB_MODEL_TYPE = "bpe"
DEFAULT_VOCAB_DIR = os.path.join("runs", "flan_mini_vocab")
# Bump when the generator changes, so a cached vocabulary is not reused.
VERSION = 1
_WORD = re.compile(r"[A-Za-z]+")

GLOSSARY = {
    "premise": "A premise is a statement that we take as true and reason from.",
    "hypothesis": "A hypothesis is a statement that we want to check against a premise.",
    "entail": "To entail means to make something follow: if the premise entails the"
              " hypothesis, the hypothesis must be true when the premise is true.",
    "follow": "A sentence follows from a text when the text makes it true.",
    "true": "A sentence is true when it says what is so; it is not true when it says what is not so.",
    "possible": "When a text does not say something, it is not possible to tell if it is true.",
    "tell": "To tell is to say or to know for sure, as in: I can tell that it is raining.",
    "paraphrase": "A paraphrase of a sentence says the same thing in other words.",
    "same": "Two sentences mean the same thing when one is true exactly when the other is.",
    "sentiment": "The sentiment of a review is what the writer feels: positive or negative.",
    "positive": "A positive review says something is good, great or superb.",
    "negative": "A negative review says something is bad, awful or dull.",
    "review": "A review is a short text that says what someone thinks of a film, a meal or a thing.",
    "option": "An option is one of the answers you may pick; the options are listed one per line.",
    "pick": "To pick is to choose one of several options.",
    "right": "The right answer is the correct one; the other options are wrong.",
    "answer": "An answer is what you say back to a question.",
    "question": "A question asks for something, like where someone lives or what they work as.",
    "know": "To know a fact is to have it in mind without reading it again.",
    "summary": "A summary says the main point of a text in a few words.",
    "summarize": "To summarize a text is to write its main point in one short sentence.",
    "extract": "To extract is to take a part out of a text, word for word.",
    "translate": "To translate is to say the same thing in another language.",
    "lumi": "Lumi is a small language: the noun comes first, then its adjectives, and the verb last.",
    "english": "English is the language of this text.",
    "data": "Data is a list of key: value pairs, such as name: Elin | city: Tolsa.",
    "key": "In key: value pairs the key names what the value is.",
    "describe": "To describe something is to say what it is like.",
    "step": "To think step by step is to work out one part after another before answering.",
    "explain": "To explain why is to give the reason for an answer.",
    "reason": "A reason says why something is so.",
    "number": "A number counts things: one, two, 3, 4 and so on.",
    "problem": "A word problem is a short story that asks for a number.",
    "solve": "To solve a problem is to find its answer.",
    "reverse": "In reverse order the last word comes first and the first word comes last.",
    "alphabetical": "In alphabetical order words are sorted by their letters, from a to z.",
    "capital": "Capital letters are the big letters, like A B C; small letters are a b c.",
    "transform": "To transform a text is to change it by a rule, such as writing it backwards.",
    "original": "The original is what something was before it was changed.",
    "result": "The result is what you get after doing something.",
    "sentence": "A sentence is a group of words that says one thing and ends with a full stop.",
    "text": "A text is some sentences written one after another.",
    "word": "A word is a small unit of a sentence, like cat or lives.",
    "record": "A record is data about one thing, such as a weather record or a restaurant order.",
    "weather": "The weather can be rain, snow, sun, wind or fog.",
    "degrees": "Degrees measure how warm it is.",
    "restaurant": "A restaurant is a place where guests order food at a table.",
    "order": "An order is what a guest asks for at a restaurant; order is also how things are sorted.",
    "main": "The main point is the most important thing a text says.",
    "point": "The point of a text is what it is about.",
    "short": "A short text has few words.",
    "longer": "A longer text has more words than a short one.",
    "phrase": "A phrase is a few words that go together, such as the big red dog.",
    "meaning": "The meaning of a word is what it stands for.",
    "given": "Given that something is so, we reason from it.",
    "using": "Using only a text means taking the answer from that text alone.",
    "only": "Only means nothing else.",
    "letters": "Letters are what words are written with.",
    "pairs": "Pairs come in twos, like key and value.",
    "below": "Below means after this line: the text below is the one to read.",
    "came": "The original words are the words a result came from.",
    "decide": "To decide is to make up your mind, such as whether a sentence follows or not.",
    "facts": "Facts are things that are true, like the facts about a person.",
    "here": "Here means in this place, as in: here are some words.",
    "me": "Tell me means say it to me.",
    "paraphrases": "Two sentences that mean the same thing are paraphrases.",
    "person": "A person is someone, like Elin or Oskar.",
    "q": "Q is short for question and A for answer, as in Q: how many? A: two.",
    "states": "A sentence that states a fact says it plainly.",
    "steps": "To show the steps is to write each step of the work.",
    "these": "These means the ones here.",
    "turn": "To turn data into text is to write it as sentences.",
    "whose": "Whose asks who something belongs to: a question whose answer is a number asks for a number.",
}


def _r(*parts) -> random.Random:
  return world_lib.rng("corpus", VERSION, *parts)


def _biographies(w: world_lib.World, r: random.Random) -> list[str]:
  # Facts in many wordings, never in the closed-book question forms.
  docs = []
  for n in w.people:
    f = w.facts[n]
    c, j, p, food = f["city"], f["job"], f["pet"], f["food"]
    forms = [
        f"{n} lives in {c}. {n} works as a {j}. {n} has a {p} and likes {food}.",
        f"The {j} {n} lives in {c} with a {p}.",
        f"{n} is a {j}. The home of {n} is in {c}.",
        f"In {c} there is a {j} called {n}. Every day {n} eats {food}.",
        f"{n} keeps a {p}. The {p} lives with {n} in {c}.",
        f"Everyone in {c} knows {n}, the {j} who likes {food}.",
        f"{n} has a {p}. {n} likes {food}. {n} lives in {c}.",
        f"A {j} from {c}, {n} has a {p} at home.",
    ]
    docs.extend(r.sample(forms, 6))
  return docs


def _story(w: world_lib.World, r: random.Random) -> str:
  a, b = r.sample(CAST, 2)
  city, other_city = r.sample(world_lib.CITIES, 2)
  job, pet, food = r.choice(world_lib.JOBS), r.choice(world_lib.PETS), r.choice(world_lib.FOODS)
  adj = r.choice(world_lib.GOOD + world_lib.BAD)
  pol = world_lib.polarity(adj)
  show, obj = r.choice(world_lib.SHOWS), r.choice(world_lib.OBJECTS)
  kind = r.randrange(12)
  if kind == 0:
    return (f"{a} saw a {show} in {city}. It was {adj}. {a} wrote a {pol} review, because"
            f" {adj} is a {pol} word. When {b} read the review, {b} could tell its sentiment.")
  if kind == 1:
    syn, ant = world_lib.synonym(adj, r), world_lib.antonym(adj, r)
    return (f"The {obj} of {a} is {adj}. If this is true, then it is also true that the {obj}"
            f" is {syn}, since {adj} and {syn} mean the same thing. It does not follow that the"
            f" {obj} is {ant}; that is not true. It is not possible to tell whether the {obj} of"
            f" {b} is {adj}.")
  if kind == 2:
    return (f"{a} lives in {city}, where {a} works as a {job}. Taking this as a premise, the hypothesis"
            f" that {a} lives in {city} follows from it: the premise entails the hypothesis. The"
            f" hypothesis that {a} lives in {other_city} does not follow. From the premise it is"
            f" not possible to tell whether {a} has a {pet}.")
  if kind == 3:
    syn = world_lib.synonym(adj, r)
    s1, s2 = f"The {show} was {adj}.", f"The {show} was {syn}."
    return (f"{a} said: \"{s1}\" {b} said: \"{s2}\" The two sentences mean the same thing, so"
            f" one is a paraphrase of the other. But \"{b} gave {a} a {pet}.\" and \"{a} gave"
            f" {b} a {pet}.\" do not mean the same thing.")
  if kind == 4:
    options = r.sample(world_lib.CITIES, 3)
    right = r.choice(options)
    return (f"In a quiz, {a} had to pick one of the options: {', '.join(options)}. The question"
            f" was where the {job} {b} lives. {a} knew that {b} lives in {right}, so {a} picked"
            f" {right}, the right answer. The other options were wrong.")
  if kind == 5:
    answer = r.choice(["yes", "no", "tell"])
    reply = {"yes": f"\"Yes,\" said {a}, \"I have a {pet}.\"",
             "no": f"\"No,\" said {a}, \"I have no {pet}.\"",
             "tell": f"{b} did not know. \"I cannot tell,\" said {b}. \"It is not possible to"
                     f" tell from what you said.\""}[answer]
    return f"{b} asked {a}: \"Do you have a {pet}?\" {reply}"
  if kind == 6:
    day = r.choice(world_lib.DAYS)
    return (f"On {day}, {a} read a long text about {b}, who opened a shop in {city}. Asked to"
            f" summarize it, {a} wrote a short summary in one sentence: {b} opened a shop in"
            f" {city}. That was the main point. {a} did not extract the other words.")
  if kind == 7:
    weather, deg = r.choice(world_lib.WEATHER), r.randint(1, 30)
    return (f"{a} had a weather record as data: city: {city} | weather: {weather} | degrees:"
            f" {deg}. {a} turned the data into a sentence to describe it: {city} gets {weather}"
            f" and {deg} degrees. Each key: value pair became a few words.")
  if kind == 8:
    words = r.sample(world_lib.PETS + world_lib.COLORS + world_lib.FOODS, 3)
    return (f"{a} played a word game. The words were {' '.join(words)}. Written in reverse"
            f" order they are {' '.join(reversed(words))}. In alphabetical order they are"
            f" {' '.join(sorted(words))}. In capital letters they are {' '.join(words).upper()}."
            f" In small letters they stay {' '.join(words)}. The result of each rule is a"
            f" transform of the original words.")
  if kind == 9:
    count, table = r.randint(1, 5), r.randint(1, 20)
    return (f"At a restaurant in {city}, the guest {a} sat at table {table} and ordered"
            f" {count} {food}. The order was written down as guest, dish, count and table.")
  if kind == 10:
    src, dst = r.sample(world_lib.CITIES, 2)
    vehicle, day = r.choice(world_lib.VEHICLES), r.choice(world_lib.DAYS)
    return (f"On {day}, {a} went from {src} to {dst} by {vehicle}. Reading this text, {b}"
            f" could answer the question of how {a} traveled: by {vehicle}. Using only the text,"
            f" {b} could not tell why.")
  thing = r.choice(world_lib.FRUITS)
  n1, n2 = r.sample(range(2, 10), 2)
  c1, c2 = r.sample(world_lib.COLORS, 2)
  return (f"{a} bought {n1} {c1} {thing} and {n2} {c2} cups. What color were the {thing}?"
          f" {c1}. How many cups did {a} buy? {n2}.")


def _lumi(r: random.Random) -> str:
  noun = r.choice(sorted(world_lib.LUMI_NOUNS))
  groups = sorted(r.sample(range(len(world_lib.LUMI_ADJ_GROUPS)), r.randint(0, 2)))
  adjs = [r.choice(world_lib.LUMI_ADJ_GROUPS[g]) for g in groups]
  verb, name = r.choice(sorted(world_lib.LUMI_VERBS)), r.choice(CAST)
  english = f"{name} {verb} {' '.join(['the'] + adjs + [noun])}."
  lumi = world_lib.to_lumi_sentence(name, verb, adjs, noun)
  forms = [f"In Lumi, \"{english}\" is \"{lumi}\"",
           f"The Lumi sentence \"{lumi}\" means \"{english}\" in English.",
           f"To translate \"{english}\" into Lumi, put the noun first, the adjectives after it"
           f" and the verb last: \"{lumi}\"",
           f"In Lumi the word for {noun} is {world_lib.LUMI_NOUNS[noun]}."]
  return r.choice(forms)


def _arithmetic(r: random.Random) -> str:
  name, thing = r.choice(CAST), r.choice(world_lib.FRUITS)
  a, b = r.randint(2, 12), r.randint(1, 12)
  if r.random() < 0.5:
    return (f"{name} had {a} {thing} and got {b} more, so now {name} has {a + b} {thing},"
            f" because {a} + {b} = {a + b}. The number {a + b} is the answer.")
  a = a + b
  return (f"{name} had {a} {thing} and gave away {b}. Step by step: {a} - {b} = {a - b}. So"
          f" {name} now has {a - b} {thing}; that solves the problem.")


def template_words() -> set[str]:
  """Every word (lower case) of every template's literal text, option and options header."""
  from experiments.flan_mini import templates  # pylint: disable=g-import-not-at-top
  from t5tune.data import templates as templates_lib  # pylint: disable=g-import-not-at-top
  words = set()
  for task in collection.TASKS:
    for t in templates.training(task) + templates.unseen(task):
      for text in (t.inputs, t.targets):
        literal = "".join(lit for lit, _, _, _ in string.Formatter().parse(text))
        words.update(w.lower() for w in _WORD.findall(literal))
  options = (collection.NLI_OPTIONS + collection.SENTIMENT_OPTIONS + collection.YES_NO
             + world_lib.CITIES + world_lib.JOBS + world_lib.PETS + world_lib.FOODS)
  for option in options + [templates_lib.OptionsStyle().header]:
    words.update(w.lower() for w in _WORD.findall(option))
  return words


def documents(seed: int = 0, num_stories: int = 4000) -> list[str]:
  """The corpus for a world seed: the same whatever cluster an experiment holds out."""
  w = world_lib.World(seed)
  r = _r(seed)
  docs = _biographies(w, r)
  docs += [_story(w, r) for _ in range(num_stories)]
  docs += [_lumi(r) for _ in range(num_stories // 4)]
  docs += [_arithmetic(r) for _ in range(num_stories // 4)]
  docs += [f"{word.capitalize()}: {text}" for word, text in sorted(GLOSSARY.items())]
  r.shuffle(docs)
  return docs


def fingerprint(seed: int = 0, vocab_size: int = VOCAB_SIZE) -> str:
  text = "\n".join(documents(seed))
  return hashlib.blake2b(f"{VERSION}|{vocab_size}|{VOCAB_MODEL_TYPE}|{text}".encode(), digest_size=6).hexdigest()


def vocabulary(directory: str = DEFAULT_VOCAB_DIR, seed: int = 0,
               vocab_size: int = VOCAB_SIZE) -> str:
  """The SentencePiece model trained on the corpus (`t5tune.data.vocab`); cached by content.

  Returns the .model path; load it with `data.get_vocabulary(path, extra_ids=EXTRA_IDS)`.
  """
  from t5tune.data import vocab as vocab_lib  # pylint: disable=g-import-not-at-top
  prefix = os.path.join(directory, f"flan_mini_corpus_s{seed}_{fingerprint(seed, vocab_size)}")
  path = prefix + ".model"
  if os.path.exists(path):
    return path
  # Written atomically (t5tune.atomic), so an interrupted run never leaves a
  # half-written model that a later run would reuse.
  return vocab_lib.train_sentencepiece(documents(seed), prefix, vocab_size,
                                       model_type=VOCAB_MODEL_TYPE)


def vocabulary_tag(path: str) -> str:
  """Six hex digits of a SentencePiece model's bytes: the same names wherever the file lies."""
  from t5tune.data import templates as templates_lib  # pylint: disable=g-import-not-at-top
  with open(path, "rb") as fh:
    return format(templates_lib.stable_hash(fh.read()) % 16 ** 6, "06x")


def get_vocabulary(path: str):
  """The seqio vocabulary of a corpus-trained model, with T5's sentinels."""
  from t5tune import data  # pylint: disable=g-import-not-at-top
  return data.get_vocabulary(path, extra_ids=EXTRA_IDS)


def register(vocabulary: str = "byte", seed: int = 0, objective=None,
             num_validation: int = 200) -> str:
  """Registers (once) the span-corruption task on the corpus; returns its seqio name.

  `vocabulary`: "byte" or a corpus-trained .model path (given sentinels). The
  task has "train" (the corpus) and "validation" (`num_validation` more
  stories, drawn apart from the corpus).
  """
  import seqio  # pylint: disable=g-import-not-at-top
  from t5tune import data  # pylint: disable=g-import-not-at-top
  vocab = data.get_vocabulary("byte") if vocabulary == "byte" else get_vocabulary(vocabulary)
  if objective is None:
    # ByT5's mean span for bytes (11 byte sentinels), T5's otherwise.
    objective = data.SpanCorruption(mean_noise_span_length=20.0 if vocabulary == "byte" else 3.0)
  tag = "byte" if vocabulary == "byte" else vocabulary_tag(vocabulary)
  name = f"flan_mini_corpus_s{seed}_{tag}_{objective.name}"
  if name in seqio.TaskRegistry.names():
    return name
  w, r = world_lib.World(seed), _r(seed, "validation")
  validation = [_story(w, r) for _ in range(num_validation)]
  data.register_pretraining_task(
      name, source={"train": [{"text": d} for d in documents(seed)],
                    "validation": [{"text": d} for d in validation]},
      objective=objective, vocabulary=vocab, metadata={"corpus_seed": seed})
  return name
