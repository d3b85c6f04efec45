"""Alerts go out through Airflow's provider notifiers (http, Slack webhook, SMTP), chosen by the alerts
connection, to real local receivers. The audit entry is written first and a failed delivery never fails
the decision."""

from __future__ import annotations

import json
from collections.abc import Iterator
from email import message_from_bytes
from pathlib import Path

import pytest

from ctloop.core.audit import audit_log, record
from ctloop.core.settings import get_settings
from tests.alert_helpers import WebhookReceiver, http_connection


@pytest.fixture(autouse=True)
def alerts_routed() -> Iterator[None]:
    """This process's audit entries go out as alerts, as in a DAG task or a CLI verb."""
    from ctloop.airflow_edge import alert_on_audit, route_audit_alerts
    from ctloop.core.audit import unsubscribe

    route_audit_alerts()
    yield
    unsubscribe(alert_on_audit)


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    r = WebhookReceiver()
    yield r
    r.close()


def _journal(home: Path) -> list[dict]:
    path = home / "alerts" / "alerts.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_http_webhook_gets_each_alerting_decision(ctloop_home: Path, receiver: WebhookReceiver,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_CTLOOP_ALERTS", http_connection(receiver.url))
    record("gate", "ctloop v2", "passed", ["all metrics pass"])  # not alert-worthy
    record("validation", "batch 2026-01-06", "failed", ["sentiment: unexpected values"])  # neither
    record("gate", "ctloop v4", "rejected", ["roc_auc 0.71 < champion 0.80 - 0.005", "slice en: regressed"],
           {"champion": "3"})
    record("quarantine", "batch 2026-01-06", "quarantined", ["sentiment: 12% unexpected values"])
    record("drift_trigger", "window 2026-02-01", "triggered", ["drift share 0.62 >= 0.5"])
    record("drift_trigger", "window 2026-02-02", "suppressed", ["cooldown"])  # not alert-worthy
    record("rollback", "ctloop v4 -> v3", "rolled back", ["quality dropped 0.09"])
    record("canary_stop", "ctloop v5", "stopped", ["canary error rate 0.40 vs champion 0.00"])

    assert receiver.events() == ["gate_rejection", "quarantine", "drift_trigger", "rollback", "canary_stop"]
    gate = receiver.requests[0]
    assert gate.path == "/hooks/ctloop" and gate.headers["Content-Type"] == "application/json"
    assert gate.body["severity"] == "warning" and gate.body["subject"] == "ctloop v4"
    assert gate.body["reasons"][0].startswith("roc_auc 0.71") and gate.body["details"]["champion"] == "3"
    assert gate.body["text"] == ("[ctloop warning] gate rejected the challenger: ctloop v4: "
                                 "roc_auc 0.71 < champion 0.80 - 0.005; slice en: regressed")
    entries = audit_log(get_settings()).entries()
    assert gate.body["source"] == f"audit #{entries[2]['seq']}" and gate.body["at"] == entries[2]["at"]
    assert [r.body["severity"] for r in receiver.requests[3:]] == ["critical", "critical"]
    journal = _journal(ctloop_home)
    assert [j["delivery"]["delivered"] for j in journal] == [True] * 5
    assert {j["delivery"]["channel"] for j in journal} == {"http"}


def test_slack_webhook_connection_uses_the_slack_notifier(ctloop_home: Path, receiver: WebhookReceiver,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    # a Slack incoming-webhook connection whose host is the local receiver instead of hooks.slack.com
    monkeypatch.setenv("AIRFLOW_CONN_CTLOOP_ALERTS", json.dumps(
        {"conn_type": "slackwebhook", "host": receiver.url, "password": "services/T0/B0/local"}))  # pragma: allowlist secret
    record("rollback", "ctloop v4 -> v3", "rolled back", ["automatic rollback: quality dropped 0.09"],
           {"window": "2026-02-03"}, actor="airflow:ctloop_monitor/run1")
    [req] = receiver.requests
    assert req.path == "/services/T0/B0/local"
    assert req.body["text"] == "[ctloop critical] champion rolled back: ctloop v4 -> v3: automatic rollback: quality dropped 0.09"
    fields = req.body["blocks"][1]["text"]["text"]
    assert "*window*: 2026-02-03" in fields and "*actor*: airflow:ctloop_monitor/run1" in fields
    assert _journal(ctloop_home)[0]["delivery"]["channel"] == "slackwebhook"


def test_smtp_connection_sends_an_email(ctloop_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from aiosmtpd.controller import Controller

    received: list[tuple[str, list[str], bytes]] = []

    class Handler:
        async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
            received.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
            return "250 OK"

    from ctloop.dev.local_airflow import free_port

    port = free_port()
    smtp = Controller(Handler(), hostname="127.0.0.1", port=port)
    smtp.start()
    try:
        monkeypatch.setenv("AIRFLOW_CONN_CTLOOP_ALERTS", json.dumps(
            {"conn_type": "smtp", "host": "127.0.0.1", "port": port,
             "extra": {"to": "ml-oncall@example.com", "from_email": "ctloop@example.com",
                       "disable_tls": True, "disable_ssl": True}}))
        record("quarantine", "batch 2026-01-06", "quarantined", ["sentiment: 12% unexpected values"])
    finally:
        smtp.stop()
    [(sender, to, content)] = received
    assert sender == "ctloop@example.com" and to == ["ml-oncall@example.com"]
    mail = message_from_bytes(content)
    assert mail["Subject"] == "[ctloop warning] batch quarantined: batch 2026-01-06: sentiment: 12% unexpected values"
    html = next(p for p in mail.walk() if p.get_content_type() == "text/html").get_payload(decode=True).decode()
    assert "<li>sentiment: 12% unexpected values</li>" in html


def test_a_flaky_endpoint_is_retried_and_a_dead_one_never_fails_the_decision(
        ctloop_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    flaky = WebhookReceiver(fail_first=1)
    try:
        monkeypatch.setenv("AIRFLOW_CONN_CTLOOP_ALERTS", http_connection(flaky.url))
        record("gate", "ctloop v4", "rejected", ["roc_auc regressed"])
        assert flaky.answered == 2 and flaky.events() == ["gate_rejection"]
        assert _journal(ctloop_home)[-1]["delivery"] == {"event": "gate_rejection", "delivered": True,
                                                         "channel": "http", "attempts": 2, "error": None}
    finally:
        flaky.close()
    # the endpoint is gone: both attempts fail, the audit entry stands and the failure is journaled
    entry = record("rollback", "ctloop v4 -> v3", "rolled back", ["quality dropped"])
    assert audit_log(get_settings()).entries()[-1]["hash"] == entry.hash
    failed = _journal(ctloop_home)[-1]["delivery"]
    assert failed["delivered"] is False and failed["attempts"] == 2 and "Connection" in failed["error"]
    assert audit_log(get_settings()).verify().ok


def test_events_filter_unknown_type_and_no_connection(ctloop_home: Path, receiver: WebhookReceiver,
                                                      use_params, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    # no connection: alerts are off, nothing is journaled, decisions are recorded as ever
    record("gate", "ctloop v4", "rejected", ["roc_auc regressed"])
    assert _journal(ctloop_home) == [] and len(audit_log(get_settings()).entries()) == 1

    use_params(alerts={"events": ["rollback"], "conn_id": "ops_webhook"})
    monkeypatch.setenv("AIRFLOW_CONN_OPS_WEBHOOK", http_connection(receiver.url, "/ops"))
    record("gate", "ctloop v5", "rejected", ["roc_auc regressed"])
    record("rollback", "ctloop v5 -> v4", "rolled back", ["quality dropped"])
    assert receiver.events() == ["rollback"] and receiver.requests[0].path == "/ops"

    monkeypatch.setenv("AIRFLOW_CONN_OPS_WEBHOOK", json.dumps({"conn_type": "postgres", "host": "127.0.0.1"}))
    record("rollback", "ctloop v4 -> v3", "rolled back", ["quality dropped"])
    failed = _journal(ctloop_home)[-1]["delivery"]
    assert failed["attempts"] == 1 and failed["delivered"] is False
    assert failed["error"] == "connection 'ops_webhook': type 'postgres' cannot carry alerts; use http, slackwebhook or smtp"
