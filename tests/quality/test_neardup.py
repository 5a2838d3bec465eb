"""Near-duplicates (MinHash/LSH, exact Jaccard check) and Self-Instruct's ROUGE-L filter."""
import collections
import random

from t5tune.data import cleaning
from t5tune.quality import neardup

_LETTERS = "abcdefghijklmnopqrstuvwxyz"


def _word(rng):
  return "".join(rng.choice(_LETTERS) for _ in range(rng.randint(3, 9)))


def _planted(seed=0, n=300, planted=60):
  """n clearly different records plus `planted` copies with one small edit each."""
  rng = random.Random(seed)
  base = [" ".join(_word(rng) for _ in range(rng.randint(14, 24))) for _ in range(n)]
  copies = []
  for i in rng.sample(range(n), planted):
    words = base[i].split()
    j = rng.randrange(len(words))
    edit = rng.choice(["typo", "drop", "case"])
    if edit == "typo":
      w = words[j]
      k = rng.randrange(len(w))
      words[j] = w[:k] + rng.choice(_LETTERS) + w[k + 1:]
    elif edit == "drop":
      del words[j]
    else:
      words[j] = words[j].upper() + "!"
    copies.append((i, " ".join(words)))
  return base, copies


def test_planted_near_duplicates_found_and_no_false_pairs():
  base, copies = _planted()
  items = [(("base", i), t) for i, t in enumerate(base)]
  items += [(("copy", k), t) for k, (_, t) in enumerate(copies)]
  threshold = 0.8
  pairs = cleaning.find_pairs(items, threshold=threshold)
  found = {(p.first, p.second): p.similarity for p in pairs}
  truth = {(("base", i), ("copy", k)) for k, (i, _) in enumerate(copies)}
  # No pair among the clearly different records, nor a copy paired with another record.
  assert set(found) <= truth, sorted(set(found) - truth)[:5]
  positives = [
      pair for pair in truth
      if cleaning.jaccard(cleaning.shingles(base[pair[0][1]]),
                         cleaning.shingles(copies[pair[1][1]][1])) >= threshold]
  assert len(positives) >= 40  # the edits are small: most copies are above the threshold
  recall = sum(p in found for p in positives) / len(positives)
  assert recall >= 0.95, recall
  for pair, sim in found.items():  # the reported similarity is the exact Jaccard
    want = cleaning.jaccard(cleaning.shingles(base[pair[0][1]]), cleaning.shingles(copies[pair[1][1]][1]))
    assert abs(sim - want) < 1e-12 and sim >= threshold


def test_near_dedup_counts_in_cleaning_stats_and_mixture_pairs():
  base, copies = _planted(seed=1, n=80, planted=10)
  records = [{"instruction": t, "output": str(i)} for i, t in enumerate(base)]
  records += [{"instruction": t, "output": str(i)} for i, t in copies]
  counts = collections.Counter()
  kept = cleaning.dedup(records, "near:0.7", counts)
  # Case/punctuation-only edits are normalised duplicates; the others near ones.
  assert counts["duplicate_near"] >= 4
  assert counts["duplicate_near"] + counts["duplicate_normalized"] >= 9
  assert len(kept) == len(records) - counts["duplicate_near"] - counts["duplicate_normalized"]
  assert kept[:80] == records[:80]  # the first of each pair is kept
  assert cleaning.check_dedup("near") == 0.8 and cleaning.check_dedup("normalized") is None
  for bad in ("near:2", "fuzzy", "near:x"):
    try:
      cleaning.check_dedup(bad)
      raise AssertionError(bad)
    except ValueError as e:
      assert "near:T" in str(e)
  report = neardup.mixture_pairs({"a": records[:80] + records[80:85], "b": records[85:]}, 0.7)
  assert report["within"]["a"]["pairs"] >= 4 and report["within"]["b"]["pairs"] == 0
  assert report["across"]["pairs"] >= 4
  assert all(e["similarity"] >= 0.7 for e in report["examples"])


def test_self_instruct_rouge_filter_on_hand_made_inputs():
  f = neardup.RougeFilter(kept=["Write a short poem about the sea."])
  assert not f.add("Write a short poem about the sea")  # punctuation only: ROUGE-L 1
  assert not f.add("Write a short poem about the blue sea.")  # F = 2*(7/8*1)/(7/8+1) = 0.93
  assert f.add("Translate the sentence into French.")  # novel
  assert not f.add("Please translate the sentence into French.")  # F = 0.91 vs the new one
  score, closest = f.closest("Write a poem about love.")  # LCS 4 of 5 and 7: F = 2*0.8*0.571/1.371
  assert abs(score - 2 * (4 / 5) * (4 / 7) / (4 / 5 + 4 / 7)) < 1e-9
  assert closest == "Write a short poem about the sea."
  assert f.add("Write a poem about love.")  # 0.667 < 0.7: kept
  assert f.kept == ["Write a short poem about the sea.", "Translate the sentence into French.",
                    "Write a poem about love."]
  strict = neardup.RougeFilter(threshold=0.5, kept=["Write a poem about love."])
  assert not strict.add("Write a poem about the war.")  # 0.73 >= 0.5
