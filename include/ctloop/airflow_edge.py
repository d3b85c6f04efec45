"""The one library module that imports Airflow (the DAG files, the plugins and ``ctloop`` CLI verbs that
deliver alerts use it; nothing in the library below the edge does):

* what DAG files need at parse time: schedules, start and end dates, the manual form's defaults and
  ``default_args`` (light on purpose: no pandas, no GX, DESIGN.md style rule 2);
* alerts, delivered through Airflow's provider notifiers on one connection, ``alerts.conn_id`` in
  params.yaml (default ``ctloop_alerts``), read from any Airflow secrets source
  (``AIRFLOW_CONN_CTLOOP_ALERTS``, the metadata DB, a secrets backend). Its type picks the notifier:

  * ``http``: :class:`~airflow.providers.http.notifications.HttpNotifier` POSTs the alert as JSON to the
    connection's URL (+ extra ``endpoint``). The body has a ``text`` line too, which is what
    Slack-compatible webhooks (Mattermost, Rocket.Chat, Teams workflows) display.
  * ``slackwebhook``: :class:`~airflow.providers.slack.notifications.slack_webhook.SlackWebhookNotifier`.
  * ``smtp``: :class:`~airflow.providers.smtp.notifications.smtp.SmtpNotifier`, to extra ``to``.

The library writes audit entries and knows which of them page someone (:mod:`ctloop.decisions.alerts`);
a process subscribes to its own entries here (:func:`route_audit_alerts`): the DAG files and the CLI do.
``ctloop serve`` never imports Airflow: it hands alert-worthy entries to a ``ctloop alerts send``
process instead. No such connection: alerts are off. A delivery that fails is retried, then logged; it
never fails the decision it reports (that is in the audit log already). Every attempt is written to
``CTLOOP_HOME/alerts/alerts.jsonl`` with its outcome.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseNotifier, BaseOperator, BaseOperatorLink, Param
from airflow.triggers.base import BaseTrigger, TriggerEvent

from ctloop.core.audit import subscribe
from ctloop.core.locks import file_lock
from ctloop.core.metrics import emit_counter
from ctloop.core.params import load_params, load_specs
from ctloop.core.settings import get_settings
from ctloop.decisions.alerts import Alert, Delivery, alert_from_audit

if TYPE_CHECKING:
    from ctloop.core.params import AlertsSpec, Params
    from ctloop.core.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelSpecs:
    """What the DAG factory needs at parse time: each model's checked spec, or the error of a spec that
    does not validate (that model gets no DAGs; the others are unaffected)."""

    specs: dict[str, Params]
    broken: dict[str, str]


def deployment_specs(only: str | None = None) -> ModelSpecs:
    """Every model's spec (``only``: just that model: a task run parses only its own DAG). No Airflow
    Variables or database at parse time: the models folder and the environment only."""
    from ctloop.core.errors import ConfigError

    try:
        specs, broken = load_specs(get_settings(), only)
    except ConfigError as e:
        return ModelSpecs({}, {"": str(e)})
    return ModelSpecs(specs, broken)


def schedule_start(params: Params) -> datetime:
    """``schedule.start_date`` of the model's spec."""
    day = params.schedule.start_date
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def schedule_end() -> datetime | None:
    """``CTLOOP_SCHEDULE_END`` (demo and tests on a simulated calendar), else no end."""
    day = get_settings().schedule_end
    return None if day is None else datetime(day.year, day.month, day.day, tzinfo=UTC)


def retrain_form(model: str, params: Params) -> dict[str, Param]:
    """``<model>__retrain``'s typed manual-trigger form, its defaults from the model's spec."""
    from ctloop.core.params import BUILT_IN_MODELS_BY_TASK

    t = params.training
    custom = t.estimator is not None or t.pipeline is not None
    return {
        "reason": Param(None, type=["null", "string"], title="Reason",
                        description="Why retrain now. Required for manual runs; recorded on the MLflow run."),
        "window_days": Param(t.window_days, type="integer", minimum=2, maximum=365, title="Training window (days)"),
        "model": Param(t.model, type="string",
                       enum=[*BUILT_IN_MODELS_BY_TASK[params.dataset.task], *(["custom"] if custom else [])],
                       title="Model", description=f"A built-in model, or custom: training.estimator / "
                                                  f"training.pipeline in models/{model}.yaml"),
        "force_promote": Param(False, type="boolean", title="Force promotion",
                               description="Promote even if the gate rejects; the gate's verdict is still recorded."),
        "hyperparameters": Param({}, type="object", title="Hyperparameter overrides",
                                 description="e.g. {\"C\": 0.001}; merged over the spec's. scikit-learn "
                                             "set_params names: a plain name is the model's"),
    }


def rollback_form() -> dict[str, Param]:
    return {"version": Param("previous", type="string", minLength=1, title="Roll back to",
                             description="a version number, or previous"),
            "reason": Param(type="string", minLength=3, title="Reason", description="why; audited")}


def approve_form() -> dict[str, Param]:
    return {"version": Param(type="string", minLength=1, title="Version", description="the @candidate version to promote"),
            "reason": Param(type="string", minLength=3, title="Reason", description="why it may go live; audited")}


def rollout_form() -> dict[str, Param]:
    return {"action": Param("advance", type="string", enum=["advance", "resume", "abort"], title="Action",
                            description="advance: measure and act (what the gate's Asset event runs); resume a "
                                        "paused rollout; abort it (weight 0, the candidate needs a new gate pass)"),
            "reason": Param(None, type=["null", "string"], title="Reason",
                            description="why; required to resume or abort (audited)")}


@contextmanager
def failing_on(*errors: type[Exception]) -> Iterator[None]:
    """Inside a task: these errors are the data's or the request's fault, not the infrastructure's, so the
    task fails at once with their one-line message (no retry); anything else is retried by Airflow."""
    from airflow.sdk.exceptions import AirflowFailException

    try:
        yield
    except errors as e:
        raise AirflowFailException(str(e)) from e


# what each generated DAG says about itself in the UI (doc_md), per flow; {model}, {suite}, {registered}
DAG_DOCS: dict[str, str] = {
    "ingest": """
### {model}: ingest

One partition per data interval (daily): **extract** the delivered batch into `raw/dt=…` (immutable),
**validate** it with the committed Great Expectations suite `{suite}`, then **publish** it to `curated/dt=…`
and emit this model's curated-data Asset. A batch that fails validation is moved to `quarantine/dt=…` with
its validation result beside it, and the validate task fails listing the failed expectations (no retry: the
data, not the infrastructure, is at fault). Re-running a day rewrites the same partitions.

Backfill: `airflow backfill create --dag-id {model}__ingest --from-date … --to-date …`.
""",
    "retrain": """
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
""",
    "monitor": """
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
""",
    "labels": """
### {model}: labels

Delayed ground truth from a real system, one delivery per data interval (`labels.schedule`):
**ingest_labels** lands the day's label files (`labels.path` with `{{ds}}`) unchanged in `raw_labels/`,
checks them against the labels contract (the id and label columns, labels the task allows, one label per
id, arrival times), and stores them in `labels/dt=…`, where `{model}__monitor` joins them with the
prediction log. A delivery that breaks the contract is quarantined whole in `quarantine_labels/` with its
reasons and the task fails (no retry). No delivery that day: the task is skipped. Labels also arrive
through `POST /feedback` on `ctloop serve`.
""",
    "rollback": """
### {model}: rollback

Move `@champion` of `{registered}` back in one compare-and-set step: to `@previous` by default, or to the
version given. The rolled-back version loses its gate pass (it can only return through a new gate);
`@previous` and `@previous-2` shift so that two earlier champions stay loadable. Recorded in the alias
history (`ctloop history --model {model}`) and the audit log.
""",
    "approve": """
### {model}: approve

Manual promotion for `promotion.mode: manual`: a challenger that passed its gate waits as `@candidate`;
a person reviews it (MLflow run, gate decision, evaluation suites) and triggers this DAG with the version
and a reason. Approval of a version whose gate failed, or that was rolled back since its last gate pass,
is refused. The champion moves by compare-and-set; the approval is audited.
""",
    "rollout": """
### {model}: staged rollout

`promotion.mode: rollout`: a challenger that passed its gate becomes `@candidate` of `{registered}` and
`{model}__retrain` emits the Asset `ctloop/{model}/rollout`, which runs this DAG. Its one task sets the
candidate's share of request keys step by step (`promotion.rollout.steps`, sticky per key), waits on the
triggerer (no worker slot) until the step has its minimum time and requests, judges the step from the
prediction log (error rate, p99 latency, score distance, decision agreement, labeled quality) and acts:
next weight; `@champion` by compare-and-set after the last step; weight 0 at once and the candidate
withdrawn when a metric fails or the server's guard stopped it; paused for a person when the step times
out undecided. Trigger it with `action` resume or abort (and a reason) to answer a paused rollout, or use
`ctloop rollout status|resume|abort --model {model}`.
""",
}


def dag_doc(flow: str, model: str, params: Params) -> str:
    """The ``doc_md`` of ``<model>__<flow>``."""
    return DAG_DOCS[flow].format(model=model, suite=params.validation.suite,
                                 registered=params.training.registered_model)


def dag_arguments(model: str, flow: str, spec: Params, **kwargs: Any) -> dict[str, Any]:
    """The ``DAG(...)`` arguments every generated DAG shares: id, start, tags, doc, and its owning team
    (``spec.owner``; ``owner``: the UI's Owner column; ``access_control``: the team's role edits and triggers the DAG)."""
    from ctloop.core.owners import access_control

    if spec.owner:
        kwargs["default_args"] = {**kwargs.get("default_args", {}), "owner": spec.owner}
    return {"dag_id": f"{model}__{flow}", "start_date": schedule_start(spec), "catchup": False,
            "tags": ["ctloop", f"model:{model}", flow], "doc_md": dag_doc(flow, model, spec),
            "access_control": access_control(spec), **kwargs}  # kwargs: DAG(...)'s own, e.g. params (the form)


def invalid_spec_arguments(model: str, error: str) -> dict[str, Any]:
    """The ``DAG(...)`` arguments of ``<model>__invalid_spec``: paused, its description and doc the error."""
    return {"dag_id": f"{model or 'ctloop'}__invalid_spec", "start_date": datetime(2026, 1, 1, tzinfo=UTC),
            "catchup": False, "tags": ["ctloop", f"model:{model}", "invalid-spec"], "is_paused_upon_creation": True,
            "description": error[:200],
            "doc_md": f"### {model}: invalid spec\n\nThis model has no DAGs until its spec validates:\n\n`{error}`",
            "default_args": {"retries": 0}}


def model_of_dag(dag_id: str) -> str | None:
    """The model a generated DAG acts for (``<model>__<flow>``)."""
    return dag_id.split("__", 1)[0] if "__" in dag_id else None


class TaskFailureNotifier(BaseNotifier):
    """``on_failure_callback`` of every ctloop task: a task that failed for good (retries spent, or failed
    without retry) becomes a ``task_failure`` alert through the ``alerts.conn_id`` connection
    (see the module docstring). A task that will be retried raises no alert."""

    template_fields = ()

    def notify(self, context: Any) -> None:
        settings = get_settings().for_model(model_of_dag(context["ti"].dag_id))
        try:
            send(alert_from_task_failure(context), alert_spec(settings), settings)
        except Exception:  # a callback that raises only adds noise to the task log; say what went wrong
            log.exception("ctloop alerts: could not send the task_failure alert")


def route_alerts_of_task(context: Any) -> None:
    """``on_execute_callback``: the task process's alert-worthy audit entries go out as alerts."""
    route_audit_alerts()


def task_defaults(**overrides: Any) -> dict[str, Any]:
    """``default_args`` of every ctloop DAG: the task's audited decisions and its failure raise alerts,
    plus the DAG's own retry settings."""
    return {"on_execute_callback": [route_alerts_of_task], "on_failure_callback": [TaskFailureNotifier()],
            **overrides}


def alert_from_task_failure(context: Any) -> Alert:
    """A ``task_failure`` alert from an Airflow task context (``on_failure_callback``)."""
    ti = context["ti"]
    error = context.get("exception")
    reasons = [f"{type(error).__name__}: {error}"] if error is not None else ["the task failed"]
    details = {"dag_id": ti.dag_id, "task_id": ti.task_id, "run_id": ti.run_id,
               "try_number": getattr(ti, "try_number", None), "map_index": getattr(ti, "map_index", -1),
               "hostname": getattr(ti, "hostname", None), "log_url": getattr(ti, "log_url", None),
               "data_interval_start": str(context.get("data_interval_start") or "") or None}
    subject = f"{ti.dag_id}.{ti.task_id}"
    return Alert("task_failure", "critical", f"task failed: {subject} ({ti.run_id})", subject, reasons, details,
                 source=f"{ti.dag_id}/{ti.run_id}/{ti.task_id}")


# alert delivery -------------------------------------------------------------------------------------------------

def _connection(conn_id: str) -> Any | None:
    from airflow.sdk import Connection
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        return Connection.get(conn_id)
    except AirflowNotFoundException:
        return None


def provider_notifier(conn: Any, alert: Alert, spec: AlertsSpec) -> BaseNotifier:
    """The provider's notifier for the connection's type, carrying this alert."""
    kind = (conn.conn_type or "").lower()
    extra = conn.extra_dejson or {}
    if kind in ("http", "https"):
        from airflow.providers.http.notifications.http import HttpNotifier

        return HttpNotifier(http_conn_id=conn.conn_id, endpoint=extra.get("endpoint"), json=alert.payload(),
                            headers={"Content-Type": "application/json"},
                            extra_options={"timeout": spec.timeout_seconds, "check_response": True})
    if kind == "slackwebhook":
        from airflow.providers.slack.notifications.slack_webhook import SlackWebhookNotifier

        fields = "\n".join(f"*{k}*: {v}" for k, v in alert.details.items() if v not in (None, "", [], {}))
        blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": alert.text}}]
        if fields:
            blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": fields[:2900]}})
        return SlackWebhookNotifier(slack_webhook_conn_id=conn.conn_id, text=alert.text, blocks=blocks,
                                    timeout=int(spec.timeout_seconds))
    if kind in ("smtp", "email"):
        from airflow.providers.smtp.notifications.smtp import SmtpNotifier

        to = extra.get("to")
        if not to:
            raise ValueError(f"connection {conn.conn_id!r} (smtp): extra field 'to' (recipients) is missing")
        rows = "".join(f"<tr><th align=left>{k}</th><td>{v}</td></tr>" for k, v in alert.details.items())
        reasons = "".join(f"<li>{r}</li>" for r in alert.reasons)
        return SmtpNotifier(to=to, smtp_conn_id=conn.conn_id, subject=alert.text[:200],
                            html_content=f"<p>{alert.title}</p><ul>{reasons}</ul><table>{rows}</table>")
    raise ValueError(f"connection {conn.conn_id!r}: type {conn.conn_type!r} cannot carry alerts; "
                     f"use http, slackwebhook or smtp")


def _journal(settings: Settings, alert: Alert, delivery: Delivery) -> None:
    path = settings.home / "alerts" / "alerts.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(path.with_name(".lock")), path.open("a") as fh:
        fh.write(json.dumps({"alert": alert.payload(), "delivery": delivery.to_dict()}, default=str) + "\n")


def send(alert: Alert, spec: AlertsSpec, settings: Settings) -> Delivery:
    """Deliver one alert through the configured connection; never raises."""
    if alert.event not in spec.events:
        return Delivery(alert.event, False, None, 0, "event not in alerts.events")
    lookup_error: str | None = None
    try:
        conn = _connection(spec.conn_id)
    except Exception as e:  # a secrets backend that is down must not take the decision with it
        log.error("ctloop alerts: cannot read connection %r: %s", spec.conn_id, e)
        conn, lookup_error = None, f"connection lookup failed: {e}"
    if conn is None:
        delivery = Delivery(alert.event, False, None, 0, lookup_error or f"connection {spec.conn_id!r} not defined")
        if lookup_error:
            _journal(settings, alert, delivery)
        return delivery
    error: str | None = None
    attempts = 0
    for attempts in range(1, spec.attempts + 1):
        try:
            provider_notifier(conn, alert, spec).notify({})
            error = None
            break
        except ValueError as e:  # the connection cannot carry alerts: retrying will not help
            error = str(e)
            break
        except Exception as e:
            error = f"{type(e).__name__}: {e}"
            if attempts < spec.attempts:
                time.sleep(spec.retry_delay_seconds)
    delivery = Delivery(alert.event, error is None, conn.conn_type, attempts, error)
    if error:
        log.error("ctloop alerts: %s not delivered through %r after %d attempt(s): %s", alert.event,
                  spec.conn_id, attempts, error)
    else:
        log.info("ctloop alerts: %s sent through %r (%s)", alert.event, spec.conn_id, conn.conn_type)
    _journal(settings, alert, delivery)
    emit_counter("alerts", {"event": alert.event, "delivered": str(delivery.delivered).lower()})
    return delivery


def alert_spec(settings: Settings) -> AlertsSpec:
    return load_params(settings.spec_path).alerts


def alert_on_audit(entry: dict[str, Any], settings: Settings) -> Delivery | None:
    """Called for every new audit entry; sends the alert it raises, if any. Never raises."""
    try:
        alert = alert_from_audit(entry)
        return None if alert is None else send(alert, alert_spec(settings), settings)
    except Exception:
        log.exception("ctloop alerts: could not alert on audit entry #%s", entry.get("seq"))
        return None


def route_audit_alerts() -> None:
    """From now on, every alert-worthy audit entry this process writes goes out through the alerts
    connection (idempotent: a process subscribes once)."""
    subscribe(alert_on_audit)


class RolloutTrigger(BaseTrigger):
    """Waits on the triggerer until a staged-rollout step should be measured (no worker slot held while
    traffic arrives): polls :func:`ctloop.flows.rollout.step_ready` every ``poll_seconds`` in a thread."""

    def __init__(self, model: str | None, not_before: str, poll_seconds: float = 5.0) -> None:
        super().__init__()
        self.model, self.not_before, self.poll_seconds = model, not_before, poll_seconds

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (f"{__name__}.RolloutTrigger",
                {"model": self.model, "not_before": self.not_before, "poll_seconds": self.poll_seconds})

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from ctloop.flows.tasks import rollout_ready

        while True:
            why = await asyncio.to_thread(rollout_ready, self.model, self.not_before)
            if why is not None:
                yield TriggerEvent({"ready": why})
                return
            await asyncio.sleep(self.poll_seconds)


class MlflowRunLink(BaseOperatorLink):
    """The task's "MLflow run" button: the candidate's run, which holds every step's analysis
    (``rollout/step-N.json``). Airflow evaluates it on the worker when the task ends; the operator keeps
    the URL its last measurement returned."""

    name = "MLflow run"

    def get_link(self, operator: BaseOperator, *, ti_key: Any) -> str:
        return getattr(operator, "mlflow_run_url", None) or ""


class RolloutController(BaseOperator):
    """``<model>__rollout``'s task: apply the form's action (advance, resume, abort), measure and act, and
    defer to :class:`RolloutTrigger` until the next measurement, step after step, until the rollout is
    promoted, aborted or paused. Each step's analysis is in the task log, the audit log and the candidate's
    MLflow run."""

    template_fields = ("action", "reason")
    ui_color = "#d6eaf8"
    operator_extra_links = (MlflowRunLink(),)

    def __init__(self, *, model: str | None, action: str = "{{ params.action }}",
                 reason: str = "{{ params.reason or '' }}", poll_seconds: float = 5.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.model, self.action, self.reason, self.poll_seconds = model, action, reason, poll_seconds
        self.mlflow_run_url: str | None = None  # set by each measurement; read by MlflowRunLink

    def execute(self, context: Any) -> dict[str, Any] | None:
        return self._control(context, self.action)

    def measure(self, context: Any, event: dict[str, Any] | None = None) -> dict[str, Any] | None:
        self.log.info("measuring: %s", (event or {}).get("ready"))
        return self._control(context, "advance")

    def _control(self, context: Any, action: str) -> dict[str, Any] | None:
        from airflow.sdk.exceptions import AirflowFailException

        from ctloop.core.errors import CtloopError
        from ctloop.flows.tasks import rollout_control

        run = context["dag_run"]
        try:
            result = rollout_control(self.model, action, self.reason, run.dag_id, run.run_id)
        except CtloopError as e:
            raise AirflowFailException(str(e)) from e
        analysis, state = result["analysis"], result["state"]
        self.mlflow_run_url = result.get("mlflow_run_url")
        if self.mlflow_run_url:
            self.log.info("the candidate's MLflow run (each step's analysis): %s", self.mlflow_run_url)
        if analysis is not None:
            self.log.info("step %d at %.0f%%: %s -> %s; %s", analysis["step"] + 1, 100 * analysis["weight"],
                          analysis["outcome"], analysis["action"], "; ".join(analysis["reasons"]))
        if result["wait_until"] is not None:
            self.defer(trigger=RolloutTrigger(self.model, result["wait_until"], self.poll_seconds),
                       method_name="measure")
        self.log.info("rollout %s", state["status"] if state else "not started")
        return result
