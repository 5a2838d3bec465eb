"""The small world every flan_mini task talks about: lexicons, a fact base and the Lumi language.

All tasks draw from the same words, so what one cluster teaches (that
"superb" is a good word, that Mara lives in Tolsa, how Lumi orders words) is
there for another cluster to use; this shared lexicon is what makes transfer
to held-out clusters possible for a model that starts with no knowledge.

`World(seed)` is a pure function of the seed: the invented people names and
their facts change with it, the fixed lexicons below do not.
"""
from __future__ import annotations

import hashlib
import random

# Adjectives with a polarity; words at the same index are synonyms, a word and
# the word at the same index of the other list are antonyms.
GOOD = ["good", "great", "superb", "lovely", "excellent", "pleasant", "wonderful", "fine"]
BAD = ["bad", "awful", "poor", "dreadful", "terrible", "unpleasant", "horrible", "dull"]
CITIES = ["Tolsa", "Marvik", "Oren", "Pellam", "Quiro", "Sandu", "Veska", "Lirbo",
          "Nadra", "Fenwe"]
JOBS = ["baker", "teacher", "pilot", "farmer", "doctor", "painter", "singer", "tailor"]
PETS = ["cat", "dog", "bird", "fish", "horse", "rabbit", "goat", "turtle"]
FOODS = ["soup", "bread", "rice", "pie", "cake", "salad", "stew", "pasta"]
COLORS = ["red", "blue", "green", "yellow", "black", "white"]
OBJECTS = ["lamp", "chair", "kettle", "bag", "clock", "phone", "desk", "coat"]
SHOWS = ["movie", "film", "play", "show", "concert", "book"]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
WEATHER = ["rain", "snow", "sun", "wind", "fog"]
WEATHER_ADJ = {"rain": "rainy", "snow": "snowy", "sun": "sunny", "wind": "windy", "fog": "foggy"}
VEHICLES = ["train", "bus", "boat", "car", "bike"]
FRUITS = ["apples", "pears", "plums", "eggs", "cups", "books", "coins", "shells"]

# Lumi, the invented language: its own words for nouns, adjectives and verbs;
# articles dropped; the noun comes before its adjectives; the verb goes last.
LUMI_NOUNS = {"dog": "kano", "cat": "mivo", "bird": "pipa", "house": "domo",
              "tree": "arbo", "book": "libo", "apple": "pomo", "boat": "navo",
              "horse": "ekvo", "flower": "floro"}
LUMI_ADJS = {"red": "rubi", "blue": "kela", "green": "vera", "big": "grani",
             "small": "mini", "old": "vela", "new": "nova", "happy": "feli"}
# At most one adjective of a group in a phrase ("the big red dog", never "big small").
LUMI_ADJ_GROUPS = (("big", "small"), ("old", "new", "happy"), ("red", "blue", "green"))
LUMI_VERBS = {"sees": "vidas", "likes": "amas", "has": "havas", "finds": "trovas",
              "paints": "pintas", "wants": "volas"}

_SYLLABLES_START = ["Ma", "Te", "Lo", "Ri", "Sa", "No", "Ka", "Be", "Di", "Fa",
                    "Ga", "Hu", "Ju", "Pe", "Vi", "Zo"]
_SYLLABLES_END = ["ra", "lin", "do", "ssa", "ven", "mi", "rek", "na", "bo", "tis",
                  "lu", "gan"]

ATTRIBUTES = ("city", "job", "pet", "food")


def rng(*parts) -> random.Random:
  """A random generator fixed by `parts` (process-independent, unlike hash())."""
  text = "\x1f".join(str(p) for p in parts)
  digest = hashlib.blake2b(text.encode(), digest_size=8).digest()
  return random.Random(int.from_bytes(digest, "little"))


def polarity(adjective: str) -> str:
  return "positive" if adjective in GOOD else "negative"


def synonym(adjective: str, r: random.Random) -> str:
  """Another word of the same polarity."""
  words = GOOD if adjective in GOOD else BAD
  return r.choice([w for w in words if w != adjective])


def antonym(adjective: str, r: random.Random) -> str:
  """A word of the other polarity."""
  return r.choice(BAD if adjective in GOOD else GOOD)


def to_lumi_phrase(adjectives: list[str], noun: str) -> str:
  return " ".join([LUMI_NOUNS[noun]] + [LUMI_ADJS[a] for a in adjectives])


def to_lumi_sentence(subject: str, verb: str, adjectives: list[str], noun: str) -> str:
  """'Mara sees the big dog.' -> 'Mara kano grani vidas.'"""
  return f"{subject} {to_lumi_phrase(adjectives, noun)} {LUMI_VERBS[verb]}."


class World:
  """The seeded part of the world: invented people and their facts."""

  def __init__(self, seed: int, num_people: int = 120):
    r = rng("world", seed)
    names = sorted({a + b for a in _SYLLABLES_START for b in _SYLLABLES_END})
    r.shuffle(names)
    self.seed = seed
    self.people = sorted(names[:num_people])
    self.facts = {
        name: {"city": r.choice(CITIES), "job": r.choice(JOBS),
               "pet": r.choice(PETS), "food": r.choice(FOODS)}
        for name in self.people}
    # Names that are not in the fact base, for passages that must be read.
    self.strangers = sorted(names[num_people:])

  def fact_sentence(self, name: str, attribute: str) -> str:
    value = self.facts[name][attribute]
    return {"city": f"{name} lives in {value}.",
            "job": f"{name} works as a {value}.",
            "pet": f"{name} has a {value}.",
            "food": f"{name} likes {value}."}[attribute]
