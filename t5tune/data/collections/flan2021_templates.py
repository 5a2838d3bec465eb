"""The FLAN 2021 collection's template families, written for t5tune (not FLAN's or promptsource's text).

Datasets of the same shape share a family (every NLI dataset reads
premise/hypothesis/options/answer); each family has 10 templates, the first
ones with options where the task has them, and a few INVERTED ones that turn
the task around (ask for the input given the output). Placeholders name the
fields a dataset's `fields` produce (see `flan2021`).
"""
from t5tune.data import templates as t

O, N, I = t.ZERO_SHOT_OPTIONS, t.ZERO_SHOT, t.INVERTED


def family(prefix, rows):
  """Templates `{prefix}_0..` from (inputs, targets, kind) rows."""
  return tuple(t.Template(f"{prefix}_{i}", inputs, targets, kind)
               for i, (inputs, targets, kind) in enumerate(rows))


# premise, hypothesis, options, answer
NLI = family("nli", [
    ("Text: {premise}\nClaim: {hypothesis}\nGiven the text, is the claim true?\n{options_}", "{answer}", O),
    ("{premise}\n\nFrom this passage, can we infer the following?\n{hypothesis}\n\n{options_}", "{answer}", O),
    ("Read the first statement and decide how it relates to the second.\nFirst: {premise}\nSecond: {hypothesis}\n{options_}", "{answer}", O),
    ("Suppose that \"{premise}\" is true. Then is \"{hypothesis}\" also true?\n{options_}", "{answer}", O),
    ("Premise: {premise}\nHypothesis: {hypothesis}\nWhat is the relation between them?\n{options_}", "{answer}", O),
    ("{premise}\nQuestion: does that mean {hypothesis}?\n{options_}\nAnswer:", "{answer}", O),
    ("Decide if the second sentence follows from the first one.\n\n{premise}\n{hypothesis}\n{options_}", "{answer}", O),
    ("If {premise}, does it follow that {hypothesis}?", "{answer}", N),
    ("Here is a passage: {premise}\nWrite a statement whose relation to the passage is \"{answer}\".", "{hypothesis}", I),
    ("Write a context in which the sentence \"{hypothesis}\" has the relation \"{answer}\".", "{premise}", I),
])

# passage, question, options, answer (yes/no or choices over a passage)
PASSAGE_CHOICE = family("passage_choice", [
    ("{passage}\n\nBased on the passage above, {question}\n{options_}", "{answer}", O),
    ("Read this and answer the question.\n\n{passage}\n\nQuestion: {question}\n{options_}", "{answer}", O),
    ("Passage: {passage}\nQ: {question}\nPick the right answer.\n{options_}", "{answer}", O),
    ("Use the text to answer.\nText: {passage}\n{question}\n{options_}", "{answer}", O),
    ("{question}\nThe answer can be found in this text:\n{passage}\n{options_}", "{answer}", O),
    ("Here is an article:\n{passage}\nAnswer the following question about it. {question}\n{options_}", "{answer}", O),
    ("Context: {passage}\nQuestion: {question}\nChoose one.\n{options_}\nAnswer:", "{answer}", O),
    ("{passage}\nAccording to the text, {question}", "{answer}", N),
    ("Write a question about the following text whose answer is \"{answer}\".\n\n{passage}", "{question}", I),
    ("Text: {passage}\nAnswer: {answer}\nWhat question does this answer respond to?", "{question}", I),
])

# passage, question, answer (extractive or free-form answer)
PASSAGE_QA = family("passage_qa", [
    ("{passage}\n\nAnswer this question using the passage: {question}", "{answer}", N),
    ("Read the text and answer the question.\nText: {passage}\nQuestion: {question}", "{answer}", N),
    ("Passage: {passage}\nQ: {question}\nA:", "{answer}", N),
    ("{question}\nFind the answer in this text:\n{passage}", "{answer}", N),
    ("Here is some background:\n{passage}\nNow answer: {question}", "{answer}", N),
    ("Answer the question from the article.\n\nArticle: {passage}\n\nQuestion: {question}\nAnswer:", "{answer}", N),
    ("{passage}\nWhat is the answer to the question \"{question}\"?", "{answer}", N),
    ("Given this context: {passage}\n{question}", "{answer}", N),
    ("Write a question about this passage that has the answer \"{answer}\".\n{passage}", "{question}", I),
    ("{passage}\nThe answer is \"{answer}\". Ask a question that leads to it.", "{question}", I),
])

# question, options, answer (closed-book, multiple choice)
CHOICE_QA = family("choice_qa", [
    ("{question}\n{options_}", "{answer}", O),
    ("Answer the question by picking one of the options.\nQuestion: {question}\n{options_}", "{answer}", O),
    ("Q: {question}\n{options_}\nA:", "{answer}", O),
    ("Which of these answers the question \"{question}\"?\n{options_}", "{answer}", O),
    ("Here is a quiz question: {question}\nPossible answers are below.\n{options_}", "{answer}", O),
    ("Pick the best answer.\n\n{question}\n\n{options_}", "{answer}", O),
    ("Test question: {question}\nChoose from:\n{options_}\nThe answer is", "{answer}", O),
    ("{question} What is the answer?", "{answer}", N),
    ("Write a question whose correct answer is \"{answer}\".", "{question}", I),
    ("Answer: {answer}\nWhat could the question have been?", "{question}", I),
])

# question, answer (closed-book, free form)
OPEN_QA = family("open_qa", [
    ("{question}", "{answer}", N),
    ("Answer this question: {question}", "{answer}", N),
    ("Q: {question}\nA:", "{answer}", N),
    ("Please answer the following question. {question}", "{answer}", N),
    ("Trivia question: {question}\nAnswer:", "{answer}", N),
    ("What is the answer to: {question}", "{answer}", N),
    ("Give a short answer.\n{question}", "{answer}", N),
    ("I have a question: {question} What is the answer?", "{answer}", N),
    ("Write a trivia question whose answer is \"{answer}\".", "{question}", I),
    ("The answer is {answer}. What is the question?", "{question}", I),
])

# context, options, answer (pick a continuation / solution / alternative)
CONTINUATION = family("continuation", [
    ("{context}\nWhat comes next?\n{options_}", "{answer}", O),
    ("Finish the following.\n{context}\n{options_}", "{answer}", O),
    ("{context}\n\nWhich option is the most sensible continuation?\n{options_}", "{answer}", O),
    ("Choose the most plausible option.\n\n{context}\n{options_}", "{answer}", O),
    ("Here is the start: {context}\nHow does it go on?\n{options_}", "{answer}", O),
    ("{context}\nPick the best option.\n{options_}\nAnswer:", "{answer}", O),
    ("Using common sense, pick the right option for: {context}\n{options_}", "{answer}", O),
    ("Continue this in the most plausible way: {context}", "{answer}", N),
    ("Write a beginning that \"{answer}\" would plausibly follow.", "{context}", I),
    ("Here is a plausible outcome: {answer}\nWhat situation could have come before it?", "{context}", I),
])

# sentence, options, answer (who does the pronoun / blank refer to)
COREF = family("coref", [
    ("{sentence}\nWho or what does \"{pronoun}\" refer to?\n{options_}", "{answer}", O),
    ("In the sentence below, what is \"{pronoun}\"?\n{sentence}\n{options_}", "{answer}", O),
    ("Sentence: {sentence}\nResolve \"{pronoun}\".\n{options_}", "{answer}", O),
    ("{sentence}\n\nWhich option does \"{pronoun}\" stand for?\n{options_}", "{answer}", O),
    ("Read: {sentence}\nHere \"{pronoun}\" means which one?\n{options_}\nAnswer:", "{answer}", O),
    ("Choose the referent of \"{pronoun}\" in: {sentence}\n{options_}", "{answer}", O),
    ("{sentence}\nFill in what \"{pronoun}\" refers to.\n{options_}", "{answer}", O),
    ("In \"{sentence}\", \"{pronoun}\" refers to", "{answer}", N),
    ("Write a sentence in which \"{pronoun}\" refers to {answer}.", "{sentence}", I),
    ("Make up a sentence with \"{pronoun}\" that must be resolved to \"{answer}\".", "{sentence}", I),
])

# sentence1, sentence2, options, answer
PARAPHRASE = family("paraphrase", [
    ("First: {sentence1}\nSecond: {sentence2}\nDo they say the same thing?\n{options_}", "{answer}", O),
    ("Are these two sentences paraphrases of each other?\n{sentence1}\n{sentence2}\n{options_}", "{answer}", O),
    ("\"{sentence1}\" and \"{sentence2}\": do they mean the same?\n{options_}", "{answer}", O),
    ("Compare the meaning.\n1. {sentence1}\n2. {sentence2}\n{options_}", "{answer}", O),
    ("{sentence1}\n{sentence2}\nIs the second a rewording of the first?\n{options_}", "{answer}", O),
    ("Sentence A: {sentence1}\nSentence B: {sentence2}\nHow do they relate?\n{options_}\nAnswer:", "{answer}", O),
    ("Decide whether the pair carries the same meaning.\n\n{sentence1}\n\n{sentence2}\n\n{options_}", "{answer}", O),
    ("Do \"{sentence1}\" and \"{sentence2}\" mean the same thing?", "{answer}", N),
    ("Write a sentence that is \"{answer}\" with respect to this one: {sentence1}", "{sentence2}", I),
    ("Here is a sentence: {sentence2}\nWrite another one; the pair should be \"{answer}\".", "{sentence1}", I),
])

# text, options, answer
SENTIMENT = family("sentiment", [
    ("{text}\nWhat is the sentiment of this text?\n{options_}", "{answer}", O),
    ("Is the following review positive or negative?\n\n{text}\n\n{options_}", "{answer}", O),
    ("Text: {text}\nHow does the writer feel?\n{options_}", "{answer}", O),
    ("Classify the tone of this.\n{text}\n{options_}", "{answer}", O),
    ("{text}\n\nDid the author like it?\n{options_}", "{answer}", O),
    ("Read this and tell me its sentiment: {text}\n{options_}\nAnswer:", "{answer}", O),
    ("What feeling does this express?\n\"{text}\"\n{options_}", "{answer}", O),
    ("{text}\nWas this written in a good or a bad mood?", "{answer}", N),
    ("Write a short text whose sentiment is \"{answer}\".", "{text}", I),
    ("Make up a review that would be labelled \"{answer}\".", "{text}", I),
])

# data, text (structured data to a sentence)
STRUCT = family("struct", [
    ("Write a sentence that expresses this data: {data}", "{text}", N),
    ("Data: {data}\nDescribe it in words.", "{text}", N),
    ("{data}\n\nTurn the facts above into a sentence.", "{text}", N),
    ("Here is some structured data: {data}\nWrite a fluent description.", "{text}", N),
    ("Generate text from these facts.\n{data}", "{text}", N),
    ("Facts: {data}\nA sentence stating them:", "{text}", N),
    ("Use all of the following in one sentence: {data}", "{text}", N),
    ("Put this information into natural language: {data}", "{text}", N),
    ("Sentence: {text}\nList the facts it states.", "{data}", I),
    ("Extract the structured data from: {text}", "{data}", I),
])

# document, summary
SUMMARY = family("summary", [
    ("Summarize this:\n\n{document}", "{summary}", N),
    ("{document}\n\nWrite a short summary of the text above.", "{summary}", N),
    ("Article: {document}\nSummary:", "{summary}", N),
    ("What are the main points of the following?\n{document}", "{summary}", N),
    ("Condense this into a few words.\n{document}", "{summary}", N),
    ("Here is a text: {document}\nGive it a brief summary.", "{summary}", N),
    ("{document}\nTL;DR:", "{summary}", N),
    ("Briefly, what is this about?\n\n{document}", "{summary}", N),
    ("Write a text that could be summarised as: {summary}", "{document}", I),
    ("Summary: {summary}\nWrite the full text behind it.", "{document}", I),
])

# question, options, answer (classification of one text into fixed labels)
TOPIC = family("topic", [
    ("{text}\nWhat is this text about?\n{options_}", "{answer}", O),
    ("Pick the category of this.\n\n{text}\n\n{options_}", "{answer}", O),
    ("Text: {text}\nWhich label fits best?\n{options_}", "{answer}", O),
    ("Classify: {text}\n{options_}", "{answer}", O),
    ("{text}\n\nChoose the right class.\n{options_}\nAnswer:", "{answer}", O),
    ("Which of the following describes \"{text}\"?\n{options_}", "{answer}", O),
    ("Read this, then select its category: {text}\n{options_}", "{answer}", O),
    ("What kind of text is this? {text}", "{answer}", N),
    ("Write a text of the category \"{answer}\".", "{text}", I),
    ("Give an example of something labelled \"{answer}\".", "{text}", I),
])


def translation(source_language: str, target_language: str):
  """Templates from `{source}` to `{target}` for one language pair (two turned around)."""
  s, g = source_language, target_language
  return family(f"translate_{s[:2].lower()}_{g[:2].lower()}", [
      (f"Translate to {g}:\n\n{{source}}", "{target}", N),
      (f"{{source}}\n\nHow do you say this in {g}?", "{target}", N),
      (f"{s}: {{source}}\n{g}:", "{target}", N),
      (f"Write this sentence in {g}: {{source}}", "{target}", N),
      (f"Here is a text in {s}: {{source}}\nGive its {g} translation.", "{target}", N),
      (f"Render the following in {g}.\n{{source}}", "{target}", N),
      (f"{{source}}\nThe same in {g}:", "{target}", N),
      (f"Translate from {s} into {g}: {{source}}", "{target}", N),
      (f"Translate to {s}:\n\n{{target}}", "{source}", I),
      (f"{{target}}\nWhat is this in {s}?", "{source}", I),
  ])


# unpunctuated, text (FLAN's fix_punct: restore punctuation and capitals)
FIX_PUNCT = family("fix_punct", [
    ("Add punctuation and capital letters to this text:\n\n{unpunctuated}", "{text}", N),
    ("{unpunctuated}\n\nRewrite the text above with correct punctuation.", "{text}", N),
    ("This sentence lost its punctuation: {unpunctuated}\nWrite it properly.", "{text}", N),
    ("Fix the punctuation and capitalisation.\nInput: {unpunctuated}\nOutput:", "{text}", N),
    ("Make this readable by punctuating it: {unpunctuated}", "{text}", N),
    ("Text without punctuation: {unpunctuated}\nThe same text, punctuated:", "{text}", N),
    ("Restore commas, full stops and capitals in the following.\n{unpunctuated}", "{text}", N),
    ("Please correct the punctuation: {unpunctuated}", "{text}", N),
    ("Remove every punctuation mark and write this in lower case:\n{text}", "{unpunctuated}", I),
    ("{text}\n\nWrite the sentence again without punctuation or capitals.", "{unpunctuated}", I),
])
