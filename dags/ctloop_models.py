"""
### ctloop's DAG factory: seven DAGs per model spec

One file generates every model's DAGs (Airflow's dynamic DAG generation): for each `models/<name>.yaml`,
`<name>__ingest`, `<name>__retrain`, `<name>__monitor`, `<name>__labels`, `<name>__rollback`,
`<name>__approve` and `<name>__rollout`, tagged `model:<name>` so the Airflow UI filters by model. Each model has its own Assets
(`ctloop/<name>/curated`, `/drift`, `/rollback`, `/labels`, `/rollout`): a drift of one model never retrains another.

Deterministic and light at parse time: the models folder and the environment only (no Variables, no
database), no pandas/sklearn/MLflow import; a task run parses only its own model's DAG
(`get_parsing_context()`). A spec that does not validate gets no DAGs of its own, only
`<name>__invalid_spec`, whose description and only task name the file and the key; the other models run on.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import (
    DAG,
    Asset,
    AssetOrTimeSchedule,
    CronDataIntervalTimetable,
    CronTriggerTimetable,
    get_parsing_context,
    task,
)
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from ctloop.airflow_edge import (
    RolloutController,
    approve_form,
    dag_arguments,
    deployment_specs,
    failing_on,
    invalid_spec_arguments,
    model_of_dag,
    retrain_form,
    rollback_form,
    rollout_form,
    schedule_end,
    task_defaults,
)
from ctloop.core import assets

if TYPE_CHECKING:
    from ctloop.core.params import Params

def _dag(model: str, flow: str, spec: Params, schedule: Any, **kwargs: Any) -> DAG:
    return DAG(schedule=schedule, **dag_arguments(model, flow, spec, **kwargs))


def build_ingest(model: str, params: Params) -> DAG:
    curated = Asset(name=assets.curated(model))
    with _dag(model, "ingest", params,
              schedule=CronDataIntervalTimetable(params.schedule.ingest, timezone="UTC"), end_date=schedule_end(),
              max_active_runs=4,
              default_args=task_defaults(retries=2, retry_delay=timedelta(seconds=20),
                                         retry_exponential_backoff=True)) as dag:
        @task
        def extract_batch(data_interval_start=None) -> list[str]:
            from ctloop.flows.tasks import ingest_extract

            return ingest_extract(model, data_interval_start)

        @task
        def validate_batch(raw_files: list[str], data_interval_start=None) -> dict:
            from ctloop.core.errors import ValidationFailed
            from ctloop.flows.tasks import ingest_validate

            with failing_on(ValidationFailed):
                return ingest_validate(model, data_interval_start, raw_files)

        @task(outlets=[curated])
        def publish_curated(raw_files: list[str], validation: dict, data_interval_start=None) -> str:
            from ctloop.flows.tasks import ingest_publish

            return ingest_publish(model, data_interval_start, raw_files, validation)

        raw = extract_batch()
        publish_curated(raw, validate_batch(raw))
    return dag


def build_retrain(model: str, params: Params) -> DAG:
    schedule = AssetOrTimeSchedule(timetable=CronTriggerTimetable(params.training.schedule, timezone="UTC"),
                                   assets=[Asset(name=assets.drift(model))])
    with _dag(model, "retrain", params, schedule=schedule, end_date=schedule_end(), max_active_runs=1,
              params=retrain_form(model, params),
              default_args=task_defaults(retries=1, retry_delay=timedelta(seconds=30),
                                         retry_exponential_backoff=True)) as dag:
        @task(inlets=[Asset(name=assets.curated(model))])
        def build_training_set(params=None, dag_run=None, triggering_asset_events=None, data_interval_end=None) -> dict:
            from ctloop.core.errors import ConfigError, InsufficientData
            from ctloop.flows.tasks import retrain_build

            extras = [dict(e.extra or {}) for events in (triggering_asset_events or {}).values() for e in events]
            with failing_on(InsufficientData, ConfigError):
                return retrain_build(model, dag_run.run_type, dict(params), extras, dag_run.dag_id, dag_run.run_id,
                                     data_interval_end or dag_run.run_after)

        @task
        def validate_training_set(built: dict) -> dict:
            from ctloop.core.errors import ValidationFailed
            from ctloop.flows.tasks import retrain_validate

            with failing_on(ValidationFailed):
                return retrain_validate(model, built)

        @task
        def train_challenger(built: dict, validated: dict, params=None) -> dict:
            from ctloop.flows.tasks import retrain_train

            return retrain_train(model, built, validated, params["model"], params.get("hyperparameters") or None)

        @task
        def evaluate(trained: dict) -> dict:
            from ctloop.flows.tasks import retrain_evaluate

            return retrain_evaluate(model, trained)

        @task
        def gate(evaluated: dict, trained: dict) -> dict:
            from ctloop.flows.tasks import retrain_gate

            return retrain_gate(model, evaluated, trained)

        @task(outlets=[Asset(name=assets.rollout(model))])
        def promote(decision: dict, built: dict, params=None, outlet_events=None) -> dict:
            from ctloop.core.errors import PromotionConflict
            from ctloop.flows.tasks import retrain_promote

            with failing_on(PromotionConflict):
                promoted = retrain_promote(model, decision, dict(params), built["trigger"])
            if promoted is None:
                raise AirflowSkipException(f"gate rejected v{decision['challenger']}: {'; '.join(decision['reasons'])}")
            if "rollout" in promoted:  # promotion.mode rollout: <model>__rollout takes it from here
                outlet_events[Asset(name=assets.rollout(model))].extra = {"model": model, "candidate": promoted["version"]}
            return promoted

        built = build_training_set()
        trained = train_challenger(built, validate_training_set(built))
        promote(gate(evaluate(trained), trained), built)
    return dag


def build_monitor(model: str, params: Params) -> DAG:
    drift_detected = Asset(name=assets.drift(model))
    rollback_alert = Asset(name=assets.rollback_alert(model))
    with _dag(model, "monitor", params,
              schedule=CronDataIntervalTimetable(params.monitoring.schedule, timezone="UTC"), end_date=schedule_end(),
              max_active_runs=1,  # windows in order: cooldown and drift-start estimates read earlier windows
              default_args=task_defaults(retries=1, retry_delay=timedelta(seconds=20),
                                         retry_exponential_backoff=True)) as dag:
        @task
        def collect_window(data_interval_start=None) -> dict:
            from ctloop.core.errors import DataUnreadable, SchemaError
            from ctloop.flows.tasks import monitor_collect

            with failing_on(DataUnreadable, SchemaError):
                return monitor_collect(model, data_interval_start)

        @task
        def detect_drift(collected: dict) -> dict:
            from ctloop.flows.tasks import monitor_drift

            return monitor_drift(model, collected)

        @task
        def check_quality(collected: dict) -> dict:
            from ctloop.flows.tasks import monitor_quality

            return monitor_quality(model, collected)

        @task
        def decide(collected: dict, drift: dict, quality: dict, ti=None) -> dict:
            from ctloop.flows.tasks import monitor_decide

            in_flight = ti.get_dr_count(dag_id=f"{model}__retrain", states=["queued", "running"])
            return monitor_decide(model, collected, drift, quality, in_flight)

        @task(outlets=[drift_detected])
        def emit_drift_event(summary: dict, outlet_events=None) -> dict:
            from ctloop.flows.tasks import monitor_event_extra

            decision = summary["decision"]
            if not decision["trigger"]:
                raise AirflowSkipException(f"{decision['status']}: {'; '.join(decision['reasons'])}")
            extra = monitor_event_extra(summary) | {"model": model}
            outlet_events[drift_detected].extra = extra
            return extra

        @task(outlets=[rollback_alert])
        def guard_new_champion(quality: dict, dag_run=None, data_interval_start=None, outlet_events=None) -> dict:
            from ctloop.flows.tasks import monitor_guard

            guarded = monitor_guard(model, data_interval_start, quality, dag_run.dag_id, dag_run.run_id)
            decision = guarded["decision"] or {"status": "no champion", "reasons": []}
            if not guarded.get("rolled_back"):
                raise AirflowSkipException(f"{decision['status']}: {'; '.join(decision['reasons'])}")
            outlet_events[rollback_alert].extra = {"model": model, "reasons": decision["reasons"],
                                                   "window": decision["window"],
                                                   "rolled_back": guarded["rolled_back"]["rolled_back"],
                                                   "champion": guarded["rolled_back"]["version"]}
            return guarded

        collected = collect_window()
        quality = check_quality(collected)
        emit_drift_event(decide(collected, detect_drift(collected), quality))
        guard_new_champion(quality)
    return dag


def build_labels(model: str, params: Params) -> DAG:
    labels_arrived = Asset(name=assets.labels(model))
    with _dag(model, "labels", params,
              schedule=CronDataIntervalTimetable(params.labels.schedule, timezone="UTC"), end_date=schedule_end(),
              max_active_runs=4,
              default_args=task_defaults(retries=2, retry_delay=timedelta(seconds=20),
                                         retry_exponential_backoff=True)) as dag:
        @task(outlets=[labels_arrived])
        def ingest_labels(data_interval_start=None) -> dict:
            from ctloop.flows.tasks import labels_ingest

            outcome = labels_ingest(model, data_interval_start)
            if outcome["status"] == "none":
                raise AirflowSkipException(f"no label delivery for {outcome['day']}")
            if outcome["status"] == "quarantined":
                raise AirflowFailException(f"label delivery quarantined: {'; '.join(outcome['reasons'])}")
            return outcome

        ingest_labels()
    return dag


def build_rollback(model: str, params: Params) -> DAG:
    with _dag(model, "rollback", params, schedule=None, max_active_runs=1, params=rollback_form(),
              default_args=task_defaults(retries=1, retry_delay=timedelta(seconds=10))) as dag:
        @task
        def rollback(params=None, dag_run=None) -> dict:
            from ctloop.core.errors import PromotionConflict, RegistryError
            from ctloop.flows.tasks import rollback_champion

            with failing_on(PromotionConflict, RegistryError):
                return rollback_champion(model, params["version"], params["reason"], dag_run.dag_id, dag_run.run_id)

        rollback()
    return dag


def build_approve(model: str, params: Params) -> DAG:
    with _dag(model, "approve", params, schedule=None, max_active_runs=1, params=approve_form(),
              default_args=task_defaults(retries=1, retry_delay=timedelta(seconds=10))) as dag:
        @task
        def approve(params=None, dag_run=None) -> dict:
            from ctloop.core.errors import GateRejected, PromotionConflict, RegistryError
            from ctloop.flows.tasks import approve_candidate

            with failing_on(GateRejected, PromotionConflict, RegistryError):
                return approve_candidate(model, params["version"], params["reason"], dag_run.dag_id, dag_run.run_id)

        approve()
    return dag


def build_rollout(model: str, params: Params) -> DAG:
    with _dag(model, "rollout", params, schedule=[Asset(name=assets.rollout(model))], max_active_runs=1,
              params=rollout_form(), default_args=task_defaults(retries=1, retry_delay=timedelta(seconds=10))) as dag:
        RolloutController(task_id="control", model=model)
    return dag


def build_invalid_spec(model: str, error: str) -> DAG:
    """A spec that does not validate: no DAGs that could act on it, one that says why in the UI."""
    with DAG(schedule=None, **invalid_spec_arguments(model, error)) as dag:
        @task
        def report_invalid_spec() -> None:
            raise AirflowFailException(error)

        report_invalid_spec()
    return dag


BUILDERS = {"ingest": build_ingest, "retrain": build_retrain, "monitor": build_monitor, "labels": build_labels,
            "rollback": build_rollback, "approve": build_approve, "rollout": build_rollout}

# A task run parses only the DAG it runs (its model's spec, that flow); the DAG processor parses all.
_parsing = get_parsing_context().dag_id
_only_model = model_of_dag(_parsing) if _parsing else None
_only_flow = _parsing.rpartition("__")[2] if _parsing else None
_deployment = deployment_specs(only=_only_model)
for _model, _params in _deployment.specs.items():
    for _flow, _build in BUILDERS.items():
        if _only_flow in (None, _flow):
            globals()[f"{_model}__{_flow}"] = _build(_model, _params)
for _model, _error in _deployment.broken.items():
    globals()[f"{_model or 'ctloop'}__invalid_spec"] = build_invalid_spec(_model, _error)
