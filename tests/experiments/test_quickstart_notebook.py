"""notebooks/quickstart.ipynb executes top to bottom on the CPU (nbclient, 6 training steps)."""
import os

import nbclient
import nbformat

NOTEBOOK = os.path.join(os.path.dirname(__file__), "..", "..", "notebooks", "quickstart.ipynb")


def test_quickstart_notebook_runs(monkeypatch):
  monkeypatch.setenv("QUICKSTART_STEPS", "6")
  monkeypatch.setenv("JAX_PLATFORMS", "cpu")
  nb = nbformat.read(NOTEBOOK, as_version=4)
  client = nbclient.NotebookClient(
      nb, timeout=300, kernel_name="python3",
      resources={"metadata": {"path": os.path.dirname(os.path.abspath(NOTEBOOK))}})
  client.execute()
  outputs = "".join(o.get("text", "") for cell in nb.cells if cell.cell_type == "code"
                    for o in cell.outputs)
  assert "CPU backend" in outputs
  assert "final training loss" in outputs
  assert "exact_match" in outputs
  assert "What is the opposite of warm? ->" in outputs
  assert any(o.get("data", {}).get("image/png") for cell in nb.cells
             if cell.cell_type == "code" for o in cell.outputs)
