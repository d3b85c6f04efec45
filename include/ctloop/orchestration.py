"""What DAG files need at parse time: schedules and start dates. Light on purpose (no pandas, no GX):
importing a DAG file must stay fast (DESIGN.md style rule 2)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from airflow.sdk import BaseNotifier

from ctloop.params import get_params
from ctloop.settings import get_settings

log = logging.getLogger(__name__)


def schedule_start() -> datetime:
    """``schedule.start_date`` from params.yaml."""
    day = get_params().schedule.start_date
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def schedule_end() -> datetime | None:
    """``CTLOOP_SCHEDULE_END`` (demo and tests on a simulated calendar), else no end."""
    day = get_settings().schedule_end
    return None if day is None else datetime(day.year, day.month, day.day, tzinfo=UTC)


def ingest_cron() -> str:
    return get_params().schedule.ingest


def retrain_cron() -> str:
    return get_params().training.schedule


def retrain_defaults() -> dict[str, object]:
    """Defaults of the manual-trigger form, from params.yaml."""
    t = get_params().training
    return {"window_days": t.window_days, "model": t.model}


def monitor_cron() -> str:
    return get_params().monitoring.schedule


class TaskFailureNotifier(BaseNotifier):
    """``on_failure_callback`` of every ctloop task: a task that failed for good (retries spent, or failed
    without retry) becomes a ``task_failure`` alert through the ``alerts.conn_id`` connection
    (``ctloop.alerts``). A task that will be retried raises no alert."""

    template_fields = ()

    def notify(self, context: Any) -> None:
        from ctloop.alerts import alert_from_task_failure, alert_spec, send

        settings = get_settings()
        try:
            send(alert_from_task_failure(context), alert_spec(settings), settings)
        except Exception:  # a callback that raises only adds noise to the task log; say what went wrong
            log.exception("ctloop alerts: could not send the task_failure alert")


def task_defaults(**overrides: Any) -> dict[str, Any]:
    """``default_args`` of every ctloop DAG: failure alerts, plus the DAG's own retry settings."""
    return {"on_failure_callback": [TaskFailureNotifier()], **overrides}
