"""Every DAG file imports cleanly and follows the house rules (DESIGN.md style 2 and 3)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

DAGS = Path(__file__).resolve().parents[2] / "dags"
DAG_FILES = sorted(p for p in DAGS.glob("*.py") if not p.name.startswith("_"))
HEAVY = ["pandas", "sklearn", "mlflow", "great_expectations", "evidently"]


@pytest.fixture(scope="module")
def dagbag():  # type: ignore[no-untyped-def]
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS))


def test_no_import_errors(dagbag) -> None:  # type: ignore[no-untyped-def]
    assert dagbag.import_errors == {}
    assert {Path(f).stem for f in map(str, DAG_FILES)} <= set(dagbag.dag_ids)


@pytest.mark.parametrize("path", DAG_FILES, ids=[p.stem for p in DAG_FILES])
def test_house_rules(dagbag, path: Path) -> None:  # type: ignore[no-untyped-def]
    dag = dagbag.dags.get(path.stem)
    assert dag is not None, f"{path.name} must define a DAG whose dag_id is its file stem"
    assert dag.tags, "tags"
    assert dag.doc_md and len(dag.doc_md.strip()) > 40, "doc_md"
    for t in dag.tasks:
        assert t.retries >= 1, f"{t.task_id} needs retries >= 1"


@pytest.mark.parametrize("path", DAG_FILES, ids=[p.stem for p in DAG_FILES])
def test_importing_a_dag_file_loads_no_heavy_library(path: Path) -> None:
    code = (
        "import importlib.util, json, sys\n"
        f"spec = importlib.util.spec_from_file_location('m', {str(path)!r})\n"
        "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
        f"print(json.dumps([h for h in {HEAVY!r} if h in sys.modules]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=os.environ.copy(), check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
