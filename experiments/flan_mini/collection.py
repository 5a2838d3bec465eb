"""The flan_mini collection: 30 generated tasks in 10 clusters, records by seed and split.

    records = collection.generate("sent_movie", seed=0)   # {split: [record, ...]}
    collection.TASKS["sent_movie"].cluster                 # "sentiment"

Each task's generator draws one record at a time from the seeded `World`.
A record's split is decided by a hash of its group key (the record itself,
or for closed-book QA the fact it asks about), so the splits never share an
example and are the same whatever the split sizes. Cluster membership is the
`cluster` field of a `TaskSpec`: holding out a cluster is a config value.

Clusters mirror FLAN's kinds in miniature:
  sentiment, nli, paraphrase, reading (extractive RC over a generated
  passage), closed_book (QA over the fact base that `struct_to_text` states
  in training), struct_to_text, summarize (extraction), translate (into and
  out of Lumi), arithmetic (word problems with rationales) and transform.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import random
from typing import Any, Callable

from experiments.flan_mini import world as world_lib

SPLITS = ("train", "validation", "test")
# Exemplars of the few-shot variants (`tasks.py`: TASK_fs2, TASK_eval_fs2).
FEW_SHOT_K = 2
# Of 100 hash buckets: test gets 20, validation 10, train the rest.
_TEST_BUCKETS = 20
_VALIDATION_BUCKETS = 10
# 400 test records per task: >= 1,000 per held-out cluster where the task
# spaces allow (sentiment's three tasks hold 800 distinct test records).
DEFAULT_SIZES = {"train": 800, "validation": 50, "test": 400}

SENTIMENT_OPTIONS = ["positive", "negative"]
NLI_OPTIONS = ["yes", "no", "it is not possible to tell"]
YES_NO = ["yes", "no"]

Record = dict[str, Any]
Generator = Callable[[world_lib.World, random.Random], tuple[str, Record]]


@dataclasses.dataclass(frozen=True)
class TaskSpec:
  """One generated task: its cluster, record fields and generator."""
  name: str
  cluster: str
  fields: tuple[str, ...]
  generate: Generator
  description: str


TASKS: dict[str, TaskSpec] = {}
CLUSTER_FIELDS = {
    "sentiment": ("text", "options", "label"),
    "nli": ("premise", "hypothesis", "options", "answer"),
    "paraphrase": ("sentence1", "sentence2", "options", "answer"),
    "reading": ("passage", "question", "answer", "rationale"),
    "closed_book": ("question", "options", "answer"),
    "struct_to_text": ("data", "text"),
    "summarize": ("passage", "summary"),
    "translate": ("source", "target"),
    "arithmetic": ("question", "rationale", "answer"),
    "transform": ("text", "output"),
}
CLUSTERS = tuple(CLUSTER_FIELDS)


def cluster_tasks(clusters) -> list[str]:
  """The collection's tasks of `clusters`, in definition order."""
  return [t for t, spec in TASKS.items() if spec.cluster in clusters]


def _task(name: str, cluster: str, description: str, fields: tuple[str, ...] | None = None):
  def register(fn: Generator) -> Generator:
    TASKS[name] = TaskSpec(name, cluster, fields or CLUSTER_FIELDS[cluster], fn, description)
    return fn
  return register


def _key(record: Record) -> str:
  return json.dumps(record, sort_keys=True)


def _options(r: random.Random, answer: str, pool: list[str], n: int = 4) -> list[str]:
  others = r.sample([p for p in pool if p != answer], n - 1)
  options = others + [answer]
  r.shuffle(options)
  return options


# -- sentiment ----------------------------------------------------------------

def _sentiment(text: str, adjective: str) -> tuple[str, Record]:
  record = {"text": text, "options": list(SENTIMENT_OPTIONS),
            "label": world_lib.polarity(adjective)}
  return _key(record), record


@_task("sent_movie", "sentiment", "a one-sentence review of a show")
def _sent_movie(w, r):
  adj = r.choice(world_lib.GOOD + world_lib.BAD)
  show, name = r.choice(world_lib.SHOWS), r.choice(w.strangers)
  return _sentiment(f"The {show} with {name} was {adj}.", adj)


@_task("sent_product", "sentiment", "a review of a bought object")
def _sent_product(w, r):
  adj = r.choice(world_lib.GOOD + world_lib.BAD)
  color, obj = r.choice(world_lib.COLORS), r.choice(world_lib.OBJECTS)
  return _sentiment(f"I bought a {color} {obj}. It is {adj}.", adj)


@_task("sent_food", "sentiment", "a review of a meal in a city")
def _sent_food(w, r):
  adj = r.choice(world_lib.GOOD + world_lib.BAD)
  food, city = r.choice(world_lib.FOODS), r.choice(world_lib.CITIES)
  return _sentiment(f"The {food} we had in {city} tasted {adj}.", adj)


# -- natural-language inference -----------------------------------------------

def _nli(premise: str, hypothesis: str, answer: str) -> tuple[str, Record]:
  record = {"premise": premise, "hypothesis": hypothesis,
            "options": list(NLI_OPTIONS), "answer": answer}
  return _key(record), record


@_task("nli_facts", "nli", "a two-fact premise and a fact hypothesis")
def _nli_facts(w, r):
  name = r.choice(w.strangers)
  city, job = r.choice(world_lib.CITIES), r.choice(world_lib.JOBS)
  premise = f"{name} lives in {city} and works as a {job}."
  case = r.randrange(3)
  if case == 0:
    hyp = r.choice([f"{name} lives in {city}.", f"{name} works as a {job}."])
    return _nli(premise, hyp, "yes")
  if case == 1:
    other_city = r.choice([c for c in world_lib.CITIES if c != city])
    other_job = r.choice([j for j in world_lib.JOBS if j != job])
    hyp = r.choice([f"{name} lives in {other_city}.", f"{name} works as a {other_job}."])
    return _nli(premise, hyp, "no")
  hyp = r.choice([f"{name} has a {r.choice(world_lib.PETS)}.",
                  f"{name} likes {r.choice(world_lib.FOODS)}."])
  return _nli(premise, hyp, "it is not possible to tell")


@_task("nli_count", "nli", "a count in the premise, a comparison in the hypothesis")
def _nli_count(w, r):
  name, thing = r.choice(w.strangers), r.choice(world_lib.FRUITS)
  n = r.randint(2, 12)
  premise = f"{name} has {n} {thing}."
  case = r.randrange(3)
  if case == 2:
    other = r.choice([x for x in w.strangers if x != name])
    return _nli(premise, f"{other} has more than {r.randint(1, 12)} {thing}.",
                "it is not possible to tell")
  m = r.randint(1, n - 1) if case == 0 else r.randint(n, 14)
  return _nli(premise, f"{name} has more than {m} {thing}.", "yes" if m < n else "no")


@_task("nli_quality", "nli", "an adjective in the premise, a synonym or antonym in the hypothesis")
def _nli_quality(w, r):
  obj = r.choice(world_lib.OBJECTS)
  adj = r.choice(world_lib.GOOD + world_lib.BAD)
  premise = f"The {obj} is {adj}."
  case = r.randrange(3)
  if case == 0:
    return _nli(premise, f"The {obj} is {world_lib.synonym(adj, r)}.", "yes")
  if case == 1:
    return _nli(premise, f"The {obj} is {world_lib.antonym(adj, r)}.", "no")
  other = r.choice([o for o in world_lib.OBJECTS if o != obj])
  return _nli(premise, f"The {other} is {r.choice(world_lib.GOOD + world_lib.BAD)}.",
              "it is not possible to tell")


# -- paraphrase detection -----------------------------------------------------

def _para(s1: str, s2: str, same: bool) -> tuple[str, Record]:
  record = {"sentence1": s1, "sentence2": s2, "options": list(YES_NO),
            "answer": "yes" if same else "no"}
  return _key(record), record


@_task("para_quality", "paraphrase", "the same sentence with a synonym or an antonym")
def _para_quality(w, r):
  show, adj = r.choice(world_lib.SHOWS), r.choice(world_lib.GOOD + world_lib.BAD)
  same = r.random() < 0.5
  other = world_lib.synonym(adj, r) if same else world_lib.antonym(adj, r)
  return _para(f"The {show} was {adj}.", f"The {show} was {other}.", same)


@_task("para_order", "paraphrase", "word order that keeps or swaps the roles")
def _para_order(w, r):
  a, b = r.sample(w.strangers, 2)
  thing = r.choice(world_lib.PETS + world_lib.OBJECTS)
  s1 = f"{a} gave {b} a {thing}."
  same = r.random() < 0.5
  s2 = f"{b} got a {thing} from {a}." if same else f"{b} gave {a} a {thing}."
  return _para(s1, s2, same)


@_task("para_question", "paraphrase", "two questions about a person")
def _para_question(w, r):
  name = r.choice(w.strangers)
  forms = {"city": [f"Where does {name} live?", f"In which city does {name} live?"],
           "job": [f"What is the job of {name}?", f"What does {name} work as?"],
           "pet": [f"Which pet does {name} have?", f"What animal does {name} keep?"]}
  attr = r.choice(sorted(forms))
  same = r.random() < 0.5
  s1 = r.choice(forms[attr])
  if same:
    s2 = [f for f in forms[attr] if f != s1][0]
  else:
    s2 = r.choice(forms[r.choice([a for a in forms if a != attr])])
  return _para(s1, s2, same)


# -- extractive reading comprehension ------------------------------------------

def _reading(passage, question, answer, evidence) -> tuple[str, Record]:
  record = {"passage": passage, "question": question, "answer": answer,
            "rationale": f"The text says: {evidence}"}
  return _key(record), record


@_task("rc_people", "reading", "facts about strangers; a question about one")
def _rc_people(w, r):
  a, b = r.sample(w.strangers, 2)
  ca, cb = r.sample(world_lib.CITIES, 2)
  ja, jb = r.sample(world_lib.JOBS, 2)
  sents = [f"{a} lives in {ca}.", f"{b} lives in {cb}.", f"{a} is a {ja}.", f"{b} is a {jb}."]
  r.shuffle(sents)
  who, i = r.choice([(a, 0), (b, 1)])
  if r.random() < 0.5:
    question, answer, ev = f"Where does {who} live?", (ca, cb)[i], f"{who} lives in {(ca, cb)[i]}."
  else:
    question, answer, ev = f"What is the job of {who}?", (ja, jb)[i], f"{who} is a {(ja, jb)[i]}."
  return _reading(" ".join(sents), question, answer, ev)


@_task("rc_trip", "reading", "a trip: when, where to and how")
def _rc_trip(w, r):
  name, day = r.choice(w.strangers), r.choice(world_lib.DAYS)
  src, dst = r.sample(world_lib.CITIES, 2)
  vehicle = r.choice(world_lib.VEHICLES)
  passage = f"On {day}, {name} went from {src} to {dst} by {vehicle}."
  question, answer, evidence = r.choice([
      (f"On which day did {name} travel?", day, f"{name} went on {day}."),
      (f"Where did {name} go to?", dst, f"{name} went to {dst}."),
      (f"Where did {name} start?", src, f"{name} went from {src}."),
      (f"How did {name} travel?", vehicle, f"{name} went by {vehicle}.")])
  return _reading(passage, question, answer, evidence)


@_task("rc_shop", "reading", "a shopping list; a question about a colour or a count")
def _rc_shop(w, r):
  name = r.choice(w.strangers)
  (t1, t2), (c1, c2) = r.sample(world_lib.FRUITS, 2), r.sample(world_lib.COLORS, 2)
  n1, n2 = r.randint(2, 9), r.randint(2, 9)
  passage = f"{name} bought {n1} {c1} {t1} and {n2} {c2} {t2}."
  question, answer, evidence = r.choice([
      (f"What color were the {t1}?", c1, f"{name} bought {c1} {t1}."),
      (f"What color were the {t2}?", c2, f"{name} bought {c2} {t2}."),
      (f"How many {t1} did {name} buy?", str(n1), f"{name} bought {n1} {t1}."),
      (f"How many {t2} did {name} buy?", str(n2), f"{name} bought {n2} {t2}.")])
  return _reading(passage, question, answer, evidence)


CANNOT_TELL = NLI_OPTIONS[2]


@_task("rc_verify", "reading", "is a statement true by the text: yes, no or cannot tell")
def _rc_verify(w, r):
  # Teaches yes / no / "it is not possible to tell" as answers outside nli,
  # so the third nli answer is a trained target when nli is held out.
  name = r.choice(w.strangers)
  city, job = r.choice(world_lib.CITIES), r.choice(world_lib.JOBS)
  passage = f"{name} is a {job} from {city}."
  case = r.randrange(3)
  if case == 0:
    claim = r.choice([f"{name} is from {city}", f"{name} is a {job}"])
    answer, rationale = "yes", f"The text says: {claim}."
  elif case == 1:
    other = r.choice([c for c in world_lib.CITIES if c != city])
    claim, answer = f"{name} is from {other}", "no"
    rationale = f"The text says: {name} is from {city}."
  else:
    claim, answer = f"{name} keeps a {r.choice(world_lib.PETS)}", CANNOT_TELL
    rationale = f"The text does not say which pet {name} keeps."
  record = {"passage": passage, "question": f"Is it true that {claim}?", "answer": answer,
            "rationale": rationale}
  return _key(record), record


@_task("rc_pick", "reading", "a question with options that change per example",
       fields=("passage", "question", "options", "answer", "rationale"))
def _rc_pick(w, r):
  # Options drawn per example (as in closed-book QA), so picking among
  # changing options is trained outside closed_book.
  name = r.choice(w.strangers)
  food, pet = r.choice(world_lib.FOODS), r.choice(world_lib.PETS)
  passage = f"{name} cooked {food} for the {pet}."
  question, answer, pool = r.choice([(f"What did {name} cook?", food, world_lib.FOODS),
                                     (f"Who got the {food}?", f"the {pet}",
                                      [f"the {p}" for p in world_lib.PETS])])
  record = {"passage": passage, "question": question, "options": _options(r, answer, pool),
            "answer": answer, "rationale": f"The text says: {passage}"}
  return _key(record), record


# -- closed-book QA over the fact base ----------------------------------------

def _closed_book(w, r, attribute, pool, questions):
  name = r.choice(w.people)
  answer = w.facts[name][attribute]
  record = {"question": r.choice(questions).format(name=name),
            "options": _options(r, answer, pool), "answer": answer}
  # Split by the fact, not the wording: a test fact is never asked in train.
  return f"{name}/{attribute}", record


@_task("cb_city", "closed_book", "where a person of the fact base lives")
def _cb_city(w, r):
  return _closed_book(w, r, "city", world_lib.CITIES,
                      ["Where does {name} live?", "In which city does {name} live?"])


@_task("cb_job", "closed_book", "the job of a person of the fact base")
def _cb_job(w, r):
  return _closed_book(w, r, "job", world_lib.JOBS,
                      ["What is the job of {name}?", "What does {name} work as?"])


@_task("cb_pet", "closed_book", "the pet of a person of the fact base")
def _cb_pet(w, r):
  return _closed_book(w, r, "pet", world_lib.PETS,
                      ["Which pet does {name} have?", "What animal does {name} keep?"])


# -- struct to text -----------------------------------------------------------

def _s2t(data: str, text: str) -> tuple[str, Record]:
  record = {"data": data, "text": text}
  return _key(record), record


@_task("s2t_person", "struct_to_text", "facts of the fact base as a sentence")
def _s2t_person(w, r):
  name = r.choice(w.people)
  a1, a2 = sorted(r.sample(world_lib.ATTRIBUTES, 2), key=world_lib.ATTRIBUTES.index)
  f = w.facts[name]
  data = f"name: {name} | {a1}: {f[a1]} | {a2}: {f[a2]}"
  text = w.fact_sentence(name, a1)[:-1] + " and " + _lower_first(
      w.fact_sentence(name, a2).replace(name + " ", "", 1))
  return _s2t(data, text)


@_task("s2t_recall", "struct_to_text", "a fact of the fact base recalled from the name alone")
def _s2t_recall(w, r):
  # Recall of stored facts (not copying) outside closed_book, on half of the
  # people only: closed-book questions about the other half need facts that
  # only the corpus states.
  name = r.choice(recall_people(w))
  attribute = r.choice(world_lib.ATTRIBUTES)
  return _s2t(f"name: {name} | {attribute}: ?", w.fact_sentence(name, attribute))


def recall_people(w: world_lib.World) -> list[str]:
  """The fact-base people whose facts s2t_recall trains to recall (every second one)."""
  return w.people[::2]


@_task("s2t_review", "struct_to_text", "a review record with its verdict as a sentence")
def _s2t_review(w, r):
  # positive / negative occur in training data (and as targets of the
  # inverted templates) outside the sentiment cluster.
  adj = r.choice(world_lib.GOOD + world_lib.BAD)
  dish, city = r.choice(world_lib.FOODS), r.choice(world_lib.CITIES)
  data = f"dish: {dish} | city: {city} | verdict: {world_lib.polarity(adj)}"
  return _s2t(data, f"The {dish} in {city} was {adj}.")


def _lower_first(text: str) -> str:
  return text[:1].lower() + text[1:]


@_task("s2t_weather", "struct_to_text", "a weather record as a sentence")
def _s2t_weather(w, r):
  city, day = r.choice(world_lib.CITIES), r.choice(world_lib.DAYS)
  weather, degrees = r.choice(world_lib.WEATHER), r.randint(1, 30)
  data = f"city: {city} | day: {day} | weather: {weather} | degrees: {degrees}"
  return _s2t(data, f"On {day} {city} gets {weather} and {degrees} degrees.")


@_task("s2t_order", "struct_to_text", "a restaurant order as a sentence")
def _s2t_order(w, r):
  name, food = r.choice(w.strangers), r.choice(world_lib.FOODS)
  count, table = r.randint(1, 5), r.randint(1, 20)
  data = f"guest: {name} | dish: {food} | count: {count} | table: {table}"
  return _s2t(data, f"{name} ordered {count} {food} at table {table}.")


# -- summarisation-like extraction ---------------------------------------------

def _summ(passage: str, summary: str) -> tuple[str, Record]:
  record = {"passage": passage, "summary": summary}
  return _key(record), record


@_task("sum_news", "summarize", "a short news item; the summary is its main event")
def _sum_news(w, r):
  name, city = r.choice(w.strangers), r.choice(world_lib.CITIES)
  job, day = r.choice(world_lib.JOBS), r.choice(world_lib.DAYS)
  adj = r.choice(world_lib.GOOD)
  passage = (f"On {day}, the {job} {name} opened a shop in {city}. "
             f"People said it was {adj}.")
  return _summ(passage, f"{name} opened a shop in {city}.")


@_task("sum_compress", "summarize", "a sentence with filler; the summary drops it")
def _sum_compress(w, r):
  name, obj, city = r.choice(w.strangers), r.choice(world_lib.OBJECTS), r.choice(world_lib.CITIES)
  day, weather = r.choice(world_lib.DAYS), r.choice(world_lib.WEATHER)
  passage = (f"It was reported that on a {world_lib.WEATHER_ADJ[weather]} {day}, {name},"
             f" who was tired, found a {obj} in {city}.")
  return _summ(passage, f"{name} found a {obj} in {city}.")


@_task("sum_topic", "summarize", "three sentences about one person; the summary names the topic")
def _sum_topic(w, r):
  name, other = r.sample(w.strangers, 2)
  food, pet = r.choice(world_lib.FOODS), r.choice(world_lib.PETS)
  sents = [f"{name} likes {food}.", f"{name} has a {pet}.", f"{other} met {name} once."]
  r.shuffle(sents)
  return _summ(" ".join(sents), f"It is about {name}.")


# -- translation into and out of Lumi ------------------------------------------

def _lumi_parts(r):
  noun = r.choice(sorted(world_lib.LUMI_NOUNS))
  groups = sorted(r.sample(range(len(world_lib.LUMI_ADJ_GROUPS)), r.randint(0, 2)))
  return noun, [r.choice(world_lib.LUMI_ADJ_GROUPS[g]) for g in groups]


def _english_phrase(adjs, noun):
  return " ".join(["the"] + adjs + [noun])


def _trans(source: str, target: str) -> tuple[str, Record]:
  record = {"source": source, "target": target}
  return _key(record), record


@_task("tr_to_lumi", "translate", "an English sentence into Lumi")
def _tr_to_lumi(w, r):
  noun, adjs = _lumi_parts(r)
  verb, name = r.choice(sorted(world_lib.LUMI_VERBS)), r.choice(w.strangers)
  english = f"{name} {verb} {_english_phrase(adjs, noun)}."
  return _trans(english, world_lib.to_lumi_sentence(name, verb, adjs, noun))


@_task("tr_from_lumi", "translate", "a Lumi sentence into English")
def _tr_from_lumi(w, r):
  noun, adjs = _lumi_parts(r)
  verb, name = r.choice(sorted(world_lib.LUMI_VERBS)), r.choice(w.strangers)
  english = f"{name} {verb} {_english_phrase(adjs, noun)}."
  return _trans(world_lib.to_lumi_sentence(name, verb, adjs, noun), english)


@_task("tr_phrase", "translate", "an English noun phrase into Lumi")
def _tr_phrase(w, r):
  noun, adjs = _lumi_parts(r)
  return _trans(_english_phrase(adjs, noun), world_lib.to_lumi_phrase(adjs, noun))


# -- arithmetic word problems with rationales ------------------------------------

def _math(question: str, rationale: str, answer: int) -> tuple[str, Record]:
  record = {"question": question, "rationale": rationale, "answer": str(answer)}
  return _key(record), record


@_task("math_add", "arithmetic", "has some, gets more")
def _math_add(w, r):
  name, thing = r.choice(w.strangers), r.choice(world_lib.FRUITS)
  a, b = r.randint(2, 12), r.randint(1, 12)
  return _math(f"{name} has {a} {thing} and gets {b} more. How many {thing} now?",
               f"{a} + {b} = {a + b}.", a + b)


@_task("math_sub", "arithmetic", "has some, gives some away")
def _math_sub(w, r):
  name, thing = r.choice(w.strangers), r.choice(world_lib.FRUITS)
  a = r.randint(3, 20)
  b = r.randint(1, a - 1)
  return _math(f"{name} has {a} {thing} and gives away {b}. How many {thing} now?",
               f"{a} - {b} = {a - b}.", a - b)


@_task("math_two_step", "arithmetic", "gets some, then gives some away")
def _math_two_step(w, r):
  name, thing = r.choice(w.strangers), r.choice(world_lib.FRUITS)
  a, b = r.randint(2, 9), r.randint(1, 9)
  c = r.randint(1, a + b - 1)
  return _math(f"{name} has {a} {thing}, gets {b} and gives away {c}. How many now?",
               f"{a} + {b} = {a + b}. {a + b} - {c} = {a + b - c}.", a + b - c)


# -- text transformations -------------------------------------------------------

def _words(r: random.Random) -> list[str]:
  pool = (world_lib.PETS + world_lib.FOODS + world_lib.COLORS + world_lib.OBJECTS
          + world_lib.JOBS)
  return r.sample(pool, r.randint(3, 5))


def _transform(words: list[str], output: str) -> tuple[str, Record]:
  record = {"text": " ".join(words), "output": output}
  return _key(record), record


@_task("tf_reverse", "transform", "the words in reverse order")
def _tf_reverse(w, r):
  words = _words(r)
  return _transform(words, " ".join(reversed(words)))


@_task("tf_upper", "transform", "the words in capital letters")
def _tf_upper(w, r):
  words = _words(r)
  return _transform(words, " ".join(words).upper())


@_task("tf_sort", "transform", "the words in alphabetical order")
def _tf_sort(w, r):
  words = _words(r)
  return _transform(words, " ".join(sorted(words)))


# -- generation and splits ------------------------------------------------------

def split_of(group_key: str) -> str:
  """The split a group key belongs to (stable across seeds and sizes)."""
  digest = hashlib.blake2b(group_key.encode(), digest_size=8).digest()
  bucket = int.from_bytes(digest, "little") % 100
  if bucket < _TEST_BUCKETS:
    return "test"
  if bucket < _TEST_BUCKETS + _VALIDATION_BUCKETS:
    return "validation"
  return "train"


def generate(task: str, seed: int, sizes: dict[str, int] | None = None,
             max_draws: int | None = None) -> dict[str, list[Record]]:
  """Up to sizes[split] distinct records per split; fewer if the task's space is small."""
  spec = TASKS[task]
  sizes = dict(DEFAULT_SIZES if sizes is None else sizes)
  w = world_lib.World(seed)
  r = world_lib.rng("records", task, seed)
  out = {s: [] for s in SPLITS}
  seen = set()
  # Enough draws to fill every split of a large space; a small space stops early.
  max_draws = max_draws or 20 * sum(sizes.values())
  for _ in range(max_draws):
    if all(len(out[s]) >= sizes.get(s, 0) for s in SPLITS):
      break
    group, record = spec.generate(w, r)
    key = _key(record)
    if key in seen:
      continue
    seen.add(key)
    split = split_of(f"{task}\x1f{group}")
    if len(out[split]) < sizes.get(split, 0):
      out[split].append(record)
  for split, records in out.items():
    if sizes.get(split, 0) and not records:
      raise ValueError(f"task {task!r}: no {split} records could be drawn")
  return out


def clusters() -> dict[str, list[str]]:
  """{cluster: [task, ...]} in definition order."""
  out: dict[str, list[str]] = {}
  for spec in TASKS.values():
    out.setdefault(spec.cluster, []).append(spec.name)
  return out
