"""Task bodies for the DAGs: primitive arguments in, small JSON-able results out (paths, ids, dicts).
Each function loads settings and params itself, so a task is one call from its DAG file."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from typing import Any


def _day(value: datetime | date | str) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])


def _runtime():  # type: ignore[no-untyped-def]
    from ctloop.data.store import Lake
    from ctloop.params import load_params
    from ctloop.settings import get_settings

    settings = get_settings()
    return settings, load_params(settings.params), Lake(settings.lake_root)


def ingest_extract(interval_start: datetime | str) -> list[str]:
    from ctloop.ingest import extract_batch

    _, params, lake = _runtime()
    return [str(p) for p in extract_batch(_day(interval_start), params, lake)]


def ingest_validate(interval_start: datetime | str, raw_files: list[str]) -> dict[str, Any]:
    """Raises ValidationFailed (after quarantining) when the batch is bad."""
    from ctloop.ingest import validate_batch
    from ctloop.validation.context import open_context

    settings, params, lake = _runtime()
    result = validate_batch(_day(interval_start), [Path(p) for p in raw_files], params, lake, open_context(settings))
    return {k: result[k] for k in ("suite", "success", "row_count", "evaluated", "seconds")}


def ingest_publish(interval_start: datetime | str, raw_files: list[str], validation: dict[str, Any]) -> str:
    from ctloop.ingest import publish_curated

    _, params, lake = _runtime()
    return str(publish_curated(_day(interval_start), [Path(p) for p in raw_files], validation, params, lake))
