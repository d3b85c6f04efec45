"""What DAG files need at parse time: schedules and start dates. Light on purpose (no pandas, no GX):
importing a DAG file must stay fast (DESIGN.md style rule 2)."""

from __future__ import annotations

from datetime import datetime, timezone

from ctloop.params import get_params
from ctloop.settings import get_settings


def schedule_start() -> datetime:
    """``CTLOOP_SCHEDULE_START`` when set (demo, tests), else ``schedule.start_date`` from params.yaml."""
    day = get_settings().schedule_start or get_params().schedule.start_date
    return datetime(day.year, day.month, day.day, tzinfo=timezone.utc)


def ingest_cron() -> str:
    return get_params().schedule.ingest
