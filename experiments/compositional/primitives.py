"""Instruction primitives: selectors, transforms and readouts, each an operation with its wordings.

A task is one (selector, transform, readout) combination; its answer on a
word list is `readout(transform(selector(words)))`. Each primitive has three
training wordings and one unseen wording that no training text contains
(tests/experiments/test_compositional.py audits it); an instruction is the
three wordings joined by one of `FRAMES`.

    p = SELECTORS["animals"]; p.apply(("cat", "plum", "owl"))   # ('cat', 'owl')
    p.wordings[0]                                                # "take the animals"
"""
from __future__ import annotations

import dataclasses
from typing import Callable

from experiments.compositional import lexicon

SELECTOR, TRANSFORM, READOUT = "selector", "transform", "readout"
KINDS = (SELECTOR, TRANSFORM, READOUT)
# The readout "member" asks about a query word; its wordings carry {query}.
QUERY = "{query}"


@dataclasses.dataclass(frozen=True)
class Primitive:
  """One operation: its kind, what it does, the training wordings and the unseen one."""
  name: str
  kind: str
  apply: Callable
  wordings: tuple[str, ...]
  unseen: str


def _category(cat: str):
  return lambda words: tuple(w for w in words if lexicon.CATEGORY_OF[w] == cat)


def _word(fn):
  return lambda words: tuple(fn(w) for w in words)


_SEL = [
    ("all", lambda w: tuple(w),
     ("take all the words", "use every word", "keep the whole list"),
     "consider each word of the list"),
    ("first2", lambda w: tuple(w[:2]),
     ("take the first two words", "keep only the first two words", "use the two words at the start"),
     "look at just the opening pair of words"),
    ("first3", lambda w: tuple(w[:3]),
     ("take the first three words", "keep only the first three words",
      "use the three words at the start"),
     "look at just the opening three words"),
    ("last2", lambda w: tuple(w[-2:]),
     ("take the last two words", "keep only the last two words", "use the two words at the end"),
     "look at just the closing pair of words"),
    ("last3", lambda w: tuple(w[-3:]),
     ("take the last three words", "keep only the last three words",
      "use the three words at the end"),
     "look at just the closing three words"),
    ("animals", _category("animal"),
     ("take the animals", "keep only the animal words", "pick out the animals"),
     "look at just the words naming animals"),
    ("foods", _category("food"),
     ("take the foods", "keep only the food words", "pick out the foods"),
     "look at just the words naming foods"),
    ("tools", _category("tool"),
     ("take the tools", "keep only the tool words", "pick out the tools"),
     "look at just the words naming tools"),
]
_TF = [
    ("keep", lambda w: tuple(w),
     ("leave them as they are", "do not change them", "keep them unchanged"),
     "change nothing about them"),
    ("reverse", lambda w: tuple(reversed(w)),
     ("reverse their order", "turn their order around", "put them backwards"),
     "flip the order they come in"),
    ("alphabetical", lambda w: tuple(sorted(w)),
     ("sort them alphabetically", "put them in alphabetical order", "order them from a to z"),
     "arrange them by the alphabet"),
    ("capitals", _word(str.upper),
     ("write them in capitals", "make them upper case", "turn them into capital letters"),
     "use upper case letters for them"),
    ("plural", _word(lexicon.PLURAL.get),
     ("make them plural", "change each to its plural", "use their plural forms"),
     "put every one of them in the plural"),
    ("translate", _word(lexicon.GLOSS.get),
     (f"translate them into {lexicon.LANGUAGE}", f"give them in {lexicon.LANGUAGE}",
      f"say them in {lexicon.LANGUAGE}"),
     f"render every one of them in {lexicon.LANGUAGE}"),
]
_RO = [
    ("list", lambda w: " ".join(w),
     ("list them", "write them out", "give them all"),
     "show the result"),
    ("first", lambda w: w[0],
     ("say which one comes first", "give the first one", "name the first one"),
     "tell me the one at the front"),
    ("last", lambda w: w[-1],
     ("say which one comes last", "give the last one", "name the last one"),
     "tell me the one at the back"),
    ("count", lambda w: str(len(w)),
     ("say how many there are", "count them", "give their number"),
     "tell me the total"),
    # member takes the query word too (collection.answer); yes / no.
    ("member", None,
     (f"say if {QUERY} is among them", f"tell whether {QUERY} is one of them",
      f"answer yes or no: is {QUERY} there"),
     f"check for {QUERY} and reply yes or no"),
]
SELECTORS = {n: Primitive(n, SELECTOR, f, w, u) for n, f, w, u in _SEL}
TRANSFORMS = {n: Primitive(n, TRANSFORM, f, w, u) for n, f, w, u in _TF}
READOUTS = {n: Primitive(n, READOUT, f, w, u) for n, f, w, u in _RO}
BY_KIND = {SELECTOR: SELECTORS, TRANSFORM: TRANSFORMS, READOUT: READOUTS}
# Readouts whose answer does not depend on the transform: paired with "keep" only.
TRANSFORM_FREE = ("count", "member")
YES_NO = ("yes", "no")
# How the three wordings make one instruction ({s}, {t}, {r}); the first
# letter is capitalised after formatting.
FRAMES = ("{s}, {t}, then {r}.", "{s} and {t}; after that, {r}.", "First {s}. Next {t}. Finally {r}.")


def get(kind: str, name: str) -> Primitive:
  return BY_KIND[kind][name]


def all_wordings(unseen: bool) -> list[str]:
  """Every training wording (unseen=False) or every unseen wording (True), query unfilled."""
  return [w for prims in BY_KIND.values() for p in prims.values()
          for w in ((p.unseen,) if unseen else p.wordings)]


def instruction(frame: str, s: str, t: str, r: str, query: str = "") -> str:
  text = frame.format(s=s, t=t, r=r).replace(QUERY, query)
  return text[0].upper() + text[1:]
