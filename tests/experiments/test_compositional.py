"""Audit of the compositional collection: held-out pairings, coverage, unseen wordings, balance, determinism.

No training here: these read the generator (and the seqio registration of a
few pools) and run in seconds.
"""
import collections
import itertools

import pytest

from experiments.compositional import collection
from experiments.compositional import corpus
from experiments.compositional import lexicon
from experiments.compositional import primitives as prim


@pytest.fixture(scope="module")
def training_text():
  """Every input and target string stage B trains on (all styles' raw material), and stage A's corpus."""
  texts = list(corpus.documents(seed=0))
  for t in collection.training_tasks():
    for split in ("train", "validation"):
      for r in collection.records(t, split, seed=0):
        texts += [r["instruction"], r["answer"], r["cot"], r["words"]]
  return texts


def test_held_out_pairings_absent_from_every_training_task():
  training = collection.training_tasks()
  assert training, "no training tasks"
  for cluster, pairings in collection.HELD_OUT.items():
    held = collection.held_out_tasks(cluster)
    assert held, f"cluster {cluster} holds no task"
    for (ka, a), (kb, b) in pairings:
      for t in training:
        p = t.primitives()
        assert not (p[ka] == a and p[kb] == b), f"{t.name} trains held-out pairing {a}+{b}"
  # The clusters and the training tasks partition the task space.
  held = [t for c in collection.HELD_OUT for t in collection.held_out_tasks(c)]
  assert len(held) == len(set(held))
  assert sorted(held + training) == sorted(collection.all_tasks())


def test_every_primitive_occurs_in_at_least_four_training_combinations():
  counts = collections.Counter()
  for t in collection.training_tasks():
    for kind, name in t.primitives().items():
      counts[(kind, name)] += 1
  for kind, prims in prim.BY_KIND.items():
    for name in prims:
      assert counts[(kind, name)] >= 4, f"{kind} {name}: {counts[(kind, name)]} training tasks"


def test_every_held_out_primitive_is_trained_and_clusters_are_large_enough():
  trained = {(k, v) for t in collection.training_tasks() for k, v in t.primitives().items()}
  for cluster in collection.HELD_OUT:
    tasks = collection.held_out_tasks(cluster)
    for t in tasks:
      assert set(t.primitives().items()) <= trained, f"{t.name} needs an untrained primitive"
    n = sum(len(collection.records(t, "test")) for t in tasks)
    assert n >= 300, f"{cluster}: {n} test examples"
    for t in tasks:
      assert not collection.records(t, "train") and not collection.records(t, "validation")


def test_unseen_wordings_absent_from_training_text(training_text):
  unseen = prim.all_wordings(unseen=True)
  seen = prim.all_wordings(unseen=False)
  assert len(unseen) == sum(len(p) for p in prim.BY_KIND.values())
  blob = "\n".join(training_text).lower()
  for w in unseen:
    stem = w.split(prim.QUERY)[0].strip().lower()  # the part before the query word
    assert stem and stem not in blob, f"unseen wording {w!r} occurs in training text"
    assert all(stem not in s.lower() for s in seen)
  # ...and they are used: every unseen record carries exactly one of them.
  t = collection.training_tasks()[0]
  for r in collection.records(t, "test", unseen=True):
    hits = [w for w in unseen if w.split(prim.QUERY)[0].strip().lower() in r["instruction"].lower()]
    assert len(hits) == 1, r["instruction"]


def test_answers_depend_on_the_instruction():
  """On one word list, the tasks give many different answers: the input alone does not say it."""
  words = lexicon.word_list(lexicon.rng("probe"))
  answers = {collection.answer(t, words, words[0])[0] for t in collection.all_tasks()}
  assert len(answers) >= 40


def test_classification_answers_are_balanced():
  for t in collection.all_tasks():
    if not t.classification:
      continue
    for split in collection.SPLITS:
      recs = collection.records(t, split)
      c = collections.Counter(r["answer"] for r in recs)
      assert c["yes"] == c["no"] == len(recs) // 2, (t.name, split, c)
      assert all(r["options"] == list(prim.YES_NO) for r in recs)
  # Generated answers are never yes / no: no rank classification there.
  for t in collection.all_tasks():
    if not t.classification:
      assert all(not r["options"] for r in collection.records(t, "test"))


def test_answers_are_correct_on_worked_examples():
  words = ("cat", "plum", "owl", "saw", "fig")
  assert collection.answer(collection.Task("animals", "plural", "list"), words)[0] == "cats owls"
  assert collection.answer(collection.Task("last2", "alphabetical", "first"), words)[0] == "fig"
  assert collection.answer(collection.Task("all", "translate", "last"), words)[0] == "fiko"
  assert collection.answer(collection.Task("foods", "keep", "member"), words, "owl")[0] == "no"
  assert collection.answer(collection.Task("first3", "reverse", "list"), words)[0] == "owl plum cat"
  assert collection.answer(collection.Task("tools", "keep", "count"), words)[0] == "1"


def test_splits_never_share_a_word_list():
  lists = collections.defaultdict(set)
  for t in collection.all_tasks()[::7]:
    for split in collection.SPLITS:
      lists[split] |= {r["words"] for r in collection.records(t, split)}
  for a, b in itertools.combinations(collection.SPLITS, 2):
    assert not lists[a] & lists[b], (a, b)


def test_generator_is_deterministic_for_a_seed():
  t = collection.Task("first3", "capitals", "last")
  assert collection.records(t, "train", seed=0) == collection.records(t, "train", seed=0)
  assert collection.records(t, "train", seed=0) != collection.records(t, "train", seed=1)
  assert corpus.documents(seed=0) == corpus.documents(seed=0)
  assert collection.task_order(0) == collection.task_order(0) != collection.task_order(1)
  ids = collection.task_ids(0)
  assert len(set(ids.values())) == len(ids) == len(collection.all_tasks())


def test_corpus_shows_single_primitives_only():
  """Stage A demonstrates each primitive alone: no task instruction (three wordings joined) is in it."""
  docs = corpus.documents(seed=0)
  blob = "\n".join(docs)
  for kind, prims in prim.BY_KIND.items():
    for p in prims.values():
      assert any(w.split(prim.QUERY)[0] in blob for w in p.wordings), (kind, p.name)
  for t in collection.held_out_tasks("animals+plural"):
    for r in collection.records(t, "test")[:20]:
      assert r["instruction"] not in blob


def test_registered_styles_render_the_same_records():
  from experiments.compositional import tasks  # pylint: disable=g-import-not-at-top
  from t5tune.data import tasks as tasks_lib  # pylint: disable=g-import-not-at-top
  vocab = corpus.vocabulary()
  ex = {s: tasks_lib.get_info(tasks.training_task(s, 6, 0, vocab)).source.prepared("train").examples
        for s in ("instructions", "no_template", "task_id")}
  assert len({len(v) for v in ex.values()}) == 1
  for it, nt, tid in zip(ex["instructions"], ex["no_template"], ex["task_id"]):
    assert it["targets"] == nt["targets"] == tid["targets"]
    assert nt["inputs"] in it["inputs"] and nt["inputs"] in tid["inputs"]
    assert "\n" not in nt["inputs"]  # the word list alone


def test_plan_trains_every_style_at_the_largest_count_only_curve_styles_below():
  from configs.experiments import compositional as config_lib  # pylint: disable=g-import-not-at-top
  from experiments.compositional import run  # pylint: disable=g-import-not-at-top
  total = len(collection.training_tasks())
  assert [n for n, _, _ in run.plan(config_lib.get_config("cpu").compositional)][0] == run.PRETRAINED
  f = config_lib.get_config("demo").compositional  # from scratch: no P
  names = [name for name, _, _ in run.plan(f)]
  assert run.PRETRAINED not in names and not f.pretrain.steps
  for style in f.styles:
    assert run.run_name(style, total) in names
  for n in (run.task_count(n) for n in f.task_counts if run.task_count(n) < total):
    assert {s for s in f.styles if run.run_name(s, n) in names} == set(f.curve_styles)
  with pytest.raises(ValueError, match="task_counts"):
    run.task_count(total + 1)


def _fake_eval(name, style, n, correct):
  """A run's eval.json in miniature: `correct(ev, part, i)` says whether example i is right."""
  evals = {}
  for ev, parts in (("held_out", list(collection.HELD_OUT)), ("held_in", ["generated"]),
                    ("unseen", ["generated"])):
    evals[ev] = {"tasks": {}}
    for part in parts:
      ok = [correct(ev, part, i) for i in range(40)]
      evals[ev]["tasks"][part] = {"per_example": [100.0 * o for o in ok],
                                  "targets": [f"a{i % 3}" for i in range(40)]}
  return {"run": name, "style": style, "tasks": n, "seed": 0, "evals": evals,
          "init_from": "stage_a" if style else ""}


def test_report_verdicts_follow_the_intervals():
  from experiments.compositional import report  # pylint: disable=g-import-not-at-top
  helped = list(collection.HELD_OUT)[:3]
  runs = {
      "pretrained": [_fake_eval("pretrained", None, 0, lambda ev, p, i: i % 10 == 0)],
      "instructions_n6": [_fake_eval("instructions_n6", "instructions", 6,
                                     lambda ev, p, i: i % 4 == 0)],
      "instructions_n141": [_fake_eval("instructions_n141", "instructions", 141,
                                       lambda ev, p, i: p in helped or ev != "held_out"
                                       or i % 10 == 0)],
      "no_template_n141": [_fake_eval("no_template_n141", "no_template", 141,
                                      lambda ev, p, i: i % 10 == 0)],
  }
  s = report.summarize(runs)
  by = {(d["b"], d["cluster"]): d for d in s["differences"]}
  for c in collection.HELD_OUT:
    expected = "helped" if c in helped else "inconclusive"
    assert by[("no_template_n141", c)]["verdict"] == expected
    assert by[("pretrained", c)]["verdict"] == expected
  lines = report.verdicts(s)
  assert any("3 of 4" in l and "-> met" in l for l in lines)
  # Without P (a setting with no stage A) the goal cannot be met, whatever NT does.
  del runs["pretrained"]
  assert any("3 of 4" in l and "NOT met" in l for l in report.verdicts(report.summarize(runs)))
  assert any("held-in" in l and "-> met" in l for l in lines)
  assert s["curve"]["instructions"]["slope_per_doubling"]["verdict"] == "helped"
  assert abs(s["majority"]["held_in"] - 100 * 14 / 40) < 1e-9


def test_a_done_run_gets_evaluations_added_since_from_its_final_checkpoint(tmp_path, monkeypatch):
  import json
  from experiments.compositional import run
  from t5tune.convert import loading
  run_dir = tmp_path / "instructions_n6"
  for step in (500, 1000):  # finalised steps have their config.json
    (run_dir / "checkpoints" / str(step)).mkdir(parents=True)
    (run_dir / "checkpoints" / str(step) / "config.json").write_text("{}")
  old = {"run": "instructions_n6", "evals": {ev: {"tasks": {}} for ev in run.EVALS
                                               if ev != "held_in_val"}}
  (run_dir / "eval.json").write_text(json.dumps(old))
  calls = []
  monkeypatch.setattr(loading, "load_model", lambda path: f"model@{path}")
  monkeypatch.setattr(run, "evaluate", lambda model, f, style, only=None: calls.append(
      (model, style, only)) or {ev: {"tasks": {"generated": {"scores": [1.0]}}} for ev in only})
  out = run._completed("instructions_n6", "instructions", str(run_dir), None, None)  # pylint: disable=protected-access
  # Only the missing evaluation, on the latest checkpoint; the old ones are kept as they were.
  assert calls == [(f"model@{run_dir / 'checkpoints' / '1000'}", "instructions", ["held_in_val"])]
  assert out["evals"]["held_in_val"]["tasks"]["generated"]["scores"] == [1.0]
  assert json.loads((run_dir / "eval.json").read_text()) == out
  assert set(out["evals"]) == set(run.EVALS)
  # Complete now: nothing is scored again. P (no style) is scored on stage A's model.
  run._completed("instructions_n6", "instructions", str(run_dir), None, None)  # pylint: disable=protected-access
  assert len(calls) == 1
  (tmp_path / "p").mkdir()
  (tmp_path / "p" / "eval.json").write_text(json.dumps(old))
  run._completed("pretrained", None, str(tmp_path / "p"), "/stage_a/model", None)  # pylint: disable=protected-access
  assert calls[-1] == ("model@/stage_a/model", None, ["held_in_val"])
