# The README's two commands: `make demo` and `make test`. Both create the
# virtual environment and install everything the project needs first.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo demo-knowledge test install docs browser clean bench bench-full bench-scan bench-profile

# The allocator t5tune preloads (mimalloc from the cmeel-mimalloc wheel that
# setup.py installs; a system jemalloc where the wheel is absent), for every
# Python the targets start: XLA's per-step temporaries then reuse pages instead
# of faulting them in afresh (see t5tune/allocator.py). Both sides of a
# benchmark get it. Evaluated when a recipe runs, after the install.
ALLOC = env $$($(BIN)/python -m t5tune.allocator --env)

$(STAMP): setup.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --no-compile -e '.[test]'
	# Byte-compile site-packages on every core instead of pip's one (~27,000
	# files: 33 s on 2 cores against pip's 46 s), leaving out the packages' own
	# test suites (4,500 files nothing imports: 30 s against 38 s). Exit status
	# ignored as pip ignores it: a few packages ship files for newer Pythons.
	$(BIN)/python -m compileall -q -j 0 -x '/tests/|_test\.py$$' "$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')" >/dev/null 2>&1 || true
	touch $(STAMP)

install: $(STAMP) browser

# The headless browser tests/docs/test_site.py opens the built site with: Debian's chromium,
# installed only where none is on PATH (as root, quietly; Playwright's own browser download is
# not reachable from CI).
browser:
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } >/dev/null

# The documentation site (mkdocs.yml, docs/) into build/site; --strict: a broken link, a missing
# page or an unresolved API reference fails. tests/docs/ build it in `make test` too.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/python -m mkdocs build --strict

# The main job: instruction following on unseen combinations of learned
# instruction primitives, IT vs NT vs TaskID vs P (experiments/compositional/README.md).
demo: $(STAMP)
	$(ALLOC) $(BIN)/python -m experiments.compositional.run --config=configs/experiments/compositional.py --workdir=runs/compositional_demo

# The secondary reading: FLAN's held-out knowledge clusters in miniature
# (experiments/flan_mini/README.md); no threshold, see the README on scale.
demo-knowledge: $(STAMP)
	$(ALLOC) $(BIN)/python -m experiments.flan_mini.run --config=configs/experiments/flan_mini.py --workdir=runs/flan_mini_demo

# The whole suite on 8 simulated CPU devices; one test module per worker at a
# time so each module compiles once, heaviest modules first (the order
# tests/conftest.py gives; --no-loadscope-reorder keeps xdist from re-sorting
# files by their number of tests). Three workers on two cores: a worker
# waiting on its subprocesses (CLI runs, kills, servers) leaves a core to the
# others (19 min 26 s and 20 min 24 s, against 20 min 26 s to 21 min 43 s with
# two, same host: a gain of about 6%, within the runs' spread).
test: $(STAMP) browser
	$(ALLOC) JAX_NUM_CPU_DEVICES=8 TF_CPP_MIN_LOG_LEVEL=2 $(BIN)/python -m pytest -n 3 --dist loadfile --no-loadscope-reorder -q --durations=20 tests

# The CPU benchmark tables of docs/benchmarks.md: each side of a comparison runs in its
# own process; every table prints raw times of both sides, machine and versions
# (~15 min on 2 idle cores). bench-full adds the big scaling cells (hours on a CPU).
bench: $(STAMP)
	$(ALLOC) JAX_NUM_CPU_DEVICES=8 $(BIN)/python benchmarks/input_pipeline.py --batches=30
	$(ALLOC) $(BIN)/python benchmarks/train_step.py --repeats=3
	$(ALLOC) $(BIN)/python benchmarks/decode.py
	$(ALLOC) $(BIN)/python benchmarks/eval_throughput.py

bench-full: $(STAMP)
	$(ALLOC) $(BIN)/python benchmarks/train_step.py --repeats=3 --full

# Where the largest cell's train-step time goes: each side's own profiler, by
# category and top ops (benchmarks/profile_step.py; ~2 min on 2 idle cores).
bench-profile: $(STAMP)
	$(ALLOC) $(BIN)/python benchmarks/profile_step.py --cell=t5_1_1_small:8:512:128

# Compile and step time of the train step, scanned vs unscanned layers
# (t5_1_1_base/large/xl compiles from abstract shapes; base step time).
bench-scan: $(STAMP)
	$(ALLOC) $(BIN)/python benchmarks/compile_scan.py

clean:
	rm -rf $(VENV) build *.egg-info
