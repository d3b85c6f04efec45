"""The MLflow tracking server goes away. A real ``mlflow server``: unreachable from the start, every
registry verb answers within the bounded back-off with one line naming the tracking URI and exit 2
(never "no version", never an empty status); killed in the middle of a promotion (after its first alias
move), the aliases and their history converge once it is back: the next registry verb finishes the move
from its written plan and audits that it did."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ctloop.core.errors import DependencyUnavailable
from ctloop.dev.local_airflow import free_port
from tests.conftest import SPEC, gate_version, run_cli, version_with_run
from tests.stack_helpers import KillSwitchProxy, MlflowServer

pytestmark = pytest.mark.faults
MODEL = "support_escalation"
TIMINGS: dict[str, float] = {}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    s = MlflowServer(tmp_path_factory.mktemp("mlflow-server"))
    yield s
    s.kill()
    print("\noutage timings (s):", {k: round(v, 1) for k, v in TIMINGS.items()})


def _env(home: Path, uri: str) -> dict[str, str]:
    return {"CTLOOP_HOME": str(home), "CTLOOP_PARAMS": str(SPEC), "CTLOOP_MLFLOW_TRACKING_URI": uri,
            "CTLOOP_MLFLOW_RETRIES": "1", "CTLOOP_MLFLOW_TIMEOUT_SECONDS": "3"}


def _timed(name: str, *args: str, env: dict[str, str]) -> Any:
    started = time.monotonic()
    done = run_cli(*args, env=env)
    TIMINGS[name] = time.monotonic() - started
    return done


def test_an_unreachable_server_is_an_error_naming_it_never_an_empty_answer(tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    env = _env(tmp_path, dead)
    for name, args in {"status": ["status", "--json"], "promote": ["promote", "1", "--reason", "outage"],
                       "rollback": ["rollback", "--reason", "outage"],
                       "monitor": ["monitor", "--date", "2026-01-05"]}.items():
        done = _timed(name, *args, env=env)
        assert done.returncode == 2, (name, done.stdout, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and dead in lines[0] and "unreachable" in lines[0], (name, done.stderr)
        assert "no version" not in done.stderr and done.stdout == ""


def test_the_library_raises_instead_of_answering_no_champion(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             server: MlflowServer) -> None:
    from ctloop.core.settings import Settings
    from ctloop.registry.mlflow_registry import alias_version, configure_mlflow

    settings = Settings(home=tmp_path, mlflow_tracking_uri=server.url, mlflow_retries=0, mlflow_timeout_seconds=2)
    client = configure_mlflow(settings)
    client.create_registered_model("outage-probe")
    assert alias_version(client, "outage-probe", "champion") is None  # answered: there is none
    proxy = KillSwitchProxy(server.url, "never", 1, lambda: None)
    try:
        through = configure_mlflow(Settings(home=tmp_path, mlflow_tracking_uri=proxy.url, mlflow_retries=0,
                                            mlflow_timeout_seconds=2))
        proxy.dead = True  # the server stops answering
        monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        with pytest.raises(DependencyUnavailable, match=proxy.url):
            alias_version(through, "outage-probe", "champion")
    finally:
        proxy.close()


def test_a_promotion_cut_short_by_the_server_dying_converges_when_it_is_back(tmp_path: Path,
                                                                             server: MlflowServer) -> None:
    from mlflow import MlflowClient

    direct = MlflowClient(server.url, server.url)
    direct.create_registered_model(MODEL)
    for _ in ("1", "2"):
        version_with_run(direct, MODEL)
    gate_version(direct, MODEL, "1", True, None, ["first"])
    gate_version(direct, MODEL, "2", True, "1", ["better"])
    home = tmp_path / "home"
    assert run_cli("promote", "1", "--reason", "first", env=_env(home, server.url)).returncode == 0

    # the server dies right after the promotion's first alias move (@previous -> v1)
    proxy = KillSwitchProxy(server.url, "registered-models/alias", 1, server.kill)
    try:
        done = _timed("promote cut short", "promote", "2", "--reason", "better", env=_env(home, proxy.url))
    finally:
        proxy.close()
    assert done.returncode == 2 and proxy.url in done.stderr and len(done.stderr.strip().splitlines()) == 1
    pending = home / "registry" / f"{MODEL}.pending.json"
    assert pending.exists(), "the plan of the cut-short move is kept"

    server.start()  # back, on the same store
    status = run_cli("status", "--json", env=_env(home, server.url))
    assert status.returncode == 0, status.stderr
    st = json.loads(status.stdout)
    assert st["champion"]["version"] == "2" and st["previous"]["version"] == "1"
    assert st["recovered"] == [{"alias": "previous", "from": None, "to": "1"},
                               {"alias": "champion", "from": "1", "to": "2"}]
    assert not pending.exists()
    history = [json.loads(line) for line in (home / "registry" / f"{MODEL}.alias-history.jsonl").read_text().splitlines()]
    assert [h["kind"] for h in history] == ["promote", "promote"]
    assert history[-1]["moves"] == st["recovered"] and history[-1]["reason"] == "better"
    entries = [json.loads(line) for line in (home / "audit" / "audit.jsonl").read_text().splitlines()]
    assert entries[-1]["outcome"] == "completed after an interruption" and entries[-1]["kind"] == "promotion"
    assert run_cli("audit", "verify", env=_env(home, server.url)).returncode == 0
    again = run_cli("promote", "2", "--reason", "better", env=_env(home, server.url))
    assert again.returncode == 1 and "already the champion" in again.stderr  # converged: nothing left to do
    assert os.environ.get("CTLOOP_HOME") != str(home)
