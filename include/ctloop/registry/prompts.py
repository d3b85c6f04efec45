"""An LLM app's prompt in MLflow's Prompt Registry: immutable versions, and aliases that say which one is
served (``champion``, ``previous``; a gated version waiting for its rollout is ``candidate``).

The same compare-and-set as a model's promotion: the lock under ``CTLOOP_HOME``, ``champion`` re-read and
moved only if it still points where the gate saw it, the old champion kept as ``previous``, and a line in
the app's alias history.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ctloop.core.errors import PromotionConflict, RegistryError
from ctloop.registry.mlflow_registry import (
    CANDIDATE,
    CHAMPION,
    PREVIOUS,
    append_history,
    outage,
    registry_lock,
)

if TYPE_CHECKING:
    from ctloop.core.settings import Settings


@dataclass(frozen=True)
class PromptVersion:
    name: str
    version: str
    template: str
    commit_message: str
    aliases: tuple[str, ...]

    @property
    def uri(self) -> str:
        return f"prompts:/{self.name}/{self.version}"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _is_missing(error: Exception) -> bool:
    text = str(error)
    return any(s in text for s in ("RESOURCE_DOES_NOT_EXIST", "not found", "does not exist", "INVALID_PARAMETER"))


def _as_record(p: Any, aliases: tuple[str, ...] = ()) -> PromptVersion:
    return PromptVersion(p.name, str(p.version), str(p.template), p.commit_message or "", aliases)


def register(name: str, template: str, message: str, tags: dict[str, str] | None = None) -> PromptVersion:
    """A new immutable version of the prompt (MLflow numbers it)."""
    import mlflow

    try:
        p = mlflow.genai.register_prompt(name=name, template=template, commit_message=message, tags=tags or {})
    except Exception as e:
        raise outage(mlflow.MlflowClient(), e) from e
    return _as_record(p)


def load(name: str, version_or_alias: str) -> PromptVersion:
    """``"3"`` or ``"champion"``; a version or alias that does not exist is :class:`RegistryError`."""
    import mlflow

    ref = f"prompts:/{name}/{version_or_alias}" if version_or_alias.isdigit() else f"prompts:/{name}@{version_or_alias}"
    try:
        # an alias is read fresh (MLflow caches alias lookups for 60 s: a promotion's compare-and-set and the
        # server's poll must see a move at once); a version is immutable and may be cached
        p = mlflow.genai.load_prompt(ref, link_to_model=False,
                                     cache_ttl_seconds=None if version_or_alias.isdigit() else 0)
    except Exception as e:
        if _is_missing(e):
            raise RegistryError(f"{ref}: no such prompt version or alias") from e
        raise outage(mlflow.MlflowClient(), e) from e
    return _as_record(p, tuple(getattr(p, "aliases", ()) or ()))


def alias_version(name: str, alias: str) -> str | None:
    try:
        return load(name, alias).version
    except RegistryError:
        return None


def set_alias(name: str, alias: str, version: str) -> None:
    import mlflow

    load(name, version)  # refuse a version that does not exist, naming it
    try:
        mlflow.genai.set_prompt_alias(name, alias=alias, version=int(version))
    except Exception as e:
        raise outage(mlflow.MlflowClient(), e) from e


def delete_alias(name: str, alias: str) -> None:
    import mlflow

    try:
        mlflow.genai.delete_prompt_alias(name, alias=alias)
    except Exception as e:
        if not _is_missing(e):
            raise outage(mlflow.MlflowClient(), e) from e


def diff(name: str, a: str, b: str) -> str:
    """A unified diff of two versions' templates (versions or aliases)."""
    left, right = load(name, a), load(name, b)
    return "".join(difflib.unified_diff(left.template.splitlines(keepends=True),
                                        right.template.splitlines(keepends=True),
                                        fromfile=f"{name} v{left.version}", tofile=f"{name} v{right.version}"))


def promote(settings: Settings, name: str, version: str, expected_champion: str | None, reason: str,
            actor: str = "ctloop") -> list[dict[str, Any]]:
    """Move ``champion`` to ``version`` if it still points at ``expected_champion``; the old champion
    becomes ``previous``. Returns the moves, also written to the app's alias history."""
    with registry_lock(settings, f"prompt-{name}"):
        current = alias_version(name, CHAMPION)
        if current != expected_champion:
            raise PromotionConflict(f"prompts:/{name}@champion moved to v{current} since the gate saw "
                                    f"v{expected_champion}: nothing changed")
        moves: list[dict[str, Any]] = []
        if current is not None and current != version:
            moves.append({"alias": PREVIOUS, "from": alias_version(name, PREVIOUS), "to": current})
            set_alias(name, PREVIOUS, current)
        set_alias(name, CHAMPION, version)
        moves.append({"alias": CHAMPION, "from": current, "to": version})
        if alias_version(name, CANDIDATE) == version:
            delete_alias(name, CANDIDATE)
        append_history(settings, f"prompt-{name}", "promote", moves, reason, actor, None, _now())
    return moves


def rollback(settings: Settings, name: str, reason: str, actor: str = "ctloop") -> list[dict[str, Any]]:
    """``champion`` back to ``previous`` (the instant switch back); :class:`RegistryError` when there is none."""
    with registry_lock(settings, f"prompt-{name}"):
        current, previous = alias_version(name, CHAMPION), alias_version(name, PREVIOUS)
        if previous is None:
            raise RegistryError(f"prompts:/{name}@previous: no previous version to roll back to")
        set_alias(name, CHAMPION, previous)
        moves = [{"alias": CHAMPION, "from": current, "to": previous}]
        if current is not None:
            set_alias(name, PREVIOUS, current)
            moves.append({"alias": PREVIOUS, "from": previous, "to": current})
        append_history(settings, f"prompt-{name}", "rollback", moves, reason, actor, None, _now())
    return moves


def rollout_path(settings: Settings, app: str) -> Path:
    """The app's staged rollout (written by :mod:`ctloop.flows.prompt_rollout`, read by `ctloop serve`)."""
    return settings.home / "state" / f"prompt-rollout-{app}.json"


def read_rollout(settings: Settings, app: str) -> dict[str, Any] | None:
    path = rollout_path(settings, app)
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except ValueError as e:
        raise RegistryError(f"{path}: not a rollout state ({e})") from e
    return data


def write_rollout(settings: Settings, app: str, state: dict[str, Any]) -> None:
    path = rollout_path(settings, app)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2))
    tmp.replace(path)


def candidate_weight(settings: Settings, app: str) -> tuple[str | None, float]:
    """The candidate version and the share of ticket keys it answers now (0 when no rollout is running)."""
    state = read_rollout(settings, app)
    if not state or state.get("status") != "running":
        return None, 0.0
    return str(state["version"]), float(state["weight"])
