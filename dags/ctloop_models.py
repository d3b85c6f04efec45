"""
### ctloop's DAG factory: six DAGs per model spec

One file generates every model's DAGs (Airflow's dynamic DAG generation): for each `models/<name>.yaml`,
`<name>__ingest`, `<name>__retrain`, `<name>__monitor`, `<name>__labels`, `<name>__rollback` and
`<name>__approve`, tagged `model:<name>` so the Airflow UI filters by model. Each model has its own Assets
(`ctloop/<name>/curated`, `/drift`, `/rollback`, `/labels`): a drift of one model never retrains another.

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
    Param,
    get_parsing_context,
    task,
)
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from ctloop.airflow_edge import (
    deployment_specs,
    model_of_dag,
    retrain_defaults,
    schedule_end,
    schedule_start,
    task_defaults,
)
from ctloop.core import assets

if TYPE_CHECKING:
    from ctloop.core.params import Params

INGEST_DOC = """
### {model}: ingest

One partition per data interval (daily): **extract** the delivered batch into `raw/dt=…` (immutable),
**validate** it with the committed Great Expectations suite `{suite}`, then **publish** it to `curated/dt=…`
and emit this model's curated-data Asset. A batch that fails validation is moved to `quarantine/dt=…` with
its validation result beside it, and the validate task fails listing the failed expectations (no retry: the
data, not the infrastructure, is at fault). Re-running a day rewrites the same partitions.

Backfill: `airflow backfill create --dag-id {model}__ingest --from-date … --to-date …`.
"""

RETRAIN_DOC = """
### {model}: retrain

Retrain, evaluate against the champion, and promote through MLflow registry aliases of `{registered}`
only when the gate passes. Starts three ways, each recorded on the MLflow run: the schedule, this model's
drift Asset (emitted by `{model}__monitor`), or a manual trigger with the form below (`reason` is required).

1. **build_training_set**: the last `window_days` of curated partitions, split by time (newest days = test)
2. **validate_training_set**: the training-set GX suite (rows, class balance, no leakage columns)
3. **train_challenger**: the model's pipeline; new registered version, alias `challenger`
4. **evaluate**: challenger and champion on the same test set (`mlflow.models.evaluate`, slices)
5. **gate**: decision record with every reason, written to the run and the version
6. **promote**: `champion` moves (compare-and-set), the old one becomes `previous`; a rejection skips this task

Each task's cost (wall time, CPU seconds, peak memory, rows) goes to the challenger's MLflow run as
`cost.<task>.*` with the run's totals as `cost.total.*`, and to the metrics as `ctloop_task_*`.
A task that fails for good sends a `task_failure` alert; a rejection sends `gate_rejection`.
`max_active_runs=1`: two retrains of one model never promote at once.
"""

MONITOR_DOC = """
### {model}: monitor

One window of production per data interval (`monitoring.schedule`):

1. **collect_window**: the window's prediction log partition and the labels that have arrived
   (a corrupt or schema-changed partition fails here, naming the file, and nothing is triggered)
2. **detect_drift**: Evidently data drift of every feature and prediction drift of the model's output,
   against the champion's reference sample stored with its model version
3. **check_quality**: the champion's quality on the newest labeled window (concept drift, one window late)
4. **decide**: the policy's decision record with reasons (drift share, new categories, prediction drift,
   quality drop, label shift; minimum rows; cooldown; no trigger while `{model}__retrain` is queued or
   running). The Evidently HTML report and a JSON summary go to `reports/monitor/dt=…/`.
5. **emit_drift_event**: on drift, this model's drift Asset event (reasons, drifted columns, window,
   report) that schedules `{model}__retrain`; skipped otherwise.
6. **guard_new_champion**: during a new champion's bake period (`promotion.rollback`), its labeled quality
   against what `previous` had; beyond the threshold it rolls back (audited) and emits the rollback Asset
   event; skipped otherwise, with the reason.
"""

LABELS_DOC = """
### {model}: labels

Delayed ground truth from a real system, one delivery per data interval (`labels.schedule`):
**ingest_labels** lands the day's label files (`labels.path` with `{{ds}}`) unchanged in `raw_labels/`,
checks them against the labels contract (the id and label columns, labels the task allows, one label per
id, arrival times), and stores them in `labels/dt=…`, where `{model}__monitor` joins them with the
prediction log. A delivery that breaks the contract is quarantined whole in `quarantine_labels/` with its
reasons and the task fails (no retry). No delivery that day: the task is skipped. Labels also arrive
through `POST /feedback` on `ctloop serve`.
"""

ROLLBACK_DOC = """
### {model}: rollback

Move `@champion` of `{registered}` back in one compare-and-set step: to `@previous` by default, or to the
version given. The rolled-back version loses its gate pass (it can only return through a new gate);
`@previous` and `@previous-2` shift so that two earlier champions stay loadable. Recorded in the alias
history (`ctloop history --model {model}`) and the audit log.
"""

APPROVE_DOC = """
### {model}: approve

Manual promotion for `promotion.mode: manual`: a challenger that passed its gate waits as `@candidate`;
a person reviews it (MLflow run, gate decision, evaluation suites) and triggers this DAG with the version
and a reason. Approval of a version whose gate failed, or that was rolled back since its last gate pass,
is refused. The champion moves by compare-and-set; the approval is audited.
"""


def _dag(model: str, flow: str, spec: Params, doc: str, schedule: Any, **kwargs: Any) -> DAG:
    return DAG(
        dag_id=f"{model}__{flow}",
        schedule=schedule,
        start_date=schedule_start(spec),
        catchup=False,
        tags=["ctloop", f"model:{model}", flow],
        doc_md=doc.format(model=model, suite=spec.validation.suite, registered=spec.training.registered_model),
        **kwargs,
    )


def build_ingest(model: str, params: Params) -> DAG:
    curated = Asset(name=assets.curated(model))
    with _dag(model, "ingest", params, INGEST_DOC,
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

            try:
                return ingest_validate(model, data_interval_start, raw_files)
            except ValidationFailed as e:
                raise AirflowFailException(str(e)) from e

        @task(outlets=[curated])
        def publish_curated(raw_files: list[str], validation: dict, data_interval_start=None) -> str:
            from ctloop.flows.tasks import ingest_publish

            return ingest_publish(model, data_interval_start, raw_files, validation)

        raw = extract_batch()
        publish_curated(raw, validate_batch(raw))
    return dag


def build_retrain(model: str, params: Params) -> DAG:
    defaults = retrain_defaults(params)
    schedule = AssetOrTimeSchedule(timetable=CronTriggerTimetable(params.training.schedule, timezone="UTC"),
                                   assets=[Asset(name=assets.drift(model))])
    form = {
        "reason": Param(None, type=["null", "string"], title="Reason",
                        description="Why retrain now. Required for manual runs; recorded on the MLflow run."),
        "window_days": Param(defaults["window_days"], type="integer", minimum=2, maximum=365,
                             title="Training window (days)"),
        "model": Param(defaults["model"], type="string", enum=defaults["models"], title="Model",
                       description=f"A built-in model, or custom: training.estimator / training.pipeline in "
                                   f"models/{model}.yaml"),
        "force_promote": Param(False, type="boolean", title="Force promotion",
                               description="Promote even if the gate rejects; the gate's verdict is still recorded."),
        "hyperparameters": Param({}, type="object", title="Hyperparameter overrides",
                                 description="e.g. {\"C\": 0.001}; merged over the spec's. scikit-learn "
                                             "set_params names: a plain name is the model's"),
    }
    with _dag(model, "retrain", params, RETRAIN_DOC, schedule=schedule, end_date=schedule_end(), max_active_runs=1,
              params=form, default_args=task_defaults(retries=1, retry_delay=timedelta(seconds=30),
                                                      retry_exponential_backoff=True)) as dag:
        @task(inlets=[Asset(name=assets.curated(model))])
        def build_training_set(params=None, dag_run=None, triggering_asset_events=None, data_interval_end=None) -> dict:
            from ctloop.core.errors import ConfigError, InsufficientData
            from ctloop.flows.tasks import retrain_build

            extras = [dict(e.extra or {}) for events in (triggering_asset_events or {}).values() for e in events]
            try:
                return retrain_build(model, dag_run.run_type, dict(params), extras, dag_run.dag_id, dag_run.run_id,
                                     data_interval_end or dag_run.run_after)
            except (InsufficientData, ConfigError) as e:
                raise AirflowFailException(str(e)) from e

        @task
        def validate_training_set(built: dict) -> dict:
            from ctloop.core.errors import ValidationFailed
            from ctloop.flows.tasks import retrain_validate

            try:
                return retrain_validate(model, built)
            except ValidationFailed as e:
                raise AirflowFailException(str(e)) from e

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

        @task
        def promote(decision: dict, built: dict, params=None) -> dict:
            from ctloop.core.errors import PromotionConflict
            from ctloop.flows.tasks import retrain_promote

            try:
                promoted = retrain_promote(model, decision, dict(params), built["trigger"])
            except PromotionConflict as e:
                raise AirflowFailException(str(e)) from e
            if promoted is None:
                raise AirflowSkipException(f"gate rejected v{decision['challenger']}: {'; '.join(decision['reasons'])}")
            return promoted

        built = build_training_set()
        trained = train_challenger(built, validate_training_set(built))
        promote(gate(evaluate(trained), trained), built)
    return dag


def build_monitor(model: str, params: Params) -> DAG:
    drift_detected = Asset(name=assets.drift(model))
    rollback_alert = Asset(name=assets.rollback_alert(model))
    with _dag(model, "monitor", params, MONITOR_DOC,
              schedule=CronDataIntervalTimetable(params.monitoring.schedule, timezone="UTC"), end_date=schedule_end(),
              max_active_runs=1,  # windows in order: cooldown and drift-start estimates read earlier windows
              default_args=task_defaults(retries=1, retry_delay=timedelta(seconds=20),
                                         retry_exponential_backoff=True)) as dag:
        @task
        def collect_window(data_interval_start=None) -> dict:
            from ctloop.core.errors import DataUnreadable, SchemaError
            from ctloop.flows.tasks import monitor_collect

            try:
                return monitor_collect(model, data_interval_start)
            except (DataUnreadable, SchemaError) as e:
                raise AirflowFailException(str(e)) from e

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
    with _dag(model, "labels", params, LABELS_DOC,
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
    form = {"version": Param("previous", type="string", minLength=1, title="Roll back to",
                             description="a version number, or previous"),
            "reason": Param(type="string", minLength=3, title="Reason", description="why; audited")}
    with _dag(model, "rollback", params, ROLLBACK_DOC, schedule=None, max_active_runs=1, params=form,
              default_args=task_defaults(retries=1, retry_delay=timedelta(seconds=10))) as dag:
        @task
        def rollback(params=None, dag_run=None) -> dict:
            from ctloop.core.errors import PromotionConflict, RegistryError
            from ctloop.flows.tasks import rollback_champion

            try:
                return rollback_champion(model, params["version"], params["reason"], dag_run.dag_id, dag_run.run_id)
            except (PromotionConflict, RegistryError) as e:
                raise AirflowFailException(str(e)) from e

        rollback()
    return dag


def build_approve(model: str, params: Params) -> DAG:
    form = {"version": Param(type="string", minLength=1, title="Version", description="the @candidate version to promote"),
            "reason": Param(type="string", minLength=3, title="Reason", description="why it may go live; audited")}
    with _dag(model, "approve", params, APPROVE_DOC, schedule=None, max_active_runs=1, params=form,
              default_args=task_defaults(retries=1, retry_delay=timedelta(seconds=10))) as dag:
        @task
        def approve(params=None, dag_run=None) -> dict:
            from ctloop.core.errors import GateRejected, PromotionConflict, RegistryError
            from ctloop.flows.tasks import approve_candidate

            try:
                return approve_candidate(model, params["version"], params["reason"], dag_run.dag_id, dag_run.run_id)
            except (GateRejected, PromotionConflict, RegistryError) as e:
                raise AirflowFailException(str(e)) from e

        approve()
    return dag


def build_invalid_spec(model: str, error: str) -> DAG:
    """A spec that does not validate: no DAGs that could act on it, one that says why in the UI."""
    from datetime import UTC, datetime

    with DAG(dag_id=f"{model or 'ctloop'}__invalid_spec", schedule=None, start_date=datetime(2026, 1, 1, tzinfo=UTC),
             catchup=False, tags=["ctloop", f"model:{model}", "invalid-spec"], is_paused_upon_creation=True,
             description=error[:200],
             doc_md=f"### {model}: invalid spec\n\nThis model has no DAGs until its spec validates:\n\n`{error}`",
             default_args={"retries": 0}) as dag:
        @task
        def report_invalid_spec() -> None:
            raise AirflowFailException(error)

        report_invalid_spec()
    return dag


BUILDERS = {"ingest": build_ingest, "retrain": build_retrain, "monitor": build_monitor, "labels": build_labels,
            "rollback": build_rollback, "approve": build_approve}

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
