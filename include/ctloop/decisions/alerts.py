"""Which decisions page someone: the alert an audit entry raises (pure; delivery is
:mod:`ctloop.airflow_edge`, through Airflow's provider notifiers).

=============== ============================================================ ==========
event           raised when                                                  severity
=============== ============================================================ ==========
task_failure    a ctloop task failed for good (``on_failure_callback``)      critical
quarantine      a batch failed validation and was quarantined / withdrawn    warning
validation_warning  a batch passed with warning-level expectations failed    warning
gate_rejection  the gate rejected a challenger                               warning
drift_trigger   the monitor triggered a retrain                              info
rollback        the champion was rolled back (automatic or by hand)          critical
canary_stop     the serving guard stopped a canary                           critical
=============== ============================================================ ==========

Every event but ``task_failure`` is an audit entry first, so an alert never says anything the audit log
does not.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

EVENTS = ("task_failure", "quarantine", "validation_warning", "gate_rejection", "drift_trigger", "rollback",
          "canary_stop")

# (audit kind, audit outcome) -> (event, severity, headline); "*" matches any outcome
_FROM_AUDIT: dict[tuple[str, str], tuple[str, str, str]] = {
    ("quarantine", "quarantined"): ("quarantine", "warning", "batch quarantined"),
    ("quarantine", "withdrawn"): ("quarantine", "warning", "curated day withdrawn"),
    ("validation", "passed with warnings"): ("validation_warning", "warning", "batch passed with warnings"),
    ("gate", "rejected"): ("gate_rejection", "warning", "gate rejected the challenger"),
    ("drift_trigger", "triggered"): ("drift_trigger", "info", "drift triggered a retrain"),
    ("rollback", "rolled back"): ("rollback", "critical", "champion rolled back"),
    ("canary_stop", "*"): ("canary_stop", "critical", "canary stopped"),
    ("rollout", "aborted"): ("rollout_abort", "critical", "staged rollout aborted"),
    ("rollout", "paused"): ("rollout_pause", "warning", "staged rollout paused for a person"),
    ("llm_monitor", "alert"): ("llm_alert", "warning", "LLM app beyond its limits"),
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
    model = entry.get("model")
    where = f"{model}: " if model else ""  # one deployment, many models: the alert says whose decision it is
    return Alert(event, severity, f"{headline}: {where}{entry.get('subject')}", str(entry.get("subject")),
                 [str(r) for r in entry.get("reasons") or []],
                 {**(entry.get("details") or {}), "actor": entry.get("actor"), "outcome": outcome,
                  **({"model": model} if model else {})},
                 at=str(entry.get("at") or datetime.now(UTC).isoformat(timespec="seconds")),
                 source=f"audit #{entry.get('seq')}")
