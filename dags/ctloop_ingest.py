"""
### ctloop_ingest

One partition per data interval (daily): **extract** the delivered batch into `raw/dt=…` (immutable),
**validate** it with the committed Great Expectations suite, then **publish** it to `curated/dt=…` and
emit the curated-data Asset. A batch that fails validation is moved to `quarantine/dt=…` with its
validation result beside it, and the validate task fails listing the failed expectations (no retry:
the data, not the infrastructure, is at fault). Re-running a day rewrites the same partitions.

Backfill: `airflow backfill create --dag-id ctloop_ingest --from-date … --to-date …`.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import Asset, CronDataIntervalTimetable, dag, task
from airflow.sdk.exceptions import AirflowFailException

from ctloop.airflow_edge import ingest_cron, schedule_end, schedule_start, task_defaults
from ctloop.core.assets import CURATED

curated_data = Asset(name=CURATED)


@dag(
    schedule=CronDataIntervalTimetable(ingest_cron(), timezone="UTC"),
    start_date=schedule_start(),
    end_date=schedule_end(),
    catchup=False,
    max_active_runs=4,
    tags=["ctloop", "ingest", "great-expectations"],
    doc_md=__doc__,
    default_args=task_defaults(retries=2, retry_delay=timedelta(seconds=20), retry_exponential_backoff=True),
)
def ctloop_ingest() -> None:
    @task
    def extract_batch(data_interval_start=None) -> list[str]:
        from ctloop.flows.tasks import ingest_extract

        return ingest_extract(data_interval_start)

    @task
    def validate_batch(raw_files: list[str], data_interval_start=None) -> dict:
        from ctloop.core.errors import ValidationFailed
        from ctloop.flows.tasks import ingest_validate

        try:
            return ingest_validate(data_interval_start, raw_files)
        except ValidationFailed as e:
            raise AirflowFailException(str(e)) from e

    @task(outlets=[curated_data])
    def publish_curated(raw_files: list[str], validation: dict, data_interval_start=None) -> str:
        from ctloop.flows.tasks import ingest_publish

        return ingest_publish(data_interval_start, raw_files, validation)

    raw = extract_batch()
    publish_curated(raw, validate_batch(raw))


ctloop_ingest()
