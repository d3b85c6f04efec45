"""The DAG factory (``dags/ctloop_models.py``): every model spec gets its six DAGs, importing cleanly and
following the house rules (DESIGN.md style 2 and 3); a broken spec breaks only its own model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ctloop.core.params import read_spec
from tests.conftest import REPO, SPEC

DAGS = REPO / "dags"
FACTORY = DAGS / "ctloop_models.py"
FLOWS = ("ingest", "retrain", "monitor", "labels", "rollback", "approve", "rollout")
HEAVY = ["pandas", "sklearn", "mlflow", "great_expectations", "evidently"]


def _bag(monkeypatch: pytest.MonkeyPatch | None = None, models_dir: Path | None = None):  # type: ignore[no-untyped-def]
    from airflow.dag_processing.dagbag import DagBag

    from ctloop.core.settings import get_settings

    if monkeypatch is not None and models_dir is not None:
        monkeypatch.delenv("CTLOOP_PARAMS", raising=False)
        monkeypatch.setenv("CTLOOP_MODELS_DIR", str(models_dir))
    get_settings.cache_clear()
    try:
        return DagBag(dag_folder=str(FACTORY))
    finally:
        get_settings.cache_clear()


@pytest.fixture(scope="module")
def dagbag():  # type: ignore[no-untyped-def]
    return _bag()


def test_the_repo_deployment_imports_with_every_flow(dagbag) -> None:  # type: ignore[no-untyped-def]
    assert dagbag.import_errors == {}
    assert set(dagbag.dag_ids) == {f"support_escalation__{f}" for f in FLOWS}
    assert sorted(p.name for p in DAGS.glob("*.py")) == ["ctloop_models.py"], "one factory file generates the DAGs"


@pytest.mark.parametrize("flow", FLOWS)
def test_house_rules(dagbag, flow: str) -> None:  # type: ignore[no-untyped-def]
    dag = dagbag.dags[f"support_escalation__{flow}"]
    assert {"ctloop", "model:support_escalation", flow} <= set(dag.tags)
    assert dag.doc_md and "support_escalation" in dag.doc_md and len(dag.doc_md.strip()) > 40, "doc_md"
    assert dag.catchup is False
    for t in dag.tasks:
        assert t.retries >= 1, f"{t.task_id} needs retries >= 1"


def test_importing_the_factory_loads_no_heavy_library() -> None:
    code = (
        "import importlib.util, json, sys\n"
        f"spec = importlib.util.spec_from_file_location('m', {str(FACTORY)!r})\n"
        "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
        f"print(json.dumps([h for h in {HEAVY!r} if h in sys.modules]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=os.environ.copy(), check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def _spec_named(name: str, **changes: dict) -> dict:
    raw = read_spec(SPEC)  # resolved over the repo's defaults: every key explicit
    raw["dataset"]["name"] = name
    raw["training"].pop("registered_model", None)
    raw["training"].pop("experiment", None)
    raw["training"].pop("suite", None)
    raw["validation"].pop("suite", None)
    raw["training"].pop("schedule", None)  # from this deployment's _defaults.yaml
    for section, values in changes.items():
        raw[section] = {**raw.get(section, {}), **values}
    return raw


@pytest.fixture
def three_models(tmp_path: Path) -> Path:
    models = tmp_path / "models"
    models.mkdir()
    (models / "_defaults.yaml").write_text("training: {schedule: '0 4 * * *'}\n")
    (models / "alpha.yaml").write_text(yaml.safe_dump(_spec_named("alpha")))
    (models / "beta.yaml").write_text(yaml.safe_dump(_spec_named("beta", schedule={"ingest": "0 * * * *"},
                                                                promotion={"mode": "manual"})))
    broken = _spec_named("gamma")
    broken["dataset"]["columns"]["sentiment"]["type"] = "decimal"
    (models / "gamma.yaml").write_text(yaml.safe_dump(broken))
    return models


def test_n_specs_give_n_times_six_dags_and_a_broken_spec_breaks_only_its_own(
        three_models: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    bag = _bag(monkeypatch, three_models)
    assert bag.import_errors == {}, "a broken spec must not take the other models' DAGs with it"
    assert set(bag.dag_ids) == {f"{m}__{f}" for m in ("alpha", "beta") for f in FLOWS} | {"gamma__invalid_spec"}
    invalid = bag.dags["gamma__invalid_spec"]
    assert "gamma.yaml" in invalid.doc_md and "dataset.columns.sentiment.type" in invalid.doc_md
    assert "invalid-spec" in invalid.tags

    alpha, beta = bag.dags["alpha__retrain"], bag.dags["beta__retrain"]
    # each model's own Assets: a drift of alpha schedules alpha's retrain only
    assert "ctloop/alpha/drift" in repr(alpha.timetable) and "ctloop/beta" not in repr(alpha.timetable)
    assert "ctloop/beta/drift" in repr(beta.timetable)
    assert "0 4 * * *" in repr(alpha.timetable), "the shared default schedule applies"
    assert [o.name for o in bag.dags["alpha__ingest"].get_task("publish_curated").outlets] == ["ctloop/alpha/curated"]
    assert "0 * * * *" in repr(bag.dags["beta__ingest"].timetable), "a spec overrides the defaults"
    assert set(alpha.params.keys()) == {"reason", "window_days", "model", "force_promote", "hyperparameters"}
    assert "model:beta" in bag.dags["beta__monitor"].tags


def test_a_task_run_parses_only_its_own_dag(three_models: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("_AIRFLOW_PARSING_CONTEXT_DAG_ID", "beta__monitor")
    bag = _bag(monkeypatch, three_models)
    assert set(bag.dag_ids) == {"beta__monitor"}
