"""A prompt change through the gate, as a user runs it: `ctloop prompt register`, `release`, `rollback`, on a
real MLflow (SQLite store, Prompt Registry, mlflow.genai.evaluate with code scorers) and the committed
support-triage app, its golden set and knowledge base. The model is the in-process double
(tests/llm_doubles.py); tests/llm runs the real local model when llama-cpp-python is installed."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient

from ctloop.core.apps import get_app
from ctloop.core.audit import audit_log
from ctloop.core.settings import Settings
from ctloop.data.llm_log import llm_log_since
from ctloop.dev.llm_demo import simulated_tickets, write_customers
from ctloop.serving.llm_app import create_llm_app
from tests.conftest import REPO, run_cli
from tests.llm_doubles import FakeChat, RuleEscalation

APP = REPO / "apps" / "support_triage"
DOUBLES_ENV = {"PYTHONPATH": str(REPO)}  # the doubles are importable as tests.llm_doubles
DOUBLES = ["--provider-factory", "tests.llm_doubles:fake_chat", "--escalation-factory", "tests.llm_doubles:rule_escalation"]


def _release(version: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    r = run_cli("prompt", "release", version, *DOUBLES, "--json", env=DOUBLES_ENV)
    assert r.stdout.count("\n") == 1, r.stdout + r.stderr  # one JSON object, evaluate's own output kept off stdout
    return r.returncode, json.loads(r.stdout)


def test_a_prompt_that_obeys_injections_is_rejected_and_a_better_one_earns_its_traffic(
        ctloop_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # the committed app, judged without p99 latency: the double answers in microseconds, whose ratio is noise
    apps = tmp_path / "apps"
    apps.mkdir()
    spec = yaml.safe_load((REPO / "apps" / "support_triage.yaml").read_text())
    rollout = get_app(Settings(), "support_triage").promotion.rollout.model_dump()
    del rollout["analysis"]["p99_ratio"]
    spec["promotion"] = {"rollout": rollout}
    (apps / "support_triage.yaml").write_text(yaml.safe_dump(spec))
    monkeypatch.setenv("CTLOOP_APPS_DIR", str(apps))
    settings = Settings(home=ctloop_home)
    write_customers(get_app(settings, "support_triage").customers_path(settings))
    for n in (1, 2, 3):
        r = run_cli("prompt", "register", str(APP / f"prompt-v{n}.txt"), "-M", f"v{n}", "--json")
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["version"] == str(n)

    code, first = _release("1")
    assert code == 0 and first["promoted"] and first["champion"] is None
    assert first["metrics"]["challenger"]["golden_pass_rate"] == 1.0
    assert first["model_version"] == "1"  # support_triage_app v1: the app with prompt v1 pinned

    # v2 drops the line that fences the ticket off as data: the double obeys the injected lines
    code, second = _release("2")
    assert code == 1 and not second["promoted"]
    failed = [c for c in second["decision"]["checks"] if not c["passed"]]
    assert {c["check"] for c in failed} >= {"suite:llm_injection"}
    assert any("obeyed the injected line" in c["detail"] for c in failed)
    assert second["metrics"]["challenger"]["golden_pass_rate"] == 1.0  # the golden cases alone would pass it
    assert second["model_version"] is None

    # v3 keeps the fence and asks for a shorter reply: fewer tokens, the same decisions
    code, third = _release("3")
    assert code == 0 and not third["promoted"] and third["champion"] == "1"
    m = third["metrics"]
    assert m["challenger"]["tokens_per_request"] < m["champion"]["tokens_per_request"]
    assert m["challenger"]["cost_per_1k_requests"] < m["champion"]["cost_per_1k_requests"]
    # it earns its traffic on the served app: 25%, 50%, 100% of the ticket keys
    assert third["rollout"]["weight"] == 0.25
    r = run_cli("prompt", "release", "2", *DOUBLES, env=DOUBLES_ENV)  # one rollout at a time
    assert r.returncode == 2 and "v3's rollout is running" in r.stderr and r.stderr.count("\n") == 1
    status = json.loads(run_cli("prompt", "status", "--json").stdout)
    assert status["aliases"] == {"champion": "1", "previous": None, "candidate": "3"}
    app = get_app(settings, "support_triage")
    assert "p99_ratio" not in app.promotion.rollout.analysis
    tickets = simulated_tickets(date(2026, 1, 5), 600)
    served: list[dict] = []  # type: ignore[type-arg]
    steps = []
    for _ in range(6):
        with TestClient(create_llm_app(settings, app, FakeChat(), RuleEscalation())) as client:
            for ticket in tickets[len(served):len(served) + 100]:
                r = client.post("/answer", json=ticket)
                assert r.status_code == 200, r.text
                served.append(r.json())
        r = run_cli("prompt", "rollout", "advance", "--json")
        assert r.returncode == 0, r.stderr
        analysis = json.loads(r.stdout)["analysis"]
        if analysis["action"] != "wait":  # a step waits for its minimum of candidate answers
            steps.append((analysis["weight"], analysis["action"]))
        if analysis["action"] == "promote":
            break
    assert steps == [(0.25, "next"), (0.5, "next"), (1.0, "promote")], steps
    by_version = {v: sum(1 for s in served if s["prompt_version"] == v) for v in ("1", "3")}
    assert 0 < by_version["3"] < len(served) and by_version["1"] > 0
    # a ticket key stays on its route within a step: the same ticket again is answered by the same version
    with TestClient(create_llm_app(settings, app, FakeChat(), RuleEscalation())) as client:
        assert all(client.post("/answer", json=t).json()["prompt_version"] == "3" for t in tickets[:20])
        assert client.post("/answer", json={"ticket_id": "x"}).status_code == 400
        assert client.post("/answer", content=b"[1]").status_code == 400

    status = json.loads(run_cli("prompt", "status", "--json").stdout)
    assert status["aliases"] == {"champion": "3", "previous": "1", "candidate": None}
    log = llm_log_since(settings.lake_root, "support_triage", datetime(2000, 1, 1, tzinfo=UTC))
    assert len(log) == len(served) + 20 and set(log["prompt_version"]) == {"1", "3"}
    assert log["cost"].gt(0).all() and log["tool_ms"].str.contains("score_escalation").all()

    # the day's window: token use and cost per prompt version, in MLflow and in the audit log
    today = datetime.now(UTC).date().isoformat()
    r = run_cli("prompt", "monitor", "--date", today, "--json")
    assert r.returncode == 0, r.stderr
    window = json.loads(r.stdout)
    assert set(window["versions"]) == {"1", "3"} and window["rows"] == len(log)
    v1, v3 = window["versions"]["1"], window["versions"]["3"]
    assert v3["tokens_per_request"] < v1["tokens_per_request"] and v1["cost"] > 0 and v3["cost"] > 0
    assert window["decision"]["tokens"] == int(log["input_tokens"].sum() + log["output_tokens"].sum())
    import mlflow

    mlflow.set_tracking_uri(settings.tracking_uri)
    client = mlflow.MlflowClient()
    pinned = client.get_model_version("support_triage_app", third["model_version"])
    assert pinned.tags["ctloop.prompt"] == "prompts:/support_triage/3" and pinned.run_id == third["runs"]["challenger"]
    # the logged model answers like the served app, with its prompt version pinned
    import pandas as pd

    from ctloop.llm.model import TriageModel

    model = TriageModel()
    model.app = create_llm_app(settings, app, FakeChat(), RuleEscalation()).state.ctloop._app("3")
    assert json.loads(model.predict(None, pd.DataFrame([{"ticket_id": "t", "text": "charged twice on my invoice"}]))[0])[
        "route"] == "billing"
    run = mlflow.get_run(window["run_id"])
    assert run.data.metrics["v3.cost"] == v3["cost"] and "v1.tool_ms.score_escalation" in run.data.metrics

    r = run_cli("prompt", "rollback", "--reason", "replies too terse", "--json")
    assert r.returncode == 0, r.stderr
    status = json.loads(run_cli("prompt", "status", "--json").stdout)
    assert status["aliases"]["champion"] == "1" and status["aliases"]["previous"] == "3"

    entries = [e for e in audit_log(settings).entries() if e["model"] == "support_triage"]
    kinds = [(e["kind"], e["subject"], e["outcome"]) for e in entries]
    assert ("gate", "prompts:/support_triage/2", "rejected") in kinds
    assert ("rollout", "prompts:/support_triage/3", "promoted") in kinds
    assert [k[2] for k in kinds if k[0] == "rollout"] == ["started", "step passed", "step passed", "promoted"]
    assert kinds[-1][0] == "rollback"
    assert audit_log(settings).verify().ok


def test_prompt_verbs_name_what_is_wrong(ctloop_home: Path, tmp_path: Path) -> None:
    bad = tmp_path / "no-ticket.txt"
    bad.write_text("Reply nicely to {{customer}}.")
    r = run_cli("prompt", "register", str(bad))
    assert r.returncode == 2 and str(bad) in r.stderr and "{{ticket}}" in r.stderr
    assert r.stderr.count("\n") == 1
    r = run_cli("prompt", "register", str(tmp_path / "missing.txt"))
    assert r.returncode == 2 and "missing.txt" in r.stderr
    r = run_cli("prompt", "diff", "1", "2")
    assert r.returncode == 2 and "prompts:/support_triage/1" in r.stderr and r.stderr.count("\n") == 1
    r = run_cli("prompt", "alias", "champion", "1")
    assert r.returncode == 2 and "release" in r.stderr
    r = run_cli("prompt", "status", "--app", "nope")
    assert r.returncode == 2 and "apps/nope.yaml" in r.stderr
