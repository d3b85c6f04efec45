"""The compose stack's Airflow security: FAB auth manager, users created per role by the same init script
airflow-init runs (deploy/airflow/init.sh), and what each role may do through the real REST API:
the operator triggers and approves, the viewer only reads, and each owning team (``owner:`` in a model's
spec) triggers and approves its own model's DAGs and only reads another team's (DAG-level access_control)."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import yaml

from tests.conftest import REPO, SPEC

FAB = "airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager"
USERS = {"admin": "admin-pw-1", "operator": "operator-pw-1", "viewer": "viewer-pw-1",  # pragma: allowlist secret
         "escalations": "escalations-pw-1", "billing-ml": "billing-pw-1"}  # pragma: allowlist secret
OWNERS = {"support_escalation": "escalations", "billing": "billing-ml"}


@pytest.fixture(scope="module")
def fab_airflow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from ctloop.core.settings import Settings
    from ctloop.dev.local_airflow import LocalAirflow, free_port

    home = tmp_path_factory.mktemp("fab")
    models = home / "models"
    models.mkdir()
    (models / "_defaults.yaml").write_text((SPEC.parent / "_defaults.yaml").read_text())
    for name, team in OWNERS.items():
        spec = yaml.safe_load(SPEC.read_text())
        spec["dataset"].pop("name")
        spec["training"].pop("experiment", None)
        (models / f"{name}.yaml").write_text(yaml.safe_dump({**spec, "owner": team}))
    settings = Settings(home=home / "ctloop", models_dir=models, project_dir=REPO)
    airflow = LocalAirflow.from_settings(settings, port=free_port(), extra_env={"AIRFLOW__CORE__AUTH_MANAGER": FAB})
    airflow.home.mkdir(parents=True, exist_ok=True)
    env = {**airflow.env(), "AIRFLOW_ADMIN_PASSWORD": USERS["admin"],
           "AIRFLOW_OPERATOR_PASSWORD": USERS["operator"], "AIRFLOW_VIEWER_PASSWORD": USERS["viewer"],
           "CTLOOP_TEAM_ESCALATIONS_AIRFLOW_PASSWORD": USERS["escalations"],
           "CTLOOP_TEAM_BILLING_ML_AIRFLOW_PASSWORD": USERS["billing-ml"]}
    for _ in range(2):  # the second run proves it idempotent (airflow-init runs on every `compose up`)
        init = subprocess.run(["bash", str(REPO / "deploy" / "airflow" / "init.sh")], env=env, capture_output=True,
                              text=True, timeout=300)
        assert init.returncode == 0, init.stderr[-3000:]
    assert init.stdout.count("exists; left as it is") == 5, init.stdout
    airflow.cli("dags", "reserialize")  # the DAGs in the DB without a dag-processor
    airflow.start(components=("api-server",), wait=False)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{airflow.base_url}/api/v2/monitor/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert airflow.processes["api-server"].poll() is None, "the api-server exited"
            time.sleep(1)
        yield airflow
    finally:
        airflow.stop()


def _client(airflow: Any, user: str) -> httpx.Client:
    r = httpx.post(f"{airflow.base_url}/auth/token", json={"username": user, "password": USERS[user]}, timeout=30)
    assert r.status_code in (200, 201), (user, r.status_code, r.text[:300])
    return httpx.Client(base_url=f"{airflow.base_url}/api/v2", timeout=30,
                        headers={"Authorization": f"Bearer {r.json()['access_token']}"})


def test_each_role_gets_what_it_may_do(fab_airflow: Any) -> None:
    listing = fab_airflow.cli("users", "list", "--output", "json").stdout
    users = {u["username"]: u["roles"] for u in json.loads(listing[listing.index("[{"):].splitlines()[0])}
    assert users == {"admin": ["Admin"], "operator": ["Op"], "viewer": ["Viewer"],
                     "escalations": ["Viewer", "team_escalations"], "billing-ml": ["Viewer", "team_billing-ml"]}

    bad = httpx.post(f"{fab_airflow.base_url}/auth/token", json={"username": "viewer", "password": "wrong"}, timeout=30)
    assert bad.status_code in (401, 403)

    approve = {"conf": {"version": "3", "reason": "reviewed the gate report"}, "logical_date": None}
    viewer, operator, admin = (_client(fab_airflow, u) for u in ("viewer", "operator", "admin"))

    # everyone may read the DAGs and their runs
    for client in (viewer, operator, admin):
        assert client.get("/dags/support_escalation__approve").json()["dag_id"] == "support_escalation__approve"
        assert client.get("/dags/support_escalation__retrain/dagRuns").status_code == 200

    # the viewer may not trigger, approve, pause or clear
    assert viewer.post("/dags/support_escalation__approve/dagRuns", json=approve).status_code == 403
    assert viewer.post("/dags/support_escalation__retrain/dagRuns", json={"conf": {"reason": "x"}, "logical_date": None}).status_code == 403
    assert viewer.patch("/dags/support_escalation__retrain", json={"is_paused": False}).status_code == 403

    # the operator approves (ctloop_approve with the typed form's conf), triggers a retrain and unpauses
    run = operator.post("/dags/support_escalation__approve/dagRuns", json=approve)
    assert run.status_code == 200, run.text[:300]
    assert run.json()["conf"] == approve["conf"]
    retrain = operator.post("/dags/support_escalation__retrain/dagRuns", json={"conf": {"reason": "operator test"}, "logical_date": None})
    assert retrain.status_code == 200, retrain.text[:300]
    assert operator.patch("/dags/support_escalation__retrain", json={"is_paused": False}).json()["is_paused"] is False

    # users and roles are the admin's alone
    assert admin.get(f"{fab_airflow.base_url}/auth/fab/v1/users").status_code == 200
    assert operator.get(f"{fab_airflow.base_url}/auth/fab/v1/users").status_code == 403
    assert viewer.get(f"{fab_airflow.base_url}/auth/fab/v1/roles").status_code == 403


def test_each_team_triggers_its_own_models_dags_and_only_reads_the_others(fab_airflow: Any) -> None:
    escalations, billing = _client(fab_airflow, "escalations"), _client(fab_airflow, "billing-ml")
    for client, own, other in ((escalations, "support_escalation", "billing"),
                               (billing, "billing", "support_escalation")):
        listed = {d["dag_id"] for d in client.get("/dags", params={"limit": 100}).json()["dags"]}
        assert {f"{own}__retrain", f"{other}__retrain"} <= listed  # Viewer: everyone reads every DAG
        assert client.get(f"/dags/{other}__retrain/dagRuns").status_code == 200

        approve = {"conf": {"version": "1", "reason": f"{own}'s team reviewed it"}, "logical_date": None}
        mine = client.post(f"/dags/{own}__approve/dagRuns", json=approve)
        assert mine.status_code == 200, mine.text[:300]
        retrain = client.post(f"/dags/{own}__retrain/dagRuns", json={"conf": {"reason": "team"}, "logical_date": None})
        assert retrain.status_code == 200, retrain.text[:300]
        assert client.patch(f"/dags/{own}__monitor", json={"is_paused": False}).json()["is_paused"] is False

        assert client.post(f"/dags/{other}__approve/dagRuns", json=approve).status_code == 403
        assert client.post(f"/dags/{other}__retrain/dagRuns",
                           json={"conf": {"reason": "not ours"}, "logical_date": None}).status_code == 403
        assert client.patch(f"/dags/{other}__monitor", json={"is_paused": False}).status_code == 403
