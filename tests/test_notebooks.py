"""The notebooks execute top to bottom (reduced sizes: LLMSIM_NB_FAST=1) and are committed
without outputs."""
from __future__ import annotations

import pytest

nbformat = pytest.importorskip("nbformat", reason="notebook tests need nbformat/nbclient/ipykernel")
nbclient = pytest.importorskip("nbclient")

from tests.conftest import REPO  # noqa: E402

NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))


def test_there_are_notebooks():
    names = {p.name for p in NOTEBOOKS}
    assert {"slo_attainment.ipynb", "bucketserve_paper.ipynb"} <= names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_committed_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    assert all(not c.get("outputs") and not c.get("execution_count")
               for c in nb.cells if c.cell_type == "code")


@pytest.mark.slow  # executes every notebook (~10 s): the default suite stays under 90 s
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path, monkeypatch):
    monkeypatch.setenv("LLMSIM_NB_FAST", "1")
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=900, kernel_name="python3",
                                     resources={"metadata": {"path": str(path.parent)}})
    client.execute()
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
