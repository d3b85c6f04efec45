"""MLflow tracking and registry: experiments, aliases (``champion``, ``challenger``, ``previous``; never
stages) and the compare-and-set promotion.

MLflow has no atomic alias update, so promotion holds a lock while it re-reads ``champion`` and moves it
only if it still points where the gate saw it. The embedded default uses a file lock under
``CTLOOP_HOME``; together with ``max_active_runs=1`` on ``ctloop_retrain`` no two promotions interleave.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ctloop.core.errors import PromotionConflict, RegistryError
from ctloop.core.locks import file_lock

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from ctloop.core.settings import Settings

CHAMPION, CHALLENGER, PREVIOUS, PREVIOUS_2 = "champion", "challenger", "previous", "previous-2"
CANDIDATE = "candidate"  # a gated challenger waiting for approval (promotion.mode: manual)
TAG = "ctloop."
GATE_ARTIFACT = "gate/decision.json"


def configure_mlflow(settings: Settings) -> MlflowClient:
    import os

    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # stderr stays readable
    import mlflow

    mlflow.set_tracking_uri(settings.tracking_uri)
    mlflow.set_registry_uri(settings.tracking_uri)
    return mlflow.MlflowClient(settings.tracking_uri, settings.tracking_uri)


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
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(model, alias).version)
    except MlflowException:
        return None


def require_champion(client: MlflowClient, model: str) -> str:
    """The ``@champion`` version, or a RegistryError saying there is none yet."""
    version = alias_version(client, model, CHAMPION)
    if version is None:
        raise RegistryError(f"model {model!r} has no @champion yet: run ctloop_retrain first")
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
    try:
        client.get_model_version(model, version)
    except Exception as e:
        raise RegistryError(f"model {model!r} has no version {version}") from e
    with registry_lock(settings, model):
        current = alias_version(client, model, CHAMPION)
        if current != expected_champion:
            raise PromotionConflict(
                f"{model}: champion is v{current}, not v{expected_champion} as when the gate decided; "
                f"v{version} not promoted (another promotion won)")
        if current == version:
            raise PromotionConflict(f"{model}: v{version} is already the champion")
        at = datetime.now(UTC).isoformat(timespec="seconds")
        moves = []
        if current is not None:
            previous = alias_version(client, model, PREVIOUS)
            if previous is not None and previous != version:
                moves.append(_move(client, model, PREVIOUS_2, previous))
            moves.append(_move(client, model, PREVIOUS, current))
            client.set_model_version_tag(model, current, f"{TAG}demoted_at", at)
        moves.append(_move(client, model, CHAMPION, version))
        for key, value in {"promoted_at": at, "promoted_reason": reason, "promoted_by": actor,
                           "replaced": current or "none"}.items():
            client.set_model_version_tag(model, version, f"{TAG}{key}", value)
        for alias in (CHALLENGER, CANDIDATE):
            if alias_version(client, model, alias) == version:
                client.delete_registered_model_alias(model, alias)
                moves.append({"alias": alias, "from": version, "to": None})
        append_history(settings, model, "promote", moves, reason, actor, dag_run, at)
    return Promotion(model, version, current, reason, at)


def rollback(client: MlflowClient, settings: Settings, model: str, to: str | None, expected_champion: str | None,
             reason: str, actor: str = "ctloop", dag_run: str | None = None) -> Promotion:
    """Move ``champion`` back to ``to`` (default: ``previous``) in one compare-and-set step. The
    rolled-back version loses its gate pass: it can only come back through a new gate."""
    with registry_lock(settings, model):
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
        try:
            client.get_model_version(model, target)
        except Exception as e:
            raise RegistryError(f"model {model!r} has no version {target}") from e
        at = datetime.now(UTC).isoformat(timespec="seconds")
        moves = [_move(client, model, CHAMPION, target)]
        # the fallbacks shift up past the version that is champion again; the bad one is not a fallback
        remaining = [v for v in (previous, previous_2) if v not in (None, target, current)]
        for alias, value in zip((PREVIOUS, PREVIOUS_2), [*remaining, None, None], strict=False):
            if value is None:
                before = alias_version(client, model, alias)
                if before is not None:
                    client.delete_registered_model_alias(model, alias)
                    moves.append({"alias": alias, "from": before, "to": None})
            else:
                moves.append(_move(client, model, alias, value))
        for key in ("gate_passed", "gate_decision"):
            client.delete_model_version_tag(model, current, f"{TAG}{key}")
        for key, value in {"rolled_back_at": at, "rolled_back_reason": reason, "rolled_back_by": actor}.items():
            client.set_model_version_tag(model, current, f"{TAG}{key}", value)
        client.set_model_version_tag(model, target, f"{TAG}promoted_at", at)
        client.set_model_version_tag(model, target, f"{TAG}promoted_reason", f"rollback: {reason}")
        append_history(settings, model, "rollback", moves, reason, actor, dag_run, at)
    return Promotion(model, target, current, reason, at)


def _move(client: MlflowClient, model: str, alias: str, version: str) -> dict[str, Any]:
    before = alias_version(client, model, alias)
    client.set_registered_model_alias(model, alias, version)
    return {"alias": alias, "from": before, "to": version}


def store_gate_decision(client: MlflowClient, model: str, version: str, decision: dict[str, Any]) -> str:
    """The gate's decision, whole, as the artifact ``gate/decision.json`` of the version's run; the run and
    the version get ``gate_passed`` and a ``gate_decision`` tag pointing at it (never the decision cut to
    fit a tag). Returns the artifact's URI."""
    run_id = client.get_model_version(model, version).run_id
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

    uri = client.get_model_version(model, version).tags.get(f"{TAG}gate_decision")
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
                    if k in ("roc_auc", "f1_score", "log_loss", "brier_score", "precision_score", "recall_score")},
        "tags": tags,
        "gate": {"passed": decision.get("passed"), "reasons": decision.get("reasons")} if decision else None,
    }


def registry_status(client: MlflowClient, model: str) -> dict[str, Any]:
    return {
        "model": model,
        **{alias: describe_version(client, model, alias_version(client, model, alias))
           for alias in (CHAMPION, CHALLENGER, CANDIDATE, PREVIOUS, PREVIOUS_2)},
    }
