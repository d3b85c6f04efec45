"""Airflow listener plugin: every DAG run outcome (success, failure) of a ctloop DAG goes to ctloop's
hash-chained audit log. The scheduler calls these hooks when a run reaches a final state; the entry
names the run, how it was started, its data interval and the failed tasks."""

from __future__ import annotations

import logging
import sys
from typing import Any

from airflow.listeners import hookimpl
from airflow.plugins_manager import AirflowPlugin

log = logging.getLogger(__name__)


def _record(dag_run: Any, outcome: str, msg: str) -> None:
    if not str(dag_run.dag_id).startswith("ctloop_"):
        return
    try:
        from ctloop.audit import record

        failed: list[str] = []
        if outcome == "failed":
            failed = [ti.task_id for ti in dag_run.get_task_instances(state=["failed", "upstream_failed"])]
        record("dag_run", f"{dag_run.dag_id}/{dag_run.run_id}", outcome, [msg] if msg else [],
               {"run_type": str(getattr(dag_run.run_type, "value", dag_run.run_type)),
                "data_interval_start": str(dag_run.data_interval_start),
                "data_interval_end": str(dag_run.data_interval_end), "failed_tasks": failed},
               actor="airflow-scheduler")
    except Exception:  # the audit must never take the scheduler down; the failure is logged loudly
        log.exception("ctloop audit: could not record %s of %s/%s", outcome, dag_run.dag_id, dag_run.run_id)


@hookimpl
def on_dag_run_success(dag_run: Any, msg: str) -> None:
    _record(dag_run, "success", msg)


@hookimpl
def on_dag_run_failed(dag_run: Any, msg: str) -> None:
    _record(dag_run, "failed", msg)


class CtloopAuditListenerPlugin(AirflowPlugin):
    name = "ctloop_audit_listener"
    listeners = [sys.modules[__name__]]
