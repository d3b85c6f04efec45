"""MLflow tracking and registry: experiments, aliases (``champion``, ``challenger``, ``previous``; never
stages) and the compare-and-set promotion.

MLflow has no atomic alias update, so promotion holds a lock while it re-reads ``champion`` and moves it
only if it still points where the gate saw it. The embedded default uses a file lock under
``CTLOOP_HOME``; together with ``max_active_runs=1`` on ``<model>__retrain`` no two promotions interleave.
A move of several aliases writes its plan first (``registry/<model>.pending.json``) and the history line
last; a move cut short (the tracking server died, the process was killed) is finished from the plan by
the next registry operation, so the aliases and their history always end up agreeing.

An outage is never an empty answer: "no such alias/version" is None or :class:`RegistryError`; a server
that does not answer within the bounded back-off (``CTLOOP_MLFLOW_RETRIES``,
``CTLOOP_MLFLOW_TIMEOUT_SECONDS``) is :class:`DependencyUnavailable` naming the tracking URI.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ctloop.core.errors import DependencyUnavailable, PromotionConflict, RegistryError
from ctloop.core.locks import file_lock
from ctloop.core.task import GREATER_IS_BETTER

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from ctloop.core.settings import Settings

CHAMPION, CHALLENGER, PREVIOUS, PREVIOUS_2 = "champion", "challenger", "previous", "previous-2"
CANDIDATE = "candidate"  # a gated challenger waiting for approval (promotion.mode: manual)
TAG = "ctloop."
GATE_ARTIFACT = "gate/decision.json"


_checked: set[str] = set()
NOT_FOUND = ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE")


def configure_mlflow(settings: Settings) -> MlflowClient:
    """The client for the settings' tracking URI, with MLflow's HTTP back-off bounded; a tracking server
    that does not answer is :class:`DependencyUnavailable` here, before any work."""
    import os

    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # stderr stays readable
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", str(settings.mlflow_retries))
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(settings.mlflow_timeout_seconds))
    import mlflow

    uri = settings.tracking_uri
    if uri not in _checked:
        check_reachable(settings)
        _checked.add(uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return mlflow.MlflowClient(uri, uri)


def check_reachable(settings: Settings) -> None:
    """An HTTP tracking server answers ``/health`` within the bounded retries, or DependencyUnavailable."""
    import time

    import httpx

    uri = settings.tracking_uri
    if not uri.startswith(("http://", "https://")):
        return
    last = ""
    for attempt in range(settings.mlflow_retries + 1):
        try:
            r = httpx.get(f"{uri.rstrip('/')}/health", timeout=settings.mlflow_timeout_seconds)
            if r.status_code < 500:
                return
            last = f"HTTP {r.status_code}"
        except httpx.HTTPError as e:
            last = f"{type(e).__name__}: {e}"
        if attempt < settings.mlflow_retries:
            time.sleep(min(2.0**attempt, 5.0))
    raise DependencyUnavailable(f"MLflow tracking server {uri} is unreachable after {settings.mlflow_retries + 1} "
                                f"attempt(s) ({last})")


def outage(client: MlflowClient, error: Exception) -> DependencyUnavailable:
    """The one-line error for a registry call that failed for want of a server, naming its URI."""
    text = " ".join(str(error).split())[:300]
    return DependencyUnavailable(f"MLflow at {client.tracking_uri} did not answer: {text}")


def _not_found(error: Exception) -> bool:
    return getattr(error, "error_code", None) in NOT_FOUND


def ensure_experiment(client: MlflowClient, name: str, settings: Settings) -> str:
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return str(exp.experiment_id)
    from mlflow.exceptions import MlflowException

    try:
        return str(client.create_experiment(name, artifact_location=f"{settings.artifact_root}/{name}"))
    except MlflowException:  # created concurrently by another task
        exp = client.get_experiment_by_name(name)
        assert exp is not None
        return str(exp.experiment_id)


def alias_version(client: MlflowClient, model: str, alias: str) -> str | None:
    """The version ``model@alias`` points at; None when there is no such alias (or model). An outage
    raises :class:`DependencyUnavailable`: it must never read as "no champion"."""
    try:
        return str(client.get_model_version_by_alias(model, alias).version)
    except Exception as e:
        if _not_found(e):
            return None
        raise outage(client, e) from e


def model_version(client: MlflowClient, model: str, version: str) -> Any:
    """The registered version; RegistryError when it does not exist, DependencyUnavailable on an outage."""
    try:
        return client.get_model_version(model, version)
    except Exception as e:
        if _not_found(e):
            raise RegistryError(f"model {model!r} has no version {version}") from e
        raise outage(client, e) from e


def require_champion(client: MlflowClient, model: str) -> str:
    """The ``@champion`` version, or a RegistryError saying there is none yet."""
    version = alias_version(client, model, CHAMPION)
    if version is None:
        raise RegistryError(f"model {model!r} has no @champion yet: run its retrain DAG first")
    return version


@contextlib.contextmanager
def registry_lock(settings: Settings, model: str) -> Iterator[None]:
    with file_lock(settings.home / "locks" / f"registry-{model}.lock"):
        yield


@dataclass(frozen=True)
class Promotion:
    model: str
    version: str
    previous_champion: str | None
    reason: str
    at: str

    def to_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


def promote(client: MlflowClient, settings: Settings, model: str, version: str, expected_champion: str | None,
            reason: str, actor: str = "ctloop", dag_run: str | None = None) -> Promotion:
    """Move ``champion`` to ``version`` iff it still points at ``expected_champion``; the old champion
    becomes ``previous`` and the one before it ``previous-2`` (both stay loadable for rollback). Raises
    PromotionConflict when another promotion won the race. Every alias move goes to the history."""
    model_version(client, model, version)
    with registry_lock(settings, model):
        finish_pending(client, settings, model)
        current = alias_version(client, model, CHAMPION)
        if current != expected_champion:
            raise PromotionConflict(
                f"{model}: champion is v{current}, not v{expected_champion} as when the gate decided; "
                f"v{version} not promoted (another promotion won)")
        if current == version:
            raise PromotionConflict(f"{model}: v{version} is already the champion")
        at = datetime.now(UTC).isoformat(timespec="seconds")
        targets: list[tuple[str, str | None]] = []
        if current is not None:
            previous = alias_version(client, model, PREVIOUS)
            if previous is not None and previous != version:
                targets.append((PREVIOUS_2, previous))
            targets.append((PREVIOUS, current))
        targets.append((CHAMPION, version))
        targets += [(alias, None) for alias in (CHALLENGER, CANDIDATE) if alias_version(client, model, alias) == version]
        tags = {version: {"promoted_at": at, "promoted_reason": reason, "promoted_by": actor,
                          "replaced": current or "none"}}
        if current is not None:
            tags[current] = {"demoted_at": at}
        apply_moves(client, settings, Plan(model, "promote", targets, tags, [], reason, actor, dag_run, at))
    return Promotion(model, version, current, reason, at)


def hold(client: MlflowClient, settings: Settings, model: str, version: str, reason: str, actor: str = "ctloop",
         dag_run: str | None = None) -> dict[str, Any]:
    """``@candidate`` to ``version`` (it waits for approval), under the registry lock, with its history line."""
    model_version(client, model, version)
    with registry_lock(settings, model):
        finish_pending(client, settings, model)
        before = alias_version(client, model, CANDIDATE)
        at = datetime.now(UTC).isoformat(timespec="seconds")
        apply_moves(client, settings, Plan(model, "candidate", [(CANDIDATE, version)], {}, [], reason, actor,
                                           dag_run, at))
    return {"candidate": version, "replaced_candidate": before, "at": at}


def withdraw(client: MlflowClient, settings: Settings, model: str, version: str, reason: str,
             tags: dict[str, str], actor: str = "ctloop", dag_run: str | None = None) -> str:
    """A staged rollout's candidate failed: ``@candidate`` leaves ``version`` and the version loses its gate
    pass (it can only come back through a new gate), with ``tags`` saying why. Returns when."""
    model_version(client, model, version)
    with registry_lock(settings, model):
        finish_pending(client, settings, model)
        at = datetime.now(UTC).isoformat(timespec="seconds")
        targets: list[tuple[str, str | None]] = [(CANDIDATE, None)] if alias_version(client, model, CANDIDATE) == version else []
        apply_moves(client, settings, Plan(model, "withdraw", targets, {version: tags | {"withdrawn_at": at}},
                                           [(version, "gate_passed"), (version, "gate_decision")], reason, actor,
                                           dag_run, at))
    return at


def rollback(client: MlflowClient, settings: Settings, model: str, to: str | None, expected_champion: str | None,
             reason: str, actor: str = "ctloop", dag_run: str | None = None) -> Promotion:
    """Move ``champion`` back to ``to`` (default: ``previous``) in one compare-and-set step. The
    rolled-back version loses its gate pass: it can only come back through a new gate."""
    with registry_lock(settings, model):
        finish_pending(client, settings, model)
        current = alias_version(client, model, CHAMPION)
        if current is None:
            raise RegistryError(f"model {model!r} has no @champion to roll back")
        if expected_champion is not None and current != expected_champion:
            raise PromotionConflict(f"{model}: champion is v{current}, not v{expected_champion}; rollback not done")
        previous, previous_2 = alias_version(client, model, PREVIOUS), alias_version(client, model, PREVIOUS_2)
        target = to or previous
        if target is None:
            raise RegistryError(f"{model}: no @previous version to roll back to; pass --to VERSION")
        if target == current:
            raise PromotionConflict(f"{model}: v{target} is already the champion")
        model_version(client, model, target)
        at = datetime.now(UTC).isoformat(timespec="seconds")
        targets: list[tuple[str, str | None]] = [(CHAMPION, target)]
        # the fallbacks shift up past the version that is champion again; the bad one is not a fallback
        remaining = [v for v in (previous, previous_2) if v not in (None, target, current)]
        for alias, value in zip((PREVIOUS, PREVIOUS_2), [*remaining, None, None], strict=False):
            if value is not None or alias_version(client, model, alias) is not None:
                targets.append((alias, value))
        tags = {current: {"rolled_back_at": at, "rolled_back_reason": reason, "rolled_back_by": actor},
                target: {"promoted_at": at, "promoted_reason": f"rollback: {reason}"}}
        # the rolled-back version loses its gate pass
        apply_moves(client, settings, Plan(model, "rollback", targets, tags,
                                           [(current, "gate_passed"), (current, "gate_decision")],
                                           reason, actor, dag_run, at))
    return Promotion(model, target, current, reason, at)


@dataclass(frozen=True)
class Plan:
    """One alias change, written down before it is made: the aliases' targets (None: removed), the
    version tags to set and to delete, and the history line that records it."""

    model: str
    kind: str
    targets: list[tuple[str, str | None]]
    tags: dict[str, dict[str, str]]
    untag: list[tuple[str, str]]
    reason: str
    actor: str
    dag_run: str | None
    at: str
    before: dict[str, str | None] | None = None  # the aliases as they were, for the history line

    def to_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


def pending_path(settings: Settings, model: str) -> Path:
    return settings.home / "registry" / f"{model}.pending.json"


def apply_moves(client: MlflowClient, settings: Settings, plan: Plan) -> list[dict[str, Any]]:
    """Write the plan, make the moves and tags, append the history line, drop the plan. Called under the
    registry lock. Every step is idempotent, so a plan cut short is finished by :func:`finish_pending`."""
    if plan.before is None:
        plan = Plan(**{**plan.to_dict(), "before": {a: alias_version(client, plan.model, a) for a, _ in plan.targets}})
    path = pending_path(settings, plan.model)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(plan.to_dict()))
    tmp.replace(path)
    try:
        for alias, version in plan.targets:
            if version is None:
                if alias_version(client, plan.model, alias) is not None:
                    client.delete_registered_model_alias(plan.model, alias)
            else:
                client.set_registered_model_alias(plan.model, alias, version)
        for version, tags in plan.tags.items():
            for key, value in tags.items():
                client.set_model_version_tag(plan.model, version, f"{TAG}{key}", value)
        for version, key in plan.untag:
            if f"{TAG}{key}" in model_version(client, plan.model, version).tags:
                client.delete_model_version_tag(plan.model, version, f"{TAG}{key}")
    except DependencyUnavailable:
        raise
    except Exception as e:
        if _not_found(e):
            raise RegistryError(f"{plan.model}: {e}") from e
        raise outage(client, e) from e
    assert plan.before is not None
    moves = [{"alias": a, "from": plan.before.get(a), "to": v} for a, v in plan.targets if plan.before.get(a) != v]
    append_history(settings, plan.model, plan.kind, moves, plan.reason, plan.actor, plan.dag_run, plan.at)
    path.unlink()
    return moves


def finish_pending(client: MlflowClient, settings: Settings, model: str) -> list[dict[str, Any]] | None:
    """Finish an alias change that was cut short (its plan is still on disk), and audit that it was; None
    when there is none. Called under the registry lock."""
    from ctloop.core.audit import record

    path = pending_path(settings, model)
    if not path.exists():
        return None
    raw = json.loads(path.read_text())
    plan = Plan(**{**raw, "targets": [tuple(x) for x in raw["targets"]], "untag": [tuple(x) for x in raw["untag"]]})
    moves = apply_moves(client, settings, plan)
    kind = "rollback" if plan.kind == "rollback" else "promotion"
    record(kind, f"{model} " + ", ".join(f"@{m['alias']} -> {('v' + m['to']) if m['to'] else '-'}" for m in moves),
           "completed after an interruption", [plan.reason, f"planned {plan.at} by {plan.actor}; the alias moves "
                                                            "were cut short and finished from the plan"],
           {"moves": moves, "plan": str(path)}, actor="ctloop (recovery)", settings=settings)
    return moves


def recover(client: MlflowClient, settings: Settings, model: str) -> list[dict[str, Any]] | None:
    """Finish an interrupted alias change of ``model``, if there is one (every registry verb does this
    first, so the aliases and their history converge once the tracking server answers again)."""
    if not pending_path(settings, model).exists():
        return None
    with registry_lock(settings, model):
        return finish_pending(client, settings, model)


def store_gate_decision(client: MlflowClient, model: str, version: str, decision: dict[str, Any]) -> str:
    """The gate's decision, whole, as the artifact ``gate/decision.json`` of the version's run; the run and
    the version get ``gate_passed`` and a ``gate_decision`` tag pointing at it (never the decision cut to
    fit a tag). Returns the artifact's URI."""
    run_id = model_version(client, model, version).run_id
    if not run_id:
        raise RegistryError(f"{model} v{version} has no MLflow run to keep its gate decision with")
    client.log_text(run_id, json.dumps(decision, indent=2, default=str), GATE_ARTIFACT)
    uri = f"runs:/{run_id}/{GATE_ARTIFACT}"
    passed = str(bool(decision["passed"])).lower()
    for key, value in ((f"{TAG}gate_passed", passed), (f"{TAG}gate_decision", uri)):
        client.set_model_version_tag(model, version, key, value)
        client.set_tag(run_id, key, value)
    client.log_metric(run_id, "gate_passed", float(decision["passed"]))
    return uri


def gate_decision_of(client: MlflowClient, model: str, version: str) -> dict[str, Any] | None:
    """The decision a version's gate took (read back from its artifact), or None when it has none (never
    gated, or rolled back since: a rolled-back version loses its gate pass)."""
    import mlflow

    uri = model_version(client, model, version).tags.get(f"{TAG}gate_decision")
    if not uri:
        return None
    return dict(json.loads(mlflow.artifacts.load_text(uri)))


def history_path(settings: Settings, model: str) -> Path:
    return settings.home / "registry" / f"{model}.alias-history.jsonl"


def append_history(settings: Settings, model: str, kind: str, moves: list[dict[str, Any]], reason: str,
                   actor: str, dag_run: str | None, at: str) -> None:
    """MLflow keeps no history of alias moves (mlflow#2169); ctloop appends one line per change."""
    path = history_path(settings, model)
    path.parent.mkdir(parents=True, exist_ok=True)
    entry = {"at": at, "model": model, "kind": kind, "moves": moves, "reason": reason, "actor": actor,
             "dag_run": dag_run}
    with path.open("a") as fh:
        fh.write(json.dumps(entry) + "\n")
    from ctloop.core.metrics import emit_gauges

    champion = next((m["to"] for m in moves if m.get("alias") == CHAMPION and m.get("to")), None)
    if champion is not None:  # Grafana's champion-over-time panel
        emit_gauges("registry", {"champion_version": int(champion)}, {"model": model})


def read_history(settings: Settings, model: str) -> list[dict[str, Any]]:
    path = history_path(settings, model)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def describe_version(client: MlflowClient, model: str, version: str | None) -> dict[str, Any] | None:
    if version is None:
        return None
    mv = client.get_model_version(model, version)
    run = client.get_run(mv.run_id) if mv.run_id else None
    tags = {k.removeprefix(TAG): v for k, v in mv.tags.items() if k.startswith(TAG)}
    decision = gate_decision_of(client, model, version) if tags.pop("gate_decision", None) else None
    return {
        "version": version,
        "run_id": mv.run_id,
        "created": datetime.fromtimestamp(mv.creation_timestamp / 1000, UTC).isoformat(timespec="seconds"),
        "metrics": {k: round(v, 4) for k, v in (run.data.metrics.items() if run else [])
                    if k in GREATER_IS_BETTER and k != "max_error"},
        "tags": tags,
        "gate": {"passed": decision.get("passed"), "reasons": decision.get("reasons")} if decision else None,
    }


def registry_status(client: MlflowClient, model: str, settings: Settings | None = None) -> dict[str, Any]:
    recovered = recover(client, settings, model) if settings is not None else None
    return {
        "recovered": recovered,
        "model": model,
        **{alias: describe_version(client, model, alias_version(client, model, alias))
           for alias in (CHAMPION, CHALLENGER, CANDIDATE, PREVIOUS, PREVIOUS_2)},
    }
