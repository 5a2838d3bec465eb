"""The compositional miniature's lexicon: 24 nouns in three categories, their plurals and Zibbo glosses.

Every task reads the same kind of input, a short list of these nouns, so the
input alone never says which task is asked: only the instruction does.
Zibbo is an invented language with one word per noun; stage A's corpus
states the glosses, plurals and categories, the tasks use them.
"""
from __future__ import annotations

import hashlib
import random

# category -> {noun: (plural, Zibbo gloss)}
CATEGORIES = {
    "animal": {"cat": ("cats", "miro"), "dog": ("dogs", "tano"), "fox": ("foxes", "vulpa"),
               "owl": ("owls", "hoba"), "hen": ("hens", "kipa"), "goat": ("goats", "kapo"),
               "mouse": ("mice", "siri"), "wolf": ("wolves", "lupo")},
    "food": {"plum": ("plums", "pruna"), "pear": ("pears", "pira"), "egg": ("eggs", "ovo"),
             "bean": ("beans", "fabo"), "peach": ("peaches", "pesa"), "cake": ("cakes", "torta"),
             "fig": ("figs", "fiko"), "apple": ("apples", "pomo")},
    "tool": {"hammer": ("hammers", "marto"), "knife": ("knives", "kuto"), "saw": ("saws", "sego"),
             "brush": ("brushes", "bursa"), "rope": ("ropes", "kordo"), "nail": ("nails", "najlo"),
             "axe": ("axes", "hakil"), "spade": ("spades", "fosi")},
}
# What a category is called in instructions and prose (singular, plural).
CATEGORY_NAMES = {"animal": ("animal", "animals"), "food": ("food", "foods"),
                  "tool": ("tool", "tools")}
LANGUAGE = "Zibbo"
WORDS = [w for c in CATEGORIES.values() for w in c]
CATEGORY_OF = {w: c for c, words in CATEGORIES.items() for w in words}
PLURAL = {w: p for c in CATEGORIES.values() for w, (p, _) in c.items()}
GLOSS = {w: g for c in CATEGORIES.values() for w, (_, g) in c.items()}
# Lists hold 5 or 6 nouns, 1 to 3 of each category: every selector picks >= 1 word.
LIST_LENGTHS = (5, 6)
PER_CATEGORY = (1, 3)


def rng(*parts) -> random.Random:
  """A random generator fixed by `parts`, the same in every process (unlike hash())."""
  digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8).digest()
  return random.Random(int.from_bytes(digest, "little"))


def word_list(r: random.Random) -> tuple[str, ...]:
  """A random list of distinct nouns with every category present (1-3 of each)."""
  n = r.choice(LIST_LENGTHS)
  while True:
    counts = [r.randint(*PER_CATEGORY) for _ in CATEGORIES]
    if sum(counts) == n:
      break
  words = [w for cat, k in zip(CATEGORIES, counts) for w in r.sample(sorted(CATEGORIES[cat]), k)]
  r.shuffle(words)
  return tuple(words)
