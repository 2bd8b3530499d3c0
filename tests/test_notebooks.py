"""The notebooks run top to bottom on the tiny configs, as a newcomer would run them.

Each notebook executes in a fresh kernel of this interpreter (ipykernel's `python3`), in a
temporary working directory, with TMPDIR pointing there too so whatever it writes is removed
with the test's tmp_path. Outputs must be stripped in git.
"""

import asyncio
import os
import pathlib

import ipykernel  # noqa: F401  (the kernel the notebooks run in: fail here, clearly, if it is missing)
import nbformat
import pytest
from nbclient import NotebookClient

from tests.cpu_jit import UNOPTIMISED_XLA_FLAGS

REPO = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOKS = ("01_quickstart", "02_model_anatomy", "03_pipelines")
# Hang guards, not speed checks. 01 compiles two train steps and the separator: about 2 minutes
# on an idle 2-core CPU with an empty compilation cache (131 s), more beside another worker; the
# others under 30 s.
TIMEOUT_S = {"01_quickstart": 600, "02_model_anatomy": 300, "03_pipelines": 300}


def _read(name: str) -> nbformat.NotebookNode:
    return nbformat.read(REPO / "notebooks" / f"{name}.ipynb", as_version=4)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_is_stripped(name):
    nb = _read(name)
    nbformat.validate(nb)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert code, f"notebooks/{name}.ipynb has no code cells"
    dirty = [i for i, cell in enumerate(code) if cell.outputs or cell.execution_count is not None]
    assert not dirty, f"notebooks/{name}.ipynb: code cells {dirty} have outputs; strip them before committing"


def _repo_entries() -> set[str]:
    """Where a notebook that wrote relative to the package would leave files (bytecode caches,
    which a test running beside it may write, aside)."""
    entries = {p.name for p in REPO.iterdir()} | {f"{d}/{p.name}" for d in ("notebooks", "configs")
                                                   for p in (REPO / d).iterdir()}
    return {e for e in entries if not e.endswith(("__pycache__", ".pytest_cache"))}


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs(name, tmp_path, monkeypatch):
    nb = _read(name)
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # the kernel's tempfile.mkdtemp() lands in tmp_path
    monkeypatch.setenv("MPLBACKEND", "Agg")
    # Unoptimised XLA code, as for the trainer's subprocess tests: the notebooks run a few tiny
    # steps, and compiling them is most of their time.
    monkeypatch.setenv("XLA_FLAGS", f"{os.environ.get('XLA_FLAGS', '')} {UNOPTIMISED_XLA_FLAGS}".strip())
    before = _repo_entries()
    client = NotebookClient(nb, timeout=TIMEOUT_S[name], kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}})
    try:
        asyncio.run(asyncio.wait_for(client.async_execute(), TIMEOUT_S[name]))
    except TimeoutError:
        pytest.fail(f"notebooks/{name}.ipynb did not finish within {TIMEOUT_S[name]} s")
    errors = [out for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs
              if out.output_type == "error"]
    assert not errors, f"notebooks/{name}.ipynb: {errors[0].ename}: {errors[0].evalue}"
    images = sum("image/png" in out.get("data", {}) for cell in nb.cells if cell.cell_type == "code"
                 for out in cell.outputs)
    assert images, f"notebooks/{name}.ipynb drew no figures"
    created = _repo_entries() - before
    assert not created, f"notebooks/{name}.ipynb wrote into the repository: {sorted(created)[:5]}"
