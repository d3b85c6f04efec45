"""``dag.test()`` of ctloop_ingest for a good and a bad day: real GX, real lake, in-process tasks."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.conftest import load_dag


@pytest.fixture
def ingest_dag(airflow_db, use_params):  # type: ignore[no-untyped-def]
    use_params(source={"rows_per_day": 400, "incidents": {"2026-02-11": "schema_break"}})

    return load_dag("ingest")


def _test_interval(dag, day: str):  # type: ignore[no-untyped-def]
    """A manual run (which dag.test() is) covers the last complete interval before its logical date."""
    run = dag.test(logical_date=datetime.fromisoformat(day).replace(tzinfo=UTC) + timedelta(days=1))
    assert run.data_interval_start.date().isoformat() == day
    return run


def _states(run) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {ti.task_id: str(ti.state) for ti in run.get_task_instances()}


def test_good_day_is_curated(ingest_dag, ctloop_home: Path) -> None:  # type: ignore[no-untyped-def]
    run = _test_interval(ingest_dag, "2026-02-10")
    assert str(run.state) == "success", _states(run)
    curated = ctloop_home / "lake" / "curated" / "dt=2026-02-10"
    manifest = json.loads((curated / "_manifest.json").read_text())
    assert manifest["rows"] == 400 and manifest["suite"] == "support_escalation_batch"
    assert len(list((ctloop_home / "lake" / "raw" / "dt=2026-02-10").glob("batch-*"))) == 1


def test_bad_day_is_quarantined_and_fails_the_task(ingest_dag, ctloop_home: Path) -> None:  # type: ignore[no-untyped-def]
    run = _test_interval(ingest_dag, "2026-02-11")
    states = _states(run)
    assert str(run.state) == "failed"
    assert states["extract_batch"] == "success" and states["validate_batch"] == "failed"
    assert states["publish_curated"] in ("upstream_failed", "skipped")
    lake = ctloop_home / "lake"
    assert not (lake / "curated" / "dt=2026-02-11").exists()
    [result] = (lake / "quarantine" / "dt=2026-02-11").glob("*/validation.json")
    failed = json.loads(result.read_text())["failed_expectations"]
    assert "sentiment" in {f["column"] for f in failed}
    assert len(list((lake / "raw" / "dt=2026-02-11").glob("batch-*"))) == 1
