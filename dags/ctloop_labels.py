"""
### ctloop_labels

Delayed ground truth from a real system, one delivery per data interval (daily; `labels.schedule`):
**ingest_labels** lands the day's label files (`labels.path` with `{ds}`) unchanged in `raw_labels/`,
checks them against the labels contract (the id and label columns, labels in `dataset.classes`, one label
per id, arrival times), and stores them in `labels/dt=…`, where `ctloop_monitor` joins them with the
prediction log for concept drift and automatic rollback. A delivery that breaks the contract is
quarantined whole in `quarantine_labels/` with its reasons and the task fails (no retry: the data is at
fault). No delivery that day: the task is skipped. Labels also arrive through `POST /feedback` on
`ctloop serve`.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import Asset, CronDataIntervalTimetable, dag, task
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from ctloop.airflow_edge import labels_cron, schedule_end, schedule_start, task_defaults
from ctloop.core.assets import LABELS

labels_arrived = Asset(name=LABELS)


@dag(
    schedule=CronDataIntervalTimetable(labels_cron(), timezone="UTC"),
    start_date=schedule_start(),
    end_date=schedule_end(),
    catchup=False,
    max_active_runs=4,
    tags=["ctloop", "labels", "monitoring"],
    doc_md=__doc__,
    default_args=task_defaults(retries=2, retry_delay=timedelta(seconds=20), retry_exponential_backoff=True),
)
def ctloop_labels() -> None:
    @task(outlets=[labels_arrived])
    def ingest_labels(data_interval_start=None) -> dict:
        from ctloop.flows.tasks import labels_ingest

        outcome = labels_ingest(data_interval_start)
        if outcome["status"] == "none":
            raise AirflowSkipException(f"no label delivery for {outcome['day']}")
        if outcome["status"] == "quarantined":
            raise AirflowFailException(f"label delivery quarantined: {'; '.join(outcome['reasons'])}")
        return outcome

    ingest_labels()


ctloop_labels()
