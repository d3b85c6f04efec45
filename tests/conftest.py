"""Shared fixtures: every test gets its own CTLOOP_HOME; Airflow gets one migrated SQLite home per session."""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from ctloop.core.params import read_spec
from ctloop.dev.local_airflow import telemetry_off_env

REPO = Path(__file__).resolve().parents[1]
SPEC = REPO / "models" / "support_escalation.yaml"  # the demo model's spec (over models/_defaults.yaml)

# Airflow reads its configuration at import time: point it at a throwaway home before anything imports it.
_airflow_home = Path(os.environ.setdefault("CTLOOP_TEST_AIRFLOW_HOME", str(Path(os.environ.get("TMPDIR", "/tmp")) / f"ctloop-test-airflow-{os.getpid()}")))
os.environ.update({
    "AIRFLOW_HOME": str(_airflow_home),
    "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
    "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
    "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{_airflow_home / 'airflow.db'}",
    "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
})
atexit.register(shutil.rmtree, _airflow_home, True)
# the same telemetry switches every ctloop-started process gets (ctloop.dev.local_airflow imports no Airflow)
os.environ.update(telemetry_off_env())


def write_params(path: Path, **overrides: dict) -> Path:
    """params.yaml with section overrides (e.g. source={...}) written to ``path``."""
    base = read_spec(SPEC)
    for section, values in overrides.items():
        base.setdefault(section, {}).update(values)
    path.write_text(yaml.safe_dump(base, sort_keys=False))
    return path


def load_dag(flow: str, model: str = "support_escalation"):  # type: ignore[no-untyped-def]
    """The generated DAG ``<model>__<flow>`` from the DAG factory, for ``dag.test()``."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(REPO / "dags" / "ctloop_models.py"))
    assert not bag.import_errors, bag.import_errors
    return bag.dags[f"{model}__{flow}"]


@pytest.fixture
def ctloop_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh CTLOOP_HOME with the repo's params; settings cache cleared around the test."""
    from ctloop.core.settings import get_settings

    home = tmp_path / "home"
    monkeypatch.setenv("CTLOOP_HOME", str(home))
    monkeypatch.setenv("CTLOOP_PARAMS", str(SPEC))
    get_settings.cache_clear()
    yield home
    get_settings.cache_clear()


@pytest.fixture
def use_params(ctloop_home: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """Call with section overrides to switch the test to a modified params.yaml."""
    from ctloop.core.settings import get_settings

    def apply(**overrides: dict) -> Path:
        path = write_params(ctloop_home.parent / "params.yaml", **overrides)
        monkeypatch.setenv("CTLOOP_PARAMS", str(path))
        get_settings.cache_clear()
        return path

    return apply


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """Migrate the session's Airflow SQLite DB once (dag.test() needs it)."""
    marker = _airflow_home / ".migrated"
    if not marker.exists():
        _airflow_home.mkdir(parents=True, exist_ok=True)
        subprocess.run([str(Path(sys.executable).with_name("airflow")), "db", "migrate"], check=True,
                       capture_output=True, env=os.environ.copy())
        marker.touch()
    return _airflow_home


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    exe = str(Path(sys.executable).with_name("ctloop"))
    return subprocess.run([exe, *args], capture_output=True, text=True, env={**os.environ, **(env or {})})


def gate_version(client, name: str, version: str, passed: bool, champion: str | None,  # type: ignore[no-untyped-def]
                 reasons: list[str]) -> None:
    """Give a test's registered version the gate decision the gate would have stored (on a run of its own
    when the version was registered without one)."""
    from ctloop.registry.mlflow_registry import store_gate_decision

    mv = client.get_model_version(name, version)
    if not mv.run_id:
        raise ValueError(f"{name} v{version}: register it with a run_id (see tests.conftest.version_with_run)")
    store_gate_decision(client, name, version, {"passed": passed, "champion": champion, "reasons": reasons,
                                                "challenger": version, "checks": []})


def version_with_run(client, name: str, source: str | None = None) -> str:  # type: ignore[no-untyped-def]
    """A model version registered with a run of its own (as `ctloop train` registers them); its source is
    inside the run's artifacts unless given (a tracking server insists on that)."""
    experiment = client.get_experiment_by_name("registry-tests") or None
    experiment_id = experiment.experiment_id if experiment else client.create_experiment("registry-tests")
    run = client.create_run(experiment_id)
    source = source or f"{run.info.artifact_uri}/model"
    return str(client.create_model_version(name, source=source, run_id=run.info.run_id).version)
