"""Alerts: the events an operator must hear about, delivered through Airflow's provider notifiers.

=============== ============================================================ ==========
event           raised when                                                  severity
=============== ============================================================ ==========
task_failure    a ctloop task failed for good (``on_failure_callback``)      critical
quarantine      a batch failed validation and was quarantined / withdrawn    warning
gate_rejection  the gate rejected a challenger                               warning
drift_trigger   the monitor triggered a retrain                              info
rollback        the champion was rolled back (automatic or by hand)          critical
canary_stop     the serving guard stopped a canary                           critical
=============== ============================================================ ==========

Every event but ``task_failure`` is an audit entry first (``ctloop.audit.record`` hands each new entry to
:func:`alert_on_audit`), so an alert never says anything the audit log does not.

The channel is one Airflow connection, ``alerts.conn_id`` in params.yaml (default ``ctloop_alerts``), read
from any Airflow secrets source: ``AIRFLOW_CONN_CTLOOP_ALERTS``, the metadata DB, a secrets backend. Its
type picks the provider's notifier:

* ``http``: :class:`~airflow.providers.http.notifications.HttpNotifier` POSTs the alert as JSON to the
  connection's URL (+ extra ``endpoint``). The body has a ``text`` line too, which is what Slack-compatible
  webhooks (Mattermost, Rocket.Chat, Teams workflows) display.
* ``slackwebhook``: :class:`~airflow.providers.slack.notifications.slack_webhook.SlackWebhookNotifier`.
* ``smtp``: :class:`~airflow.providers.smtp.notifications.smtp.SmtpNotifier`, to extra ``to``.

No such connection: alerts are off. A delivery that fails is retried once, then logged; it never fails the
decision it reports (that is in the audit log already). Every attempt is written to
``CTLOOP_HOME/alerts/alerts.jsonl`` with its outcome.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow.sdk import BaseNotifier

    from ctloop.params import AlertsSpec
    from ctloop.settings import Settings

log = logging.getLogger(__name__)

EVENTS = ("task_failure", "quarantine", "gate_rejection", "drift_trigger", "rollback", "canary_stop")

# (audit kind, audit outcome) -> (event, severity, headline); "*" matches any outcome
_FROM_AUDIT: dict[tuple[str, str], tuple[str, str, str]] = {
    ("quarantine", "quarantined"): ("quarantine", "warning", "batch quarantined"),
    ("quarantine", "withdrawn"): ("quarantine", "warning", "curated day withdrawn"),
    ("gate", "rejected"): ("gate_rejection", "warning", "gate rejected the challenger"),
    ("drift_trigger", "triggered"): ("drift_trigger", "info", "drift triggered a retrain"),
    ("rollback", "rolled back"): ("rollback", "critical", "champion rolled back"),
    ("canary_stop", "*"): ("canary_stop", "critical", "canary stopped"),
}


@dataclass(frozen=True)
class Alert:
    event: str
    severity: str
    title: str
    subject: str
    reasons: list[str]
    details: dict[str, Any] = field(default_factory=dict)
    at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    source: str = ""  # "audit #12" or "dag/run/task"

    @property
    def text(self) -> str:
        why = "; ".join(self.reasons[:3]) + (f" (+{len(self.reasons) - 3} more)" if len(self.reasons) > 3 else "")
        return f"[ctloop {self.severity}] {self.title}" + (f": {why}" if why else "")

    def payload(self) -> dict[str, Any]:
        return {**asdict(self), "text": self.text}


@dataclass(frozen=True)
class Delivery:
    event: str
    delivered: bool
    channel: str | None
    attempts: int
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def alert_from_audit(entry: dict[str, Any]) -> Alert | None:
    """The alert an audit entry raises, or None for entries nobody needs paging about."""
    kind, outcome = str(entry.get("kind")), str(entry.get("outcome"))
    match = _FROM_AUDIT.get((kind, outcome)) or _FROM_AUDIT.get((kind, "*"))
    if match is None:
        return None
    event, severity, headline = match
    return Alert(event, severity, f"{headline}: {entry.get('subject')}", str(entry.get("subject")),
                 [str(r) for r in entry.get("reasons") or []],
                 {**(entry.get("details") or {}), "actor": entry.get("actor"), "outcome": outcome},
                 at=str(entry.get("at") or datetime.now(UTC).isoformat(timespec="seconds")),
                 source=f"audit #{entry.get('seq')}")


def alert_from_task_failure(context: Any) -> Alert:
    """A ``task_failure`` alert from an Airflow task context (``on_failure_callback``)."""
    ti = context["ti"]
    error = context.get("exception")
    reasons = [f"{type(error).__name__}: {error}"] if error is not None else ["the task failed"]
    details = {"dag_id": ti.dag_id, "task_id": ti.task_id, "run_id": ti.run_id,
               "try_number": getattr(ti, "try_number", None), "map_index": getattr(ti, "map_index", -1),
               "hostname": getattr(ti, "hostname", None), "log_url": getattr(ti, "log_url", None),
               "data_interval_start": str(context.get("data_interval_start") or "") or None}
    subject = f"{ti.dag_id}.{ti.task_id}"
    return Alert("task_failure", "critical", f"task failed: {subject} ({ti.run_id})", subject, reasons, details,
                 source=f"{ti.dag_id}/{ti.run_id}/{ti.task_id}")


# delivery -------------------------------------------------------------------------------------------------

def _connection(conn_id: str) -> Any | None:
    from airflow.sdk import Connection
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        return Connection.get(conn_id)
    except AirflowNotFoundException:
        return None


def provider_notifier(conn: Any, alert: Alert, spec: AlertsSpec) -> BaseNotifier:
    """The provider's notifier for the connection's type, carrying this alert."""
    kind = (conn.conn_type or "").lower()
    extra = conn.extra_dejson or {}
    if kind in ("http", "https"):
        from airflow.providers.http.notifications.http import HttpNotifier

        return HttpNotifier(http_conn_id=conn.conn_id, endpoint=extra.get("endpoint"), json=alert.payload(),
                            headers={"Content-Type": "application/json"},
                            extra_options={"timeout": spec.timeout_seconds, "check_response": True})
    if kind == "slackwebhook":
        from airflow.providers.slack.notifications.slack_webhook import SlackWebhookNotifier

        fields = "\n".join(f"*{k}*: {v}" for k, v in alert.details.items() if v not in (None, "", [], {}))
        blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": alert.text}}]
        if fields:
            blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": fields[:2900]}})
        return SlackWebhookNotifier(slack_webhook_conn_id=conn.conn_id, text=alert.text, blocks=blocks,
                                    timeout=int(spec.timeout_seconds))
    if kind in ("smtp", "email"):
        from airflow.providers.smtp.notifications.smtp import SmtpNotifier

        to = extra.get("to")
        if not to:
            raise ValueError(f"connection {conn.conn_id!r} (smtp): extra field 'to' (recipients) is missing")
        rows = "".join(f"<tr><th align=left>{k}</th><td>{v}</td></tr>" for k, v in alert.details.items())
        reasons = "".join(f"<li>{r}</li>" for r in alert.reasons)
        return SmtpNotifier(to=to, smtp_conn_id=conn.conn_id, subject=alert.text[:200],
                            html_content=f"<p>{alert.title}</p><ul>{reasons}</ul><table>{rows}</table>")
    raise ValueError(f"connection {conn.conn_id!r}: type {conn.conn_type!r} cannot carry alerts; "
                     f"use http, slackwebhook or smtp")


def _journal(settings: Settings, alert: Alert, delivery: Delivery) -> None:
    from ctloop.locks import file_lock

    path = settings.home / "alerts" / "alerts.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(path.with_name(".lock")), path.open("a") as fh:
        fh.write(json.dumps({"alert": alert.payload(), "delivery": delivery.to_dict()}, default=str) + "\n")


def send(alert: Alert, spec: AlertsSpec, settings: Settings) -> Delivery:
    """Deliver one alert through the configured connection; never raises."""
    if alert.event not in spec.events:
        return Delivery(alert.event, False, None, 0, "event not in alerts.events")
    lookup_error: str | None = None
    try:
        conn = _connection(spec.conn_id)
    except Exception as e:  # a secrets backend that is down must not take the decision with it
        log.error("ctloop alerts: cannot read connection %r: %s", spec.conn_id, e)
        conn, lookup_error = None, f"connection lookup failed: {e}"
    if conn is None:
        delivery = Delivery(alert.event, False, None, 0, lookup_error or f"connection {spec.conn_id!r} not defined")
        if lookup_error:
            _journal(settings, alert, delivery)
        return delivery
    error: str | None = None
    attempts = 0
    for attempts in range(1, spec.attempts + 1):
        try:
            provider_notifier(conn, alert, spec).notify({})
            error = None
            break
        except ValueError as e:  # the connection cannot carry alerts: retrying will not help
            error = str(e)
            break
        except Exception as e:
            error = f"{type(e).__name__}: {e}"
            if attempts < spec.attempts:
                time.sleep(spec.retry_delay_seconds)
    delivery = Delivery(alert.event, error is None, conn.conn_type, attempts, error)
    if error:
        log.error("ctloop alerts: %s not delivered through %r after %d attempt(s): %s", alert.event,
                  spec.conn_id, attempts, error)
    else:
        log.info("ctloop alerts: %s sent through %r (%s)", alert.event, spec.conn_id, conn.conn_type)
    _journal(settings, alert, delivery)
    from ctloop.telemetry import emit_counter

    emit_counter("alerts", {"event": alert.event, "delivered": str(delivery.delivered).lower()})
    return delivery


def alert_spec(settings: Settings) -> AlertsSpec:
    from ctloop.params import load_params

    return load_params(settings.params).alerts


def alert_on_audit(entry: dict[str, Any], settings: Settings) -> Delivery | None:
    """Called for every new audit entry; sends the alert it raises, if any. Never raises."""
    try:
        alert = alert_from_audit(entry)
        return None if alert is None else send(alert, alert_spec(settings), settings)
    except Exception:
        log.exception("ctloop alerts: could not alert on audit entry #%s", entry.get("seq"))
        return None
