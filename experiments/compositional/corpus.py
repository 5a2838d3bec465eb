"""Stage A's text: the lexicon (categories, plurals, capitals, Zibbo glosses) and each primitive shown alone, in prose.

    docs = corpus.documents(seed=0)          # list of str, fixed for a seed
    path = corpus.vocabulary()               # SentencePiece model of the corpus (cached by content)
    name = corpus.register(vocabulary=path)  # seqio span-corruption task (flan_mini.run.stage_a's task_fn)

A model trained from scratch knows nothing; FLAN's models knew what "reverse"
or "plural" mean before instruction tuning. This corpus gives the miniature
that start: each primitive is demonstrated on its own in its training
wordings ("Here is a list: cat plum owl. If you take the animals, you get
cat owl."), never two primitives together, so no task (and no held-out
pairing) appears here. Unseen wordings never appear either
(tests/experiments/test_compositional.py), though a glossary gives their
unfamiliar words as synonyms of known ones ("to flip the order is to
reverse it"), the way a pretrained model knows synonyms.
"""
from __future__ import annotations

import hashlib
import os

from experiments.compositional import lexicon
from experiments.compositional import primitives as prim

EXTRA_IDS = 100  # T5's sentinels, after the pieces
VOCAB_SIZE = 700
VOCAB_DIR = os.path.join("runs", "compositional_vocab")
VERSION = 1  # bump when the text changes, so a cached vocabulary is not reused
NUM_DEMOS = 2400

SYNONYMS = [
    "To consider a word is to use it.", "The opening words are the first words.",
    "The closing words are the last words.", "A pair of words is two words.",
    "To flip the order is to reverse it.", "To arrange words by the alphabet is to sort them"
    " alphabetically.", "Upper case letters are capital letters.",
    "To render a word in another language is to translate it.", "To reply is to answer.",
    "Checking for a word means saying if it is there.", "The one at the front comes first.",
    "The one at the back comes last.", "The total is how many there are.",
    "To show a result is to list it.", "A word naming an animal is an animal word.",
    "Every one of them means each of them.", "To change nothing is to leave them as they are.",
]


def _facts(word: str) -> list[str]:
  cat = lexicon.CATEGORY_OF[word]
  one, many = lexicon.CATEGORY_NAMES[cat]
  plural, gloss = lexicon.PLURAL[word], lexicon.GLOSS[word]
  art = "an" if word[0] in "aeiou" else "a"
  return [f"{art.capitalize()} {word} is {'an' if one[0] in 'aeiou' else 'a'} {one}.",
          f"{plural.capitalize()} are {many}.", f"The word {word} names {art} {one}.",
          f"The plural of {word} is {plural}.", f"One {word}, two {plural}.",
          f"In {lexicon.LANGUAGE}, {word} is {gloss}.",
          f"The {lexicon.LANGUAGE} word for {word} is {gloss}.",
          f"{gloss.capitalize()} means {word} in {lexicon.LANGUAGE}.",
          f"{word} written in capitals is {word.upper()}."]


def _demo(r) -> str:
  """One primitive applied alone to a word list, in one of its training wordings."""
  words = lexicon.word_list(r)
  kind = r.choice(prim.KINDS)
  p = r.choice(list(prim.BY_KIND[kind].values()))
  wording, query = r.choice(p.wordings), ""
  if kind == prim.SELECTOR:
    result = " ".join(p.apply(words))
  elif kind == prim.TRANSFORM:
    result = " ".join(p.apply(words))
  elif p.name == "member":
    query = r.choice(lexicon.WORDS)
    result = "yes" if query in words else "no"
  else:
    result = p.apply(words)
  wording = wording.replace(prim.QUERY, query)
  listed = " ".join(words)
  forms = [f"Here is a list: {listed}. If you {wording}, you get {result}.",
           f"The words are {listed}. When we {wording}, the result is {result}.",
           f"{listed}: {wording}, and you have {result}."]
  return r.choice(forms)


def documents(seed: int = 0, num_demos: int = NUM_DEMOS) -> list[str]:
  """The corpus for a seed: lexicon facts, synonyms, and demonstrations of single primitives."""
  r = lexicon.rng("corpus", seed)
  docs = [f for w in lexicon.WORDS for f in _facts(w)] + list(SYNONYMS)
  docs += [_demo(r) for _ in range(num_demos)]
  r.shuffle(docs)
  return docs


def vocabulary(directory: str = VOCAB_DIR, seed: int = 0, vocab_size: int = VOCAB_SIZE) -> str:
  """The corpus's SentencePiece model (BPE, `t5tune.data.vocab`), trained once, cached by content.

  It is trained on the corpus and the training instructions (never the unseen wordings).
  """
  from experiments.compositional import collection  # pylint: disable=g-import-not-at-top
  from t5tune.data import vocab as vocab_lib  # pylint: disable=g-import-not-at-top
  texts = documents(seed)
  for t in collection.training_tasks():
    texts += [f"{x['instruction']} {x['words']} {x['answer']}"
              for x in collection.records(t, "train", seed)[:4]]
  digest = hashlib.blake2b(f"{VERSION}|{vocab_size}|".encode() + "\n".join(texts).encode(),
                           digest_size=6).hexdigest()
  prefix = os.path.join(directory, f"compositional_s{seed}_{digest}")
  if os.path.exists(prefix + ".model"):
    return prefix + ".model"
  return vocab_lib.train_sentencepiece(texts, prefix, vocab_size, model_type="bpe")


def get_vocabulary(path: str):
  from t5tune import data  # pylint: disable=g-import-not-at-top
  return data.get_vocabulary(path, extra_ids=EXTRA_IDS)


def register(vocabulary: str, seed: int = 0, objective: str = "span_corruption") -> str:
  """Registers (once) `objective` on the corpus; returns the seqio task name.

  `objective`: "span_corruption" (T5's, mean span 3) or "prefix_lm" (a chunk
  split at a random point: inputs the prefix, targets the rest, the shape of
  stage B's instruction -> answer).
  """
  import seqio  # pylint: disable=g-import-not-at-top
  from t5tune import data  # pylint: disable=g-import-not-at-top
  from experiments.flan_mini import corpus as flan_corpus  # pylint: disable=g-import-not-at-top
  objectives = {"span_corruption": lambda: data.SpanCorruption(mean_noise_span_length=3.0),
                "prefix_lm": data.PrefixLM}
  suffix = "" if objective == "span_corruption" else f"_{objective}"
  name = f"compositional_corpus{suffix}_s{seed}_{flan_corpus.vocabulary_tag(vocabulary)}"
  if name in seqio.TaskRegistry.names():
    return name
  validation = [_demo(lexicon.rng("corpus-validation", seed, i)) for i in range(100)]
  data.register_pretraining_task(
      name, source={"train": [{"text": d} for d in documents(seed)],
                    "validation": [{"text": d} for d in validation]},
      objective=objectives[objective](),
      vocabulary=get_vocabulary(vocabulary), metadata={"corpus_seed": seed})
  return name


def register_prefix_lm(vocabulary: str, seed: int = 0) -> str:
  """`register` with the prefix-LM objective (a `pretrain.task_fn`)."""
  return register(vocabulary, seed, objective="prefix_lm")
