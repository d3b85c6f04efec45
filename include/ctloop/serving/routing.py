"""How a request finds its route, and the per-route outcome windows the canary guard judges
(:mod:`ctloop.decisions.canary`). The routes in force are the routes file (:mod:`ctloop.data.routes`).

The canary split is sticky: a key's bucket is a hash, so a key stays on its route while the fraction is
unchanged, and raising the fraction only moves keys onto the canary.
"""

from __future__ import annotations

import hashlib
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from ctloop.data.predictions import CANARY_ROUTE, CHAMPION_ROUTE, SHADOW_ROUTE
from ctloop.data.routes import ALIASES

__all__ = ["CANARY_ROUTE", "CHAMPION_ROUTE", "SHADOW_ROUTE", "RouteStats", "bucket", "on_canary", "routes_openapi"]


def routes_openapi() -> dict[str, Any]:
    """The request body of ``PUT /routes`` for the OpenAPI schema (what :meth:`Routes.changed` accepts)."""
    alias = {"type": "string", "enum": list(ALIASES)}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": {
        "type": "object", "additionalProperties": False,
        "properties": {"canary_fraction": {"type": "number", "minimum": 0, "maximum": 1},
                       "canary_alias": alias, "shadow": {"type": "boolean"}, "shadow_alias": alias}}}}}}


def bucket(key: str) -> float:
    """A key's place in [0, 1): stable across processes and restarts (unlike ``hash``)."""
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big") / 2**64


def on_canary(key: str, fraction: float) -> bool:
    return fraction > 0 and bucket(key) < fraction


@dataclass
class RouteStats:
    """The last ``window`` outcomes of one route: (failed, latency in ms)."""

    window: int
    outcomes: deque[tuple[bool, float]] = field(default_factory=deque)

    def add(self, failed: bool, latency_ms: float) -> None:
        self.outcomes.append((failed, latency_ms))
        while len(self.outcomes) > self.window:
            self.outcomes.popleft()

    def summary(self) -> dict[str, float | int | None]:
        n = len(self.outcomes)
        if not n:
            return {"requests": 0, "error_rate": None, "p99_ms": None}
        latencies = sorted(lat for _, lat in self.outcomes)
        return {"requests": n, "error_rate": sum(f for f, _ in self.outcomes) / n,
                "p99_ms": latencies[min(n - 1, int(0.99 * n))]}
