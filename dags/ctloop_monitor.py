"""
### ctloop_monitor

One window of production per data interval (daily by default; `monitoring.schedule` in params.yaml):

1. **collect_window**: the window's prediction log partition and the labels that have arrived
   (a corrupt or schema-changed partition fails here, naming the file, and nothing is triggered)
2. **detect_drift**: Evidently data drift of every feature and prediction drift of the score, against
   the champion's reference sample stored with its model version
3. **check_quality**: the champion's quality on the newest labeled window (concept drift, one window late)
4. **decide**: the policy's decision record with reasons (drift share, new categories, prediction drift,
   quality drop, label shift; minimum rows; cooldown; no trigger while a retrain is queued or running).
   The Evidently HTML report and a JSON summary go to `reports/monitor/dt=…/`; the headline figures to
   the MLflow monitoring experiment.
5. **emit_drift_event**: on drift, the `ctloop_drift_detected` Asset event (reasons, drifted columns,
   window, report) that schedules `ctloop_retrain`; skipped otherwise.
6. **guard_new_champion**: during a new champion's bake period (`promotion.rollback`), its labeled
   quality against what `previous` had; beyond the threshold it rolls back (audited) and emits the
   `ctloop_rollback_alert` Asset event; skipped otherwise, with the reason.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import Asset, CronDataIntervalTimetable, dag, task
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from ctloop.airflow_edge import monitor_cron, schedule_end, schedule_start, task_defaults
from ctloop.core.assets import DRIFT, ROLLBACK_ALERT

drift_detected = Asset(name=DRIFT)
rollback_alert = Asset(name=ROLLBACK_ALERT)


@dag(
    schedule=CronDataIntervalTimetable(monitor_cron(), timezone="UTC"),
    start_date=schedule_start(),
    end_date=schedule_end(),
    catchup=False,
    max_active_runs=1,  # windows in order: cooldown and drift-start estimates read earlier windows
    tags=["ctloop", "monitoring", "evidently"],
    doc_md=__doc__,
    default_args=task_defaults(retries=1, retry_delay=timedelta(seconds=20), retry_exponential_backoff=True),
)
def ctloop_monitor() -> None:
    @task
    def collect_window(data_interval_start=None) -> dict:
        from ctloop.core.errors import DataUnreadable, SchemaError
        from ctloop.flows.tasks import monitor_collect

        try:
            return monitor_collect(data_interval_start)
        except (DataUnreadable, SchemaError) as e:
            raise AirflowFailException(str(e)) from e

    @task
    def detect_drift(collected: dict) -> dict:
        from ctloop.flows.tasks import monitor_drift

        return monitor_drift(collected)

    @task
    def check_quality(collected: dict) -> dict:
        from ctloop.flows.tasks import monitor_quality

        return monitor_quality(collected)

    @task
    def decide(collected: dict, drift: dict, quality: dict, ti=None) -> dict:
        from ctloop.flows.tasks import monitor_decide

        in_flight = ti.get_dr_count(dag_id="ctloop_retrain", states=["queued", "running"])
        return monitor_decide(collected, drift, quality, in_flight)

    @task(outlets=[drift_detected])
    def emit_drift_event(summary: dict, outlet_events=None) -> dict:
        from ctloop.flows.tasks import monitor_event_extra

        decision = summary["decision"]
        if not decision["trigger"]:
            raise AirflowSkipException(f"{decision['status']}: {'; '.join(decision['reasons'])}")
        extra = monitor_event_extra(summary)
        outlet_events[drift_detected].extra = extra
        return extra

    @task(outlets=[rollback_alert])
    def guard_new_champion(quality: dict, dag_run=None, data_interval_start=None, outlet_events=None) -> dict:
        from ctloop.flows.tasks import monitor_guard

        guarded = monitor_guard(data_interval_start, quality, dag_run.dag_id, dag_run.run_id)
        decision = guarded["decision"] or {"status": "no champion", "reasons": []}
        if not guarded.get("rolled_back"):
            raise AirflowSkipException(f"{decision['status']}: {'; '.join(decision['reasons'])}")
        outlet_events[rollback_alert].extra = {"reasons": decision["reasons"], "window": decision["window"],
                                               "rolled_back": guarded["rolled_back"]["rolled_back"],
                                               "champion": guarded["rolled_back"]["version"]}
        return guarded

    collected = collect_window()
    quality = check_quality(collected)
    emit_drift_event(decide(collected, detect_drift(collected), quality))
    guard_new_champion(quality)


ctloop_monitor()
