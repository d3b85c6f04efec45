"""Airflow listener plugin: every DAG run outcome (success, failure) of a ctloop DAG (``<model>__<flow>``)
goes to ctloop's hash-chained audit log, naming the model. The scheduler calls these hooks when a run reaches a final state; the entry
names the run, how it was started, its data interval and the scheduler's message."""

from __future__ import annotations

import logging
import sys
from typing import Any

from airflow.listeners import hookimpl
from airflow.plugins_manager import AirflowPlugin

log = logging.getLogger(__name__)


# the flows the DAG factory generates for each model (dags/ctloop_models.py): <model>__<flow>
FLOWS = ("ingest", "retrain", "monitor", "labels", "rollback", "approve")


def _record(dag_run: Any, outcome: str, msg: str) -> None:
    dag_id, run_id = str(dag_run.dag_id), str(dag_run.run_id)
    model, _, flow = dag_id.rpartition("__")
    if not model or flow not in FLOWS:
        return
    try:
        from ctloop.core.audit import record
        from ctloop.core.settings import get_settings

        # only attributes the scheduler already loaded: a query here would open a second session and
        # commit inside the scheduler's critical section (Airflow refuses that: "UNEXPECTED COMMIT")
        record("dag_run", f"{dag_id}/{run_id}", outcome, [msg] if msg else [],
               {"run_type": str(getattr(dag_run.run_type, "value", dag_run.run_type)),
                "data_interval_start": str(dag_run.data_interval_start),
                "data_interval_end": str(dag_run.data_interval_end)},
               actor="airflow-scheduler", settings=get_settings().model_copy(update={"model": model}))
    except Exception:  # the audit must never take the scheduler down; the failure is logged loudly
        log.exception("ctloop audit: could not record %s of %s/%s", outcome, dag_id, run_id)


@hookimpl
def on_dag_run_success(dag_run: Any, msg: str) -> None:
    _record(dag_run, "success", msg)


@hookimpl
def on_dag_run_failed(dag_run: Any, msg: str) -> None:
    _record(dag_run, "failed", msg)


class CtloopAuditListenerPlugin(AirflowPlugin):
    name = "ctloop_audit_listener"
    listeners = [sys.modules[__name__]]
