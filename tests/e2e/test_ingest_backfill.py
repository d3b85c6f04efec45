"""The real scheduler backfills three days of ctloop_ingest, one of them bad."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.e2e


def test_backfill_three_days_one_bad(running_airflow, webhook) -> None:  # type: ignore[no-untyped-def]
    airflow, settings = running_airflow
    airflow.wait_for_dags(["ctloop_ingest"])
    airflow.unpause("ctloop_ingest")
    backfill = airflow.backfill("ctloop_ingest", "2026-01-05", "2026-01-07")
    airflow.wait_for_backfill(backfill, timeout=600)

    runs = {r["logical_date"][:10]: r for r in airflow.dag_runs("ctloop_ingest")}
    assert set(runs) == {"2026-01-05", "2026-01-06", "2026-01-07"}, "the real clock added no runs"
    assert {d: r["state"] for d, r in runs.items()} == {
        "2026-01-05": "success", "2026-01-06": "failed", "2026-01-07": "success"}
    bad = {t["task_id"]: t["state"] for t in airflow.task_instances("ctloop_ingest", runs["2026-01-06"]["dag_run_id"])}
    assert bad["extract_batch"] == "success" and bad["validate_batch"] == "failed"
    assert bad["publish_curated"] == "upstream_failed"
    assert next(t for t in airflow.task_instances("ctloop_ingest", runs["2026-01-06"]["dag_run_id"])
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
