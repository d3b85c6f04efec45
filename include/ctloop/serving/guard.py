"""The canary guard inside the server: the last outcomes of each route, judged (every tenth canary
outcome and on every canary failure) by :func:`ctloop.decisions.canary.judge_canary`. A stop takes
effect for the next request, is written to the routes file at once (so every replica and the next
registry refresh see it), and is audited off the event loop.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ctloop.data.routes import Routes, write_routes
from ctloop.decisions.canary import judge_canary
from ctloop.serving.models import now
from ctloop.serving.routing import CANARY_ROUTE, CHAMPION_ROUTE, RouteStats

if TYPE_CHECKING:
    from ctloop.core.params import CanaryGuardSpec
    from ctloop.core.settings import Settings
    from ctloop.serving.metrics import ServingMetrics
    from ctloop.serving.models import ModelStore

log = logging.getLogger("ctloop.serving")


class CanaryGuard:
    def __init__(self, settings: Settings, spec: CanaryGuardSpec, store: ModelStore, metrics: ServingMetrics) -> None:
        self.settings = settings
        self.spec = spec
        self.store = store
        self.metrics = metrics
        self.stats = {CHAMPION_ROUTE: RouteStats(spec.window), CANARY_ROUTE: RouteStats(spec.window)}
        self._judged_version: str | None = None
        self._canary_outcomes = 0

    def outcome(self, route: str, failed: bool, latency_ms: float, version: str) -> None:
        """Count one request's outcome on ``route`` (served by ``version``); canary outcomes are judged as
        they come."""
        current = self.store.models.canary
        current_version = current.version if current else None
        if current_version != self._judged_version:  # a new canary is judged afresh
            self.stats[CANARY_ROUTE] = RouteStats(self.spec.window)
            self._judged_version, self._canary_outcomes = current_version, 0
        if route == CANARY_ROUTE and version != current_version:
            return  # answered by a canary that was stopped or replaced since: not this canary's record
        self.stats[route].add(failed, latency_ms)
        if route == CANARY_ROUTE:
            self._canary_outcomes += 1
            if failed or self._canary_outcomes % 10 == 0:
                self.judge()

    def judge(self) -> None:
        models = self.store.models
        if models.canary is None:
            return
        # at 100% of keys (a staged rollout's last step) the champion serves nothing: its window is stale
        decision = judge_canary(self.stats[CHAMPION_ROUTE].summary(), self.stats[CANARY_ROUTE].summary(), self.spec,
                                concurrent=models.routes.canary_fraction < 1.0)
        if not decision.stop:
            return
        stopped = {"at": now(), "version": models.canary.version, "alias": models.canary.alias,
                   "reasons": list(decision.reasons)}
        routes = replace(models.routes, canary_fraction=0.0, stopped=stopped, updated_at=now(),
                         updated_by="canary guard")
        # synchronous on purpose (one small file): a registry refresh in flight re-reads the routes after
        # this, so it cannot swap the stopped canary back in
        write_routes(self.settings.state_dir, routes)
        self.store.swap(replace(models, canary=None, routes=routes), by_refresh=False)
        self.metrics.canary_stops.inc()
        log.warning("canary v%s stopped: %s", models.canary.version, "; ".join(decision.reasons))
        asyncio.get_running_loop().run_in_executor(None, self._audit_stop, routes, decision.to_dict())

    def _audit_stop(self, routes: Routes, decision: dict[str, Any]) -> None:
        from ctloop.core.audit import record

        assert routes.stopped is not None
        record("canary_stop", f"{self.store.name} v{routes.stopped['version']}", "stopped", routes.stopped["reasons"],
               details=decision, actor="ctloop serve", settings=self.settings)

    def describe(self) -> dict[str, Any]:
        return {r: s.summary() for r, s in self.stats.items()}
