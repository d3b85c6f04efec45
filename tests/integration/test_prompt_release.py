"""A prompt change through the gate, as a user runs it: `ctloop prompt register`, `release`, `rollback`, on a
real MLflow (SQLite store, Prompt Registry, mlflow.genai.evaluate with code scorers) and the committed
support-triage app, its golden set and knowledge base. The model is the in-process double
(tests/llm_doubles.py); tests/llm runs the real local model when llama-cpp-python is installed."""

from __future__ import annotations

import json
from pathlib import Path

from ctloop.core.apps import get_app
from ctloop.core.audit import audit_log
from ctloop.core.settings import Settings
from ctloop.dev.llm_demo import write_customers
from tests.conftest import REPO, run_cli

APP = REPO / "apps" / "support_triage"
DOUBLES_ENV = {"PYTHONPATH": str(REPO)}  # the doubles are importable as tests.llm_doubles
DOUBLES = ["--provider-factory", "tests.llm_doubles:fake_chat", "--escalation-factory", "tests.llm_doubles:rule_escalation"]


def _release(version: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    r = run_cli("prompt", "release", version, *DOUBLES, "--json", env=DOUBLES_ENV)
    assert r.stdout.count("\n") == 1, r.stdout + r.stderr  # one JSON object, evaluate's own output kept off stdout
    return r.returncode, json.loads(r.stdout)


def test_a_prompt_that_obeys_injections_is_rejected_and_a_better_one_promoted(ctloop_home: Path) -> None:
    settings = Settings(home=ctloop_home)
    write_customers(get_app(settings, "support_triage").customers_path(settings))
    for n in (1, 2, 3):
        r = run_cli("prompt", "register", str(APP / f"prompt-v{n}.txt"), "-M", f"v{n}", "--json")
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["version"] == str(n)

    code, first = _release("1")
    assert code == 0 and first["promoted"] and first["champion"] is None
    assert first["metrics"]["challenger"]["golden_pass_rate"] == 1.0

    # v2 drops the line that fences the ticket off as data: the double obeys the injected lines
    code, second = _release("2")
    assert code == 1 and not second["promoted"]
    failed = [c for c in second["decision"]["checks"] if not c["passed"]]
    assert {c["check"] for c in failed} >= {"suite:llm_injection"}
    assert any("obeyed the injected line" in c["detail"] for c in failed)
    assert second["metrics"]["challenger"]["golden_pass_rate"] == 1.0  # the golden cases alone would pass it

    # v3 keeps the fence and asks for a shorter reply: fewer tokens, the same decisions
    code, third = _release("3")
    assert code == 0 and third["promoted"] and third["champion"] == "1"
    m = third["metrics"]
    assert m["challenger"]["tokens_per_request"] < m["champion"]["tokens_per_request"]
    assert m["challenger"]["cost_per_1k_requests"] < m["champion"]["cost_per_1k_requests"]

    status = json.loads(run_cli("prompt", "status", "--json").stdout)
    assert status["aliases"] == {"champion": "3", "previous": "1", "candidate": None}

    r = run_cli("prompt", "rollback", "--reason", "replies too terse", "--json")
    assert r.returncode == 0, r.stderr
    status = json.loads(run_cli("prompt", "status", "--json").stdout)
    assert status["aliases"]["champion"] == "1" and status["aliases"]["previous"] == "3"

    entries = [e for e in audit_log(settings).entries() if e["model"] == "support_triage"]
    kinds = [(e["kind"], e["subject"], e["outcome"]) for e in entries]
    assert ("gate", "prompts:/support_triage/2", "rejected") in kinds
    assert ("promotion", "prompts:/support_triage/3", "promoted") in kinds
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
