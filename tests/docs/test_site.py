"""The documentation site (issue 41): it builds with --strict, every heading of the old README
has a page, and a real headless Chromium renders the built pages with their navigation and code.

The build is mkdocs.yml's (`make docs` runs the same), into a temporary directory; the browser
is Debian's `chromium`, which `make install` installs when it is missing (a missing browser
fails here: it is never skipped). Screenshots are left in build/docs-screenshots/.
"""
import functools
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCREENSHOTS = os.path.join(REPO, "build", "docs-screenshots")

# Every heading of the README before it became the front door (fc9cae6, 1,460 lines), and the
# page that holds that section now (its heading text unchanged).
OLD_HEADINGS = {
    "t5tune": "index.md",
    "Install and the two commands": "install.md",
    "Quickstart (Python)": "quickstart.md",
    "Command line": "quickstart.md",
    "Training and overrides": "training.md",
    "Continual tuning": "continual.md",
    "Serving": "serving.md",
    "Registering a task": "concepts.md",
    "Building a dataset": "data-quality.md",
    "Pretraining objectives": "pretraining.md",
    "FLAN collection: FLAN 2021 from real data, held out and evaluated": "flan.md",
    "Benchmarks of the field: lm-evaluation-harness (`t5tune harness`)": "evaluation.md",
    "Bring your own weights": "weights.md",
    "Coming from t5x": "weights.md",
    "Will it fit? A memory plan before you get the pod": "scaling.md",
    "Scanned layers": "scaling.md",
    "The main job: unseen instructions in miniature (`make demo`)": "experiments.md",
    "Quickstart notebook": "quickstart.md",
    "Troubleshooting": "troubleshooting.md",
    "Layout": "architecture.md",
    "Benchmarks": "benchmarks.md",
    "Sampled decoding without a sort, 2026-12-04 22:19-22:36 UTC, the same AMD EPYC host"
    " (family 26 model 2)": "benchmarks.md",
    "`make bench` from a fresh clone, 2026-12-04 20:19-20:28 UTC, an AMD EPYC host"
    " (family 26 model 2)": "benchmarks.md",
    "Input pipeline (each side in its own process)": "benchmarks.md",
    "Train step: t5tune vs PyTorch T5 (each side in its own process)": "benchmarks.md",
    "Scaling (cost relative to the first row, per side)": "benchmarks.md",
    "The machine's float32 GEMM ceiling (2048 x 2048 x 2048, each side in its own process)":
        "benchmarks.md",
    "Decode speed: t5_1_1_small, batch 8, input 64, 32 new tokens, float32 (each side in its own"
    " process)": "benchmarks.md",
    "Evaluation throughput: t5_1_1_small, 64 examples in batches of 16, inputs 96 tokens; rank: 4"
    " options of 4 tokens; generate: 8 tokens greedy (each side in its own process)":
        "benchmarks.md",
    "Where generation's time goes, ms per batch of 16 (encoder timed alone; the rest = generate"
    " - encoder)": "benchmarks.md",
    "Train-step profile, t5_1_1_small:8:512:128 (3 steps, ms per step)": "benchmarks.md",
    "Versions": "install.md",
}


def _headings(path):
  with open(path, encoding="utf-8") as f:
    text = re.sub(r"```.*?```", "", f.read(), flags=re.S)  # a `# comment` in a block is no heading
  return {m.group(1).strip() for m in re.finditer(r"^#{1,6} (.+)$", text, re.M)}


@pytest.mark.parametrize("heading,page", sorted(OLD_HEADINGS.items()))
def test_old_readme_section_has_its_page(heading, page):
  assert heading in _headings(os.path.join(REPO, "docs", page)), (
      f"the README's section {heading!r} is not a heading of docs/{page}")


def test_readme_is_the_front_door():
  with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
    readme = f.read()
  assert len(readme.splitlines()) <= 250
  for needed in ("make install", "make demo", "make test", "docs/benchmarks.md"):
    assert needed in readme, needed
  for link in re.findall(r"\]\((docs/[^)#]+)", readme):
    assert os.path.isfile(os.path.join(REPO, link)), f"README links to a missing page: {link}"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
  out = tmp_path_factory.mktemp("site")
  result = subprocess.run(
      [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)], cwd=REPO,
      env=dict(os.environ, NO_MKDOCS_2_WARNING="1"), capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
  return out


@pytest.fixture(scope="module")
def server(site):
  handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
  httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
  threading.Thread(target=httpd.serve_forever, daemon=True).start()
  yield f"http://127.0.0.1:{httpd.server_address[1]}"
  httpd.shutdown()


# Without the allocator the Makefile preloads for Python (t5tune/allocator.py): Chromium dies of
# SIGTRAP at start under mimalloc.
_BROWSER_ENV = {k: v for k, v in os.environ.items()
                if k != "LD_PRELOAD" and not k.startswith(("MIMALLOC_", "MALLOC_CONF"))}


def _chromium(*args):
  browser = shutil.which("chromium") or shutil.which("chromium-browser")
  assert browser, "no chromium on PATH: `make install` installs Debian's (apt-get install chromium)"
  result = subprocess.run(
      [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
       "--hide-scrollbars", "--virtual-time-budget=10000", *args],
      capture_output=True, text=True, timeout=180, env=_BROWSER_ENV)
  assert result.returncode == 0, result.stderr[-3000:]
  return result.stdout


def test_site_has_the_reference_and_search(site):
  index = json.loads((site / "search" / "search_index.json").read_text())
  locations = {doc["location"] for doc in index["docs"]}
  for page in ("reference/cli/", "reference/config/", "reference/t5tune/", "troubleshooting/"):
    assert page in locations, page
  config = (site / "reference" / "config" / "index.html").read_text()
  assert "optimizer.learning_rate" in config and "(0, inf)" in config
  assert "--max_wait_ms" in (site / "reference" / "cli" / "index.html").read_text()
  api = (site / "reference" / "t5tune" / "index.html").read_text()
  assert "t5tune.infer.api.generate" in api and "Raises" in api


@pytest.mark.parametrize("page", ["", "serving/", "reference/cli/"])
def test_browser_renders_the_page(server, page):
  url = f"{server}/{page}"
  dom = _chromium("--dump-dom", url)
  assert 'class="md-nav' in dom and 'href="' in dom, f"{url}: no navigation rendered"
  assert re.search(r"<pre[^>]*>.*?<code", dom, re.S), f"{url}: no code block rendered"
  assert "md-search" in dom, f"{url}: no search box"
  os.makedirs(SCREENSHOTS, exist_ok=True)
  shot = os.path.join(SCREENSHOTS, (page.strip("/").replace("/", "_") or "home") + ".png")
  if os.path.exists(shot):
    os.remove(shot)
  _chromium(f"--screenshot={shot}", "--window-size=1280,1600", url)
  assert os.path.getsize(shot) > 10_000, shot  # a page, not a blank image


def test_browser_reaches_the_search_index(server):
  dom = _chromium("--dump-dom", f"{server}/search/search_index.json")
  assert '"docs"' in dom and '"location"' in dom
