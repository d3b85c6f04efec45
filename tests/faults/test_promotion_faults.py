"""Promotions under kills and races, against a real ``mlflow server``: the promoting process SIGKILLed
after each of its alias moves (the next registry verb finishes the move from its plan: champion, previous
and the history agree), the tracking server killed in the middle of training (one line naming it; the
champion untouched; the next run trains), and two promotions of the same model at once (exactly one wins,
the other is refused, the history has one line)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ctloop.core.params import spec_text
from tests.conftest import SPEC, gate_version, run_cli, version_with_run
from tests.stack_helpers import KillSwitchProxy, MlflowServer

pytestmark = pytest.mark.faults
MODEL = "support_escalation"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    s = MlflowServer(tmp_path_factory.mktemp("promotion-faults"))
    yield s
    s.kill()


def _env(home: Path, uri: str) -> dict[str, str]:
    return {"CTLOOP_HOME": str(home), "CTLOOP_PARAMS": str(SPEC), "CTLOOP_MLFLOW_TRACKING_URI": uri,
            "CTLOOP_MLFLOW_RETRIES": "1", "CTLOOP_MLFLOW_TIMEOUT_SECONDS": "5"}


def _fresh_model(server: MlflowServer, name: str, versions: int) -> None:
    from mlflow import MlflowClient

    direct = MlflowClient(server.url, server.url)
    direct.create_registered_model(name)
    for _ in range(versions):
        version_with_run(direct, name)


@pytest.mark.parametrize("moves_before_kill", [1, 2, 3])
def test_a_promotion_killed_after_any_alias_move_converges(tmp_path: Path, server: MlflowServer,
                                                           moves_before_kill: int) -> None:
    from mlflow import MlflowClient

    name = f"{MODEL}_kill{moves_before_kill}"
    params = tmp_path / "params.yaml"
    params.write_text(spec_text(SPEC).replace("registered_model: support_escalation",
                                                                 f"registered_model: {name}"))
    _fresh_model(server, name, 3)
    direct = MlflowClient(server.url, server.url)
    for v, champion in (("1", None), ("2", "1"), ("3", "2")):
        gate_version(direct, name, v, True, champion, [f"gate {v}"])
    env = {**_env(tmp_path / "home", server.url), "CTLOOP_PARAMS": str(params)}
    assert run_cli("promote", "1", "--reason", "one", env=env).returncode == 0
    assert run_cli("promote", "2", "--reason", "two", env=env).returncode == 0
    direct.set_registered_model_alias(name, "challenger", "3")

    # promoting v3 moves @previous-2, @previous, @champion and drops @challenger: kill it after the k-th
    box: dict[str, subprocess.Popen[bytes]] = {}
    proxy = KillSwitchProxy(server.url, "registered-models/alias", moves_before_kill,
                            lambda: box["proc"].kill())
    try:
        box["proc"] = subprocess.Popen([str(Path(sys.executable).with_name("ctloop")), "promote", "3", "--reason",
                                        "three"], env={**os.environ, **env, "CTLOOP_MLFLOW_TRACKING_URI": proxy.url},
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        assert box["proc"].wait(120) == -9
    finally:
        proxy.close()

    status = run_cli("status", "--json", env=env)  # the next registry verb finishes the move
    assert status.returncode == 0, status.stderr
    st = json.loads(status.stdout)
    assert (st["champion"]["version"], st["previous"]["version"], st["previous-2"]["version"]) == ("3", "2", "1")
    assert st["challenger"] is None
    history = [json.loads(line) for line in
               (tmp_path / "home" / "registry" / f"{name}.alias-history.jsonl").read_text().splitlines()]
    assert [h["reason"] for h in history] == ["one", "two", "three"]
    assert {m["alias"]: (m["from"], m["to"]) for m in history[-1]["moves"]} == {
        "previous-2": (None, "1"), "previous": ("1", "2"), "champion": ("2", "3"), "challenger": ("3", None)}


def test_the_tracking_server_killed_mid_training_is_one_line_and_the_next_run_trains(
        tmp_path: Path, server: MlflowServer) -> None:
    from ctloop.data.simulator import SimulationSpec, simulate_day
    from ctloop.data.store import Lake

    name = f"{MODEL}_train"
    params = tmp_path / "params.yaml"
    params.write_text(spec_text(SPEC).replace("registered_model: support_escalation",
                                                                 f"registered_model: {name}"))
    lake = Lake(tmp_path / "home" / "lake")
    from datetime import date, timedelta

    for i in range(6):
        d = date(2026, 1, 1) + timedelta(days=i)
        lake.write_curated(d, simulate_day(d, SimulationSpec(rows=800)), {"rows": 800})
    env = {**_env(tmp_path / "home", server.url), "CTLOOP_PARAMS": str(params)}
    data = tmp_path / "ts"
    prepared = run_cli("prepare", "--out-dir", str(data), "--window-days", "6", env=env)
    assert prepared.returncode == 0, prepared.stderr
    proxy = KillSwitchProxy(server.url, "model-versions/create", 1, server.kill)
    try:
        done = run_cli("train", "--data-dir", str(data), env={**env, "CTLOOP_MLFLOW_TRACKING_URI": proxy.url})
    finally:
        proxy.close()
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert proxy.url in lines[0] and "Traceback" not in done.stderr
    server.start()
    again = run_cli("train", "--data-dir", str(data), "--json", env=env)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["version"] == "2", (again.stdout, again.stderr)  # the cut-short v1 stays
    status = json.loads(run_cli("status", "--json", env=env).stdout)
    assert status["champion"] is None and status["challenger"]["version"] == "2"


def test_two_promotions_at_once_exactly_one_wins(tmp_path: Path) -> None:
    from ctloop.core.params import load_params
    from ctloop.core.settings import Settings
    from ctloop.registry.mlflow_registry import configure_mlflow

    home = tmp_path / "home"
    settings = Settings(home=home, params=SPEC)
    client = configure_mlflow(settings)
    name = load_params(SPEC).training.registered_model
    client.create_registered_model(name)
    for _ in range(3):
        version_with_run(client, name)
    gate_version(client, name, "1", True, None, ["first"])
    env = {"CTLOOP_HOME": str(home), "CTLOOP_PARAMS": str(SPEC)}
    assert run_cli("promote", "1", "--reason", "first", env=env).returncode == 0
    for v in ("2", "3"):  # both gated against champion v1
        gate_version(client, name, v, True, "1", [f"gate {v}"])
    exe = str(Path(sys.executable).with_name("ctloop"))
    racers = [subprocess.Popen([exe, "promote", v, "--reason", f"race {v}"], env={**os.environ, **env},
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for v in ("2", "3")]
    results = [(p.wait(120), p.stderr.read() if p.stderr else "") for p in racers]
    assert sorted(code for code, _ in results) == [0, 1], results
    loser = next(err for code, err in results if code == 1)
    assert "champion is now" in loser or "another promotion won" in loser
    history = [json.loads(line) for line in (home / "registry" / f"{name}.alias-history.jsonl").read_text().splitlines()]
    assert len(history) == 2 and history[-1]["reason"].startswith("race")
    champion = client.get_model_version_by_alias(name, "champion").version
    assert history[-1]["reason"] == f"race {champion}"
