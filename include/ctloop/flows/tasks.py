"""Task bodies for the DAGs: primitive arguments in, small JSON-able results out (paths, ids, dicts).
Each function takes the model it acts for first (its generated DAG knows it) and loads that model's settings,
spec and lake itself, so a task is one call from the DAG factory.

Every body is measured (``@costed``: wall time, CPU seconds, peak memory, rows) and the cost is sent as
``ctloop.task.*`` metrics. Each retrain task from train on also logs its cost to the challenger's MLflow run
(train adds the cost of building and validating its training set), and the run's totals (``cost.total.*``)
are recomputed after each."""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from ctloop.core.params import Params
    from ctloop.core.settings import Settings
    from ctloop.data.store import Lake


F = TypeVar("F", bound=Callable[..., Any])


def costed(flow: str, task: str, rows: Callable[[Any], int | None] | None = None,
           attach: bool = False) -> Callable[[F], F]:
    """Measure the task body (whose first argument is the model) and send its cost as ``ctloop.task.*``
    gauges tagged with model, dag (``<model>__<flow>``), task and outcome.
    ``rows`` reads the rows processed from the result; ``attach`` adds the cost to a dict result and, when
    the result names an MLflow run (``run_id``), logs it there with the ``upstream_costs`` the result carries."""
    def wrap(fn: F) -> F:
        @functools.wraps(fn)
        def inner(model: str | None, *args: Any, **kwargs: Any) -> Any:
            from ctloop.core.metrics import emit_gauges, measure

            labels = {"model": model or "", "dag": f"{model}__{flow}", "task": task}
            try:
                with measure(task) as cost:
                    result = fn(model, *args, **kwargs)
            except BaseException:
                emit_gauges("task", cost.metrics(), {**labels, "outcome": "failed"})
                raise
            cost.rows = rows(result) if rows else None
            emit_gauges("task", cost.metrics(), {**labels, "outcome": "success"})
            if attach and isinstance(result, dict) and result.get("run_id"):
                from ctloop.core.settings import get_settings
                from ctloop.registry.costs import log_run_cost

                log_run_cost(get_settings().for_model(model), str(result["run_id"]), [cost.to_dict(), *result.get("upstream_costs", [])])
            return {**result, "cost": cost.to_dict()} if attach and isinstance(result, dict) else result
        return inner  # type: ignore[return-value]
    return wrap


def _day(value: datetime | date | str) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])


def _runtime(model: str | None) -> tuple[Settings, Params, Lake]:
    """Settings, spec and lake of ``model`` (its DAG names it; None: the only model)."""
    from ctloop.core.params import load_params
    from ctloop.core.settings import get_settings
    from ctloop.data.store import Lake

    settings = get_settings().for_model(model)
    return settings, load_params(settings.spec_path), Lake(settings.lake_root)


@costed("ingest", "extract_batch")
def ingest_extract(model: str | None, interval_start: datetime | str) -> list[str]:
    from ctloop.flows.ingest import extract_batch

    _, params, lake = _runtime(model)
    return [str(p) for p in extract_batch(_day(interval_start), params, lake)]


@costed("ingest", "validate_batch", rows=lambda r: r["row_count"])
def ingest_validate(model: str | None, interval_start: datetime | str, raw_files: list[str]) -> dict[str, Any]:
    """Raises ValidationFailed (after quarantining) when the batch is bad."""
    from ctloop.flows.ingest import validate_batch
    from ctloop.validation.context import open_context

    settings, params, lake = _runtime(model)
    result = validate_batch(_day(interval_start), [Path(p) for p in raw_files], params, lake, open_context(settings),
                            settings)
    return {k: result[k] for k in ("suite", "success", "row_count", "evaluated", "seconds", "warnings")}


@costed("ingest", "publish_curated")
def ingest_publish(model: str | None, interval_start: datetime | str, raw_files: list[str], validation: dict[str, Any]) -> str:
    from ctloop.flows.ingest import publish_curated

    _, params, lake = _runtime(model)
    return str(publish_curated(_day(interval_start), [Path(p) for p in raw_files], validation, params, lake))


def _enum_value(value: Any) -> str | None:
    return None if value is None else str(getattr(value, "value", value))


@costed("retrain", "build_training_set", rows=lambda r: r["train_rows"] + r["test_rows"], attach=True)
def retrain_build(model: str | None, run_type: Any, form: dict[str, Any], asset_extras: list[dict[str, Any]], dag_id: str,
                  run_id: str, reference: datetime | None) -> dict[str, Any]:
    """Record the trigger, then build the training set as of the newest complete curated day."""
    from datetime import timedelta

    from ctloop.core.errors import ConfigError
    from ctloop.data.training_set import latest_as_of
    from ctloop.flows.retrain import describe_trigger, prepare, training_set_dir

    _, params, lake = _runtime(model)
    kind = _enum_value(run_type)
    trigger = describe_trigger(kind, form.get("reason"), asset_extras, dag_id, run_id)
    if trigger["kind"] == "manual" and not (form.get("reason") or "").strip():
        raise ConfigError("a manual retrain needs a reason (the `reason` field of the trigger form)")
    last_complete = (reference.date() if reference else date.max) - timedelta(days=1)
    # a drift-triggered run trains on data up to the drifted window, not on anything after it
    drift_as_of = next((e.get("as_of") for e in asset_extras if e.get("as_of")), None)
    if trigger["kind"] == "drift" and drift_as_of:
        last_complete = min(last_complete, date.fromisoformat(drift_as_of) - timedelta(days=1))
    as_of = latest_as_of(lake.curated_days(), last_complete)
    window_days = int(form.get("window_days") or params.training.window_days)
    recommended = next((e.get("recommended_window_days") for e in asset_extras if e.get("recommended_window_days")), None)
    if trigger["kind"] == "drift" and recommended:
        window_days = int(recommended)
    info = prepare(params, lake, as_of, window_days, training_set_dir(lake, run_id), trigger)
    return {"data_dir": info.dir, "window": info.window, "trigger": trigger,
            "train_rows": info.train_rows, "test_rows": info.test_rows}


@costed("retrain", "validate_training_set", rows=lambda r: r["rows"], attach=True)
def retrain_validate(model: str | None, built: dict[str, Any]) -> dict[str, Any]:
    from ctloop.flows.retrain import validate_training_set

    settings, params, _ = _runtime(model)
    return validate_training_set(params, settings, Path(built["data_dir"])).to_dict()


@costed("retrain", "train_challenger", rows=lambda r: r["train_rows"], attach=True)
def retrain_train(model: str | None, built: dict[str, Any], validated: dict[str, Any] | None, estimator: str | None,
                  hyperparameters: dict[str, Any] | None = None) -> dict[str, Any]:
    """The new version's MLflow run also gets the cost of building and validating its training set."""
    from ctloop.core.metrics import emit_gauges
    from ctloop.flows.retrain import train

    settings, params, _ = _runtime(model)
    result = train(params, settings, Path(built["data_dir"]), model=estimator, hyperparameters=hyperparameters).to_dict()
    emit_gauges("registry", {"model_size_bytes": result["model_size_bytes"]}, {"model": params.dataset.name})
    upstream = [c for c in (built.get("cost"), (validated or {}).get("cost")) if c]
    return result | {"train_rows": built["train_rows"], "upstream_costs": upstream}


@costed("retrain", "evaluate", rows=lambda r: r["test_rows"], attach=True)
def retrain_evaluate(model: str | None, trained: dict[str, Any]) -> dict[str, Any]:
    from ctloop.flows.retrain import evaluate

    settings, params, _ = _runtime(model)
    result = evaluate(params, settings, Path(trained["data_dir"]), trained["version"], trained["run_id"])
    return result.to_dict() | {"run_id": trained["run_id"]}


@costed("retrain", "gate", attach=True)
def retrain_gate(model: str | None, evaluated: dict[str, Any], trained: dict[str, Any]) -> dict[str, Any]:
    from ctloop.flows.retrain import gate

    settings, params, _ = _runtime(model)
    return gate(params, settings, Path(evaluated["evaluation"])).to_dict() | {"run_id": trained["run_id"]}


@costed("retrain", "promote")
def retrain_promote(model: str | None, decision: dict[str, Any], form: dict[str, Any], trigger: dict[str, Any]) -> dict[str, Any] | None:
    """None when the gate rejected and nothing was forced (the caller skips the task visibly). In
    ``promotion.mode: manual`` a passing challenger becomes ``@candidate`` instead of champion."""
    from ctloop.flows.promotion import hold_candidate, promote_version

    settings, params, _ = _runtime(model)
    force = bool(form.get("force_promote"))
    if not decision["passed"] and not force:
        return None
    reason = f"{trigger['kind']}: {trigger.get('reason') or ''}".strip()
    actor = f"airflow:{trigger.get('dag_id')}/{trigger.get('run_id')}"
    dag_run = f"{trigger.get('dag_id')}/{trigger.get('run_id')}"
    if params.promotion.mode == "manual" and not force:
        return hold_candidate(params, settings, str(decision["challenger"]), reason, actor=actor, dag_run=dag_run)
    if params.promotion.mode == "rollout" and force:  # a person's override ends the steps of an older candidate
        from ctloop.flows.rollout import abort_rollout, read_rollout

        running = read_rollout(settings)
        if running is not None and running.active:
            abort_rollout(params, settings, f"superseded by forced promotion of v{decision['challenger']}: {reason}",
                          actor)
    if params.promotion.mode == "rollout" and not force and decision.get("champion"):
        from ctloop.flows.rollout import start_rollout

        state = start_rollout(params, settings, str(decision["challenger"]), reason, actor=actor,
                              expected_champion=str(decision["champion"]), dag_run=dag_run)
        return {"rollout": state.to_dict(), "version": state.candidate}
    return promote_version(params, settings, str(decision["challenger"]), reason, force=force and not decision["passed"],
                           actor=actor, expected_champion=decision.get("champion"), dag_run=dag_run)


@costed("rollout", "control")
def rollout_control(model: str | None, action: str, reason: str | None, dag_id: str, run_id: str) -> dict[str, Any]:
    """``<model>__rollout``: a person's answer first (``resume`` or ``abort`` from the form), then one
    measurement and the action it calls for. ``wait_until``: when the next measurement may come (the
    triggerer waits for it without a worker slot); None when the rollout is not running."""
    from datetime import UTC, datetime, timedelta

    from ctloop.flows.rollout import (
        abort_rollout,
        advance_rollout,
        candidate_run_url,
        read_rollout,
        resume_rollout,
    )

    settings, params, _ = _runtime(model)
    actor = f"airflow:{dag_id}/{run_id}"
    if action == "abort":
        abort_rollout(params, settings, reason or "", actor)
    elif action == "resume":
        resume_rollout(params, settings, reason or "", actor)
    done = advance_rollout(params, settings, actor=actor) if action != "abort" else None
    state = read_rollout(settings)
    waiting = state is not None and state.status == "running"
    pause = timedelta(seconds=params.promotion.rollout.interval_seconds if done and done.analysis else 0)
    return {"state": state.to_dict() if state else None,
            "analysis": done.analysis.to_dict() if done and done.analysis else None,
            "mlflow_run_url": candidate_run_url(params, settings, state) if state else None,
            "wait_until": (datetime.now(UTC) + pause).isoformat() if waiting else None}


def rollout_ready(model: str | None, not_before: str) -> str | None:
    """The triggerer's poll (see :func:`ctloop.flows.rollout.step_ready`)."""
    from ctloop.flows.rollout import step_ready

    settings, params, _ = _runtime(model)
    return step_ready(params, settings, not_before)


@costed("approve", "approve")
def approve_candidate(model: str | None, version: str, reason: str, dag_id: str, run_id: str) -> dict[str, Any]:
    """``<model>__approve``: a person promotes a gated candidate (refused when its gate failed)."""
    from ctloop.flows.promotion import promote_version

    settings, params, _ = _runtime(model)
    return promote_version(params, settings, str(version), f"approved: {reason}", actor=f"airflow:{dag_id}/{run_id}",
                           kind="approval", dag_run=f"{dag_id}/{run_id}")


@costed("rollback", "rollback")
def rollback_champion(model: str | None, version: str | None, reason: str, dag_id: str, run_id: str) -> dict[str, Any]:
    """``<model>__rollback``: champion back to ``version`` (``previous`` when empty) in one compare-and-set."""
    from ctloop.flows.promotion import rollback_version

    settings, params, _ = _runtime(model)
    target = None if version in (None, "", "previous") else str(version)
    return rollback_version(params, settings, target, reason, actor=f"airflow:{dag_id}/{run_id}",
                            dag_run=f"{dag_id}/{run_id}")


@costed("labels", "ingest_labels", rows=lambda r: r["rows"])
def labels_ingest(model: str | None, interval_start: datetime | str) -> dict[str, Any]:
    from ctloop.flows.labels import ingest_labels

    settings, params, lake = _runtime(model)
    return ingest_labels(_day(interval_start), params, settings, lake).to_dict()


@costed("monitor", "collect_window", rows=lambda r: r["rows"])
def monitor_collect(model: str | None, interval_start: datetime | str) -> dict[str, Any]:
    from ctloop.flows.monitor import collect_window

    settings, params, lake = _runtime(model)
    return collect_window(lake, params, _day(interval_start), settings).to_dict()


@costed("monitor", "measure_drift", rows=lambda r: r.get("rows"))
def monitor_drift(model: str | None, collected: dict[str, Any]) -> dict[str, Any]:
    from ctloop.flows.monitor import measure_drift, report_dir
    from ctloop.monitoring.records import WindowData

    _, params, lake = _runtime(model)
    data = WindowData.from_dict(collected)
    return measure_drift(params, data, report_dir(lake, data.window) / "report.html").to_dict()


@costed("monitor", "measure_quality", rows=lambda r: r.get("labeled_rows"))
def monitor_quality(model: str | None, collected: dict[str, Any]) -> dict[str, Any]:
    from ctloop.flows.monitor import measure_quality
    from ctloop.monitoring.records import WindowData

    _, params, lake = _runtime(model)
    return measure_quality(lake, params, WindowData.from_dict(collected)).to_dict()


@costed("monitor", "decide")
def monitor_decide(model: str | None, collected: dict[str, Any], drift: dict[str, Any], quality: dict[str, Any],
                   retrains_in_flight: int) -> dict[str, Any]:
    from ctloop.flows.monitor import decide_window
    from ctloop.monitoring.records import DriftMeasurement, QualityMeasurement, WindowData

    settings, params, lake = _runtime(model)
    summary = decide_window(lake, params, settings, WindowData.from_dict(collected), DriftMeasurement.from_dict(drift),
                            QualityMeasurement.from_dict(quality), retrains_in_flight).to_dict()
    return {k: summary[k] for k in ("window", "decision", "report", "champion")}


def monitor_event_extra(summary: dict[str, Any]) -> dict[str, Any]:
    from ctloop.flows.monitor import drift_event_extra

    return drift_event_extra(summary)


@costed("monitor", "guard_champion")
def monitor_guard(model: str | None, interval_start: datetime | str, quality: dict[str, Any], dag_id: str, run_id: str) -> dict[str, Any]:
    """Automatic rollback during the new champion's bake period (``promotion.rollback``)."""
    from ctloop.flows.promotion import guard_champion

    settings, params, lake = _runtime(model)
    return guard_champion(lake, params, settings, _day(interval_start), quality, actor=f"airflow:{dag_id}/{run_id}")
