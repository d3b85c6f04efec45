"""The embedded Airflow under strain: backfills created while the scheduler is busy with other backfills
all finish with the scheduler alive, and a scheduler that dies makes the next wait fail at once, naming the
process and its log (never a silent wait)."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

from ctloop.core.errors import AirflowRuntimeFailed
from tests.e2e.conftest import start_airflow

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def busy_airflow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple]:  # type: ignore[type-arg]
    home = tmp_path_factory.mktemp("busy")
    airflow, settings = start_airflow(home, schedule_end=date(2026, 1, 10), source={"rows_per_day": 200})
    try:
        airflow.wait_for_dags(["ctloop_ingest", "ctloop_monitor"])
        yield airflow, settings
    finally:
        airflow.stop()


def test_backfills_created_while_the_scheduler_is_busy_all_finish(busy_airflow) -> None:  # type: ignore[no-untyped-def]
    airflow, _ = busy_airflow
    lines: list[str] = []
    # three backfills back to back: each is created while the scheduler creates and runs the others' runs
    ingest_a = airflow.backfill("ctloop_ingest", "2026-01-05", "2026-01-07", max_active_runs=4)
    monitor = airflow.backfill("ctloop_monitor", "2026-01-05", "2026-01-08", max_active_runs=4)
    airflow.wait_for_backfill(ingest_a, timeout=600, progress=lines.append)
    ingest_b = airflow.backfill("ctloop_ingest", "2026-01-08", "2026-01-10", max_active_runs=4)
    airflow.wait_for_backfill(monitor, timeout=600)
    airflow.wait_for_backfill(ingest_b, timeout=600)
    airflow.check_processes()  # every Airflow process is alive

    ingest = {r["logical_date"][:10]: r["state"] for r in airflow.dag_runs("ctloop_ingest")}
    assert len(ingest) == 6 and set(ingest.values()) == {"success"}, ingest
    # no champion exists, so every monitor run fails: what matters is that each ran and finished
    monitored = {r["logical_date"][:10]: r["state"] for r in airflow.dag_runs("ctloop_monitor")}
    assert len(monitored) == 4 and set(monitored.values()) == {"failed"}, monitored
    assert lines and "ctloop_ingest backfill" in lines[-1], "progress is printed while waiting"
    assert "FOREIGN KEY constraint failed" not in (airflow.home / "process-logs" / "scheduler.log").read_text()


def test_a_dead_scheduler_fails_the_next_wait_naming_its_log(busy_airflow) -> None:  # type: ignore[no-untyped-def]
    airflow, _ = busy_airflow
    scheduler = airflow.processes["scheduler"]
    os.killpg(scheduler.pid, signal.SIGKILL)
    scheduler.wait()
    with pytest.raises(AirflowRuntimeFailed) as failed:
        airflow.wait_for_runs("ctloop_ingest", 7, timeout=600)  # never satisfied: only the watch ends it
    message = str(failed.value)
    assert "airflow scheduler" in message and "exited with -9" in message
    assert str(Path(airflow.home) / "process-logs" / "scheduler.log") in message
