"""The real scheduler backfills three days of ctloop_ingest, one of them bad. Then the embedded Airflow under
strain: backfills created while the scheduler is busy with other backfills all finish with the scheduler
alive, and a scheduler that dies makes the next wait fail at once, naming the process and its log (never a
silent wait). The dead-scheduler test comes last: it leaves this module's Airflow without a scheduler."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from ctloop.core.errors import AirflowRuntimeFailed

pytestmark = pytest.mark.e2e


def test_backfill_three_days_one_bad(running_airflow, webhook) -> None:  # type: ignore[no-untyped-def]
    airflow, settings = running_airflow
    airflow.wait_for_dags(["support_escalation__ingest"])
    airflow.unpause("support_escalation__ingest")
    backfill = airflow.backfill("support_escalation__ingest", "2026-01-05", "2026-01-07")
    airflow.wait_for_backfill(backfill, timeout=600)

    runs = {r["logical_date"][:10]: r for r in airflow.dag_runs("support_escalation__ingest")}
    assert set(runs) == {"2026-01-05", "2026-01-06", "2026-01-07"}, "the real clock added no runs"
    assert {d: r["state"] for d, r in runs.items()} == {
        "2026-01-05": "success", "2026-01-06": "failed", "2026-01-07": "success"}
    bad = {t["task_id"]: t["state"] for t in airflow.task_instances("support_escalation__ingest", runs["2026-01-06"]["dag_run_id"])}
    assert bad["extract_batch"] == "success" and bad["validate_batch"] == "failed"
    assert bad["publish_curated"] == "upstream_failed"
    assert next(t for t in airflow.task_instances("support_escalation__ingest", runs["2026-01-06"]["dag_run_id"])
            if t["task_id"] == "validate_batch")["try_number"] == 1, "bad data is not retried"

    lake = settings.lake_root
    for day in ("2026-01-05", "2026-01-07"):
        manifest = json.loads((lake / "curated" / f"dt={day}" / "_manifest.json").read_text())
        assert manifest["rows"] == 500
        assert [f["path"] for f in manifest["raw_files"]] == [str(p) for p in sorted((lake / "raw" / f"dt={day}").glob("batch-*"))]
    assert not (lake / "curated" / "dt=2026-01-06").exists()
    [result] = (lake / "quarantine" / "dt=2026-01-06").glob("*/validation.json")
    assert "sentiment" in {f["column"] for f in json.loads(result.read_text())["failed_expectations"]}
    for day in ("2026-01-05", "2026-01-06", "2026-01-07"):
        assert len(list((lake / "raw" / f"dt={day}").glob("batch-*"))) == 1

    # the embedded Airflow alerts too: the quarantine (from the task) and the task's failure (its
    # on_failure_callback, through the provider's HttpNotifier), once each; the good days raise nothing
    received = webhook.wait_for(lambda rs: len(rs) >= 2)
    assert sorted(r.body["event"] for r in received) == ["quarantine", "task_failure"]
    failure = next(r.body for r in received if r.body["event"] == "task_failure")
    assert failure["details"]["task_id"] == "validate_batch" and failure["details"]["try_number"] == 1
    assert "sentiment" in next(r.body for r in received if r.body["event"] == "quarantine")["text"]


def test_backfills_created_while_the_scheduler_is_busy_all_finish(running_airflow) -> None:  # type: ignore[no-untyped-def]
    airflow, _ = running_airflow
    lines: list[str] = []
    # three backfills back to back: each is created while the scheduler creates and runs the others' runs
    airflow.unpause("support_escalation__labels")
    ingest_a = airflow.backfill("support_escalation__ingest", "2026-01-08", "2026-01-10", max_active_runs=4)
    labels = airflow.backfill("support_escalation__labels", "2026-01-08", "2026-01-11", max_active_runs=4)
    airflow.wait_for_backfill(ingest_a, timeout=600, progress=lines.append)
    ingest_b = airflow.backfill("support_escalation__ingest", "2026-01-11", "2026-01-13", max_active_runs=4)
    airflow.wait_for_backfill(labels, timeout=600)
    airflow.wait_for_backfill(ingest_b, timeout=600)
    airflow.check_processes()  # every Airflow process is alive

    ingest = {r["logical_date"][:10]: r["state"] for r in airflow.dag_runs("support_escalation__ingest")
              if r["logical_date"][:10] >= "2026-01-08"}
    assert len(ingest) == 6 and set(ingest.values()) == {"success"}, ingest
    # no label delivery on those days: each run's task is skipped and the run succeeds
    labelled = {r["logical_date"][:10]: r["state"] for r in airflow.dag_runs("support_escalation__labels")}
    assert len(labelled) == 4 and set(labelled.values()) == {"success"}, labelled
    assert lines and "support_escalation__ingest backfill" in lines[-1], "progress is printed while waiting"
    assert "FOREIGN KEY constraint failed" not in (airflow.home / "process-logs" / "scheduler.log").read_text()


def test_a_dead_scheduler_fails_the_next_wait_naming_its_log(running_airflow) -> None:  # type: ignore[no-untyped-def]
    airflow, _ = running_airflow
    scheduler = airflow.processes["scheduler"]
    os.killpg(scheduler.pid, signal.SIGKILL)
    scheduler.wait()
    with pytest.raises(AirflowRuntimeFailed) as failed:
        airflow.wait_for_runs("support_escalation__ingest", 10, timeout=600)  # never satisfied: only the watch ends it
    message = str(failed.value)
    assert "airflow scheduler" in message and "exited with -9" in message
    assert str(Path(airflow.home) / "process-logs" / "scheduler.log") in message
