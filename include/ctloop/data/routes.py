"""The serving routes file: which share of request keys the canary alias gets and whether the shadow
scores, in the model's state folder (``CTLOOP_HOME/models/<model>/serving/routes.json``; the home for a
single ``CTLOOP_PARAMS`` file). ``ctloop serve`` reads it on every poll; ``ctloop routes``, ``PUT /routes``,
the server's canary guard and the staged rollout (:mod:`ctloop.flows.rollout`) write it. Written
atomically, so every server process reading the same home agrees; the defaults come from the model
spec's ``serving``.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ctloop.core.errors import shown

if TYPE_CHECKING:
    from ctloop.core.params import ServingSpec

Alias = Literal["challenger", "candidate"]
ALIASES: tuple[str, ...] = ("challenger", "candidate")


@dataclass(frozen=True)
class Routes:
    canary_fraction: float = 0.0
    canary_alias: str = "challenger"
    shadow: bool = False
    shadow_alias: str = "challenger"
    updated_at: str | None = None
    updated_by: str | None = None
    stopped: dict[str, Any] | None = None  # set by the canary guard: when, which version, why

    @classmethod
    def defaults(cls, spec: ServingSpec) -> Routes:
        return cls(spec.canary.fraction, spec.canary.alias, spec.shadow.enabled, spec.shadow.alias)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def changed(self, by: str, **changes: Any) -> Routes:
        """A checked copy with ``changes`` applied (ValueError naming the field otherwise)."""
        unknown = set(changes) - {"canary_fraction", "canary_alias", "shadow", "shadow_alias"}
        if unknown:
            raise ValueError(f"unknown route setting {shown(sorted(unknown)[0])} (known: canary_fraction, "
                             "canary_alias, shadow, shadow_alias)")
        fraction = changes.get("canary_fraction", self.canary_fraction)
        if isinstance(fraction, bool) or not isinstance(fraction, int | float) or not 0 <= fraction <= 1:
            raise ValueError(f"canary_fraction: expected a number in [0, 1], got {shown(fraction)}")
        for name in ("canary_alias", "shadow_alias"):
            if changes.get(name, getattr(self, name)) not in ALIASES:
                raise ValueError(f"{name}: expected one of {', '.join(ALIASES)}, got {shown(changes[name])}")
        if not isinstance(changes.get("shadow", self.shadow), bool):
            raise ValueError(f"shadow: expected true or false, got {shown(changes['shadow'])}")
        stopped = None if "canary_fraction" in changes or "canary_alias" in changes else self.stopped
        return replace(self, **{**changes, "canary_fraction": float(fraction)}, stopped=stopped,
                       updated_at=datetime.now(UTC).isoformat(timespec="seconds"), updated_by=by)


def routes_path(home: Path) -> Path:
    return home / "serving" / "routes.json"


def read_routes(home: Path, spec: ServingSpec) -> Routes:
    """The routes file, or the params.yaml defaults when there is none (a broken file is a ValueError)."""
    path = routes_path(home)
    if not path.exists():
        return Routes.defaults(spec)
    try:
        raw = json.loads(path.read_text())
        return Routes(**raw)
    except (ValueError, TypeError) as e:
        raise ValueError(f"{path}: not a routes file: {e}") from e


def write_routes(home: Path, routes: Routes) -> Path:
    path = routes_path(home)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(routes.to_dict(), indent=1))
    tmp.replace(path)  # atomic: a reader sees the old file or the new one
    return path
