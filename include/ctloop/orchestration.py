"""What DAG files need at parse time: schedules and start dates. Light on purpose (no pandas, no GX):
importing a DAG file must stay fast (DESIGN.md style rule 2)."""

from __future__ import annotations

from datetime import UTC, datetime

from ctloop.params import get_params
from ctloop.settings import get_settings


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
