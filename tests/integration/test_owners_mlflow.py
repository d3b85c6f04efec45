"""Owners in MLflow, against a real ``mlflow server --app-name basic-auth`` (the compose stack's, on SQLite):
``ctloop owners grant`` gives each owning team an RBAC role with EDIT on its own model's registered model
and experiment. The team promotes and logs runs for its model, and only reads another team's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import SPEC
from tests.stack_helpers import MlflowServer

ADMIN = ("admin", "admin-pw-12345")  # pragma: allowlist secret
TEAMS = {"alpha": ("team-a", "team-a-pw-12345"), "beta": ("team-b", "team-b-pw-12345")}  # pragma: allowlist secret


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[MlflowServer, dict[str, str]]]:
    root = tmp_path_factory.mktemp("owners")
    models = root / "models"
    models.mkdir()
    (models / "_defaults.yaml").write_text((SPEC.parent / "_defaults.yaml").read_text())
    for name, (team, _) in TEAMS.items():
        spec = yaml.safe_load(SPEC.read_text())
        spec["dataset"].pop("name")
        spec["training"].pop("experiment", None)
        (models / f"{name}.yaml").write_text(yaml.safe_dump({**spec, "owner": team}))
    server = MlflowServer(root / "mlflow", admin=ADMIN)
    env = {"CTLOOP_MODELS_DIR": str(models), "CTLOOP_HOME": str(root / "home"),
           "CTLOOP_MLFLOW_TRACKING_URI": server.url, "MLFLOW_TRACKING_USERNAME": ADMIN[0],
           "MLFLOW_TRACKING_PASSWORD": ADMIN[1],
           **{f"CTLOOP_TEAM_{team.upper().replace('-', '_')}_MLFLOW_PASSWORD": pw for team, pw in TEAMS.values()}}
    try:
        yield server, env
    finally:
        server.kill()


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``ctloop`` in the deployment's environment: its models folder, without a one-model override."""
    base = {k: v for k, v in os.environ.items() if k not in ("CTLOOP_PARAMS", "CTLOOP_MODEL")}
    return subprocess.run([str(Path(sys.executable).with_name("ctloop")), *args], capture_output=True, text=True,
                          env={**base, **env})


def _as(server: MlflowServer, user: str, password: str) -> Any:
    import mlflow

    os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"] = user, password
    return mlflow.MlflowClient(server.url, server.url)


def test_each_team_edits_its_own_model_and_only_reads_the_others(deployment: Any,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from mlflow.exceptions import MlflowException

    server, env = deployment
    first = run_cli("owners", "grant", "--json", env=env)
    assert first.returncode == 0, first.stderr
    grants = {g["team"]: g for g in json.loads(first.stdout)["grants"]}
    assert grants["team-a"]["models"] == ["alpha"] and grants["team-a"]["user"] == "team-a"
    assert "registered_model:alpha EDIT" in grants["team-a"]["added"]
    again = run_cli("owners", "grant", "--json", env=env)  # idempotent: compose runs it on every `up`
    assert [g["added"] for g in json.loads(again.stdout)["grants"]] == [[], []]
    audit = run_cli("audit", "show", "--kind", "access", "--json", env=env)
    assert audit.returncode == 0, audit.stderr
    assert sorted(e["model"] for e in json.loads(audit.stdout)["entries"]) == ["alpha", "beta"]

    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    for model, (team, password) in TEAMS.items():
        other = next(m for m in TEAMS if m != model)
        client = _as(server, team, password)
        own_exp = client.get_experiment_by_name(f"ctloop-{model}").experiment_id
        run = client.create_run(own_exp)  # logs runs in its own experiment
        version = client.create_model_version(model, f"runs:/{run.info.run_id}/model", run.info.run_id)
        client.set_registered_model_alias(model, "champion", version.version)  # promotes its own model
        assert client.get_model_version_by_alias(model, "champion").version == version.version

        assert client.get_registered_model(other).name == other  # reads the other team's model
        with pytest.raises(MlflowException, match="403"):
            client.set_registered_model_alias(other, "champion", "1")
        with pytest.raises(MlflowException, match="403"):
            client.create_run(client.get_experiment_by_name(f"ctloop-{other}").experiment_id)
    for key in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        os.environ.pop(key, None)


def test_grant_errors_are_one_line_and_exit_2(deployment: Any, tmp_path: Path) -> None:
    _, env = deployment
    for bad, needle in (({"MLFLOW_TRACKING_PASSWORD": "wrong-password"}, "a wrong password, or not an admin"),  # pragma: allowlist secret
                        ({"MLFLOW_TRACKING_USERNAME": ""}, "MLFLOW_TRACKING_USERNAME"),
                        ({"CTLOOP_MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'm.db'}"}, "basic-auth")):
        proc = run_cli("owners", "grant", env={**env, **bad})
        assert proc.returncode == 2, (bad, proc.stdout, proc.stderr)
        assert needle in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert "Traceback" not in proc.stderr
    listed = run_cli("owners", "list", "--teams", env=env)
    assert listed.stdout.split() == ["team-a", "team-b"]
