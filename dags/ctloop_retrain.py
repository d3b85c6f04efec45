"""
### ctloop_retrain

Retrain, evaluate against the champion, and promote through MLflow registry aliases only when the gate
passes. Starts three ways, each recorded on the MLflow run: the weekly schedule, the drift Asset
(emitted by `ctloop_monitor`), or a manual trigger with the form below (`reason` is required).

1. **build_training_set**: the last `window_days` of curated partitions, split by time (newest days = test)
2. **validate_training_set**: the training-set GX suite (rows, class balance, no leakage columns)
3. **train_challenger**: sklearn pipeline from the dataset contract; new registered version, alias `challenger`
4. **evaluate**: challenger and champion on the same test set (`mlflow.models.evaluate`, slices)
5. **gate**: decision record with every reason, written to the run and the version
6. **promote**: `champion` moves (compare-and-set), the old one becomes `previous`; a rejection skips this task

Each task's cost (wall time, CPU seconds, peak memory, rows) goes to the challenger's MLflow run as
`cost.<task>.*` with the run's totals as `cost.total.*`, and to the metrics as `ctloop_task_*`.
A task that fails for good sends a `task_failure` alert; a rejection sends `gate_rejection`.

`max_active_runs=1`: two retrains never promote at once.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import Asset, AssetOrTimeSchedule, CronTriggerTimetable, Param, dag, task
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from ctloop.airflow_edge import retrain_cron, retrain_defaults, schedule_end, schedule_start, task_defaults
from ctloop.core.assets import CURATED, DRIFT

defaults = retrain_defaults()


@dag(
    schedule=AssetOrTimeSchedule(timetable=CronTriggerTimetable(retrain_cron(), timezone="UTC"),
                                 assets=[Asset(name=DRIFT)]),
    start_date=schedule_start(),
    end_date=schedule_end(),
    catchup=False,
    max_active_runs=1,
    tags=["ctloop", "training", "mlflow"],
    doc_md=__doc__,
    default_args=task_defaults(retries=1, retry_delay=timedelta(seconds=30), retry_exponential_backoff=True),
    params={
        "reason": Param(None, type=["null", "string"], title="Reason",
                        description="Why retrain now. Required for manual runs; recorded on the MLflow run."),
        "window_days": Param(defaults["window_days"], type="integer", minimum=2, maximum=365,
                             title="Training window (days)"),
        "model": Param(defaults["model"], type="string", enum=defaults["models"], title="Model",
                       description="A built-in model, or custom: training.estimator / training.pipeline in "
                                   "params.yaml"),
        "force_promote": Param(False, type="boolean", title="Force promotion",
                               description="Promote even if the gate rejects; the gate's verdict is still recorded."),
        "hyperparameters": Param({}, type="object", title="Hyperparameter overrides",
                                 description="e.g. {\"C\": 0.001}; merged over params.yaml. scikit-learn "
                                             "set_params names: a plain name is the model's"),
    },
)
def ctloop_retrain() -> None:
    @task(inlets=[Asset(name=CURATED)])
    def build_training_set(params=None, dag_run=None, triggering_asset_events=None, data_interval_end=None) -> dict:
        from ctloop.core.errors import ConfigError, InsufficientData
        from ctloop.flows.tasks import retrain_build

        extras = [dict(e.extra or {}) for events in (triggering_asset_events or {}).values() for e in events]
        try:
            return retrain_build(dag_run.run_type, dict(params), extras, dag_run.dag_id, dag_run.run_id,
                                 data_interval_end or dag_run.run_after)
        except (InsufficientData, ConfigError) as e:
            raise AirflowFailException(str(e)) from e

    @task
    def validate_training_set(built: dict) -> dict:
        from ctloop.core.errors import ValidationFailed
        from ctloop.flows.tasks import retrain_validate

        try:
            return retrain_validate(built)
        except ValidationFailed as e:
            raise AirflowFailException(str(e)) from e

    @task
    def train_challenger(built: dict, validated: dict, params=None) -> dict:
        from ctloop.flows.tasks import retrain_train

        return retrain_train(built, validated, params["model"], params.get("hyperparameters") or None)

    @task
    def evaluate(trained: dict) -> dict:
        from ctloop.flows.tasks import retrain_evaluate

        return retrain_evaluate(trained)

    @task
    def gate(evaluated: dict, trained: dict) -> dict:
        from ctloop.flows.tasks import retrain_gate

        return retrain_gate(evaluated, trained)

    @task
    def promote(decision: dict, built: dict, params=None) -> dict:
        from ctloop.core.errors import PromotionConflict
        from ctloop.flows.tasks import retrain_promote

        try:
            promoted = retrain_promote(decision, dict(params), built["trigger"])
        except PromotionConflict as e:
            raise AirflowFailException(str(e)) from e
        if promoted is None:
            raise AirflowSkipException(f"gate rejected v{decision['challenger']}: {'; '.join(decision['reasons'])}")
        return promoted

    built = build_training_set()
    trained = train_challenger(built, validate_training_set(built))
    decision = gate(evaluate(trained), trained)
    promote(decision, built)


ctloop_retrain()
