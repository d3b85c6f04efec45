"""The models a server holds: load each alias's version from the registry, make it answer a warm-up call
through the path that will serve it, and swap the set in with one reference assignment. A request reads
the :class:`ModelSet` once, so a swap never touches a request in flight.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ctloop.data.routes import Routes, read_routes
from ctloop.estimators.scoring import ScoringError
from ctloop.serving.batcher import LoadedModel

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from ctloop.core.params import Params
    from ctloop.core.settings import Settings
    from ctloop.serving.batcher import MicroBatcher
    from ctloop.serving.metrics import ServingMetrics

log = logging.getLogger("ctloop.serving")


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class ModelSet:
    champion: LoadedModel | None = None
    canary: LoadedModel | None = None  # None when the canary is off or its alias serves the champion
    shadow: LoadedModel | None = None
    routes: Routes = field(default_factory=Routes)
    previous: LoadedModel | None = None  # kept warm, never routed: a rollback swaps it in without a load


class ModelStore:
    """Holds the :class:`ModelSet` in force and refreshes it from the routes file and the registry."""

    def __init__(self, settings: Settings, params: Params, metrics: ServingMetrics) -> None:
        self.settings = settings
        self.spec = params.serving
        self.contract = params.dataset
        self.name = params.training.registered_model
        self.metrics = metrics
        self.models = ModelSet(routes=Routes.defaults(self.spec))
        self.last_refresh_error: str | None = None
        self.batcher: MicroBatcher | None = None
        self.client: MlflowClient | None = None
        self._cache: dict[str, LoadedModel] = {}
        self._lock = asyncio.Lock()
        self._previous_seen: dict[str, float] = {}  # version -> when this server first saw it as @previous
        # bumped by every change made outside refresh() (the guard stopping a canary): a refresh that
        # read the routes before such a change must not swap its older view back in
        self.generation = 0

    def attach(self, client: MlflowClient, batcher: MicroBatcher) -> None:
        self.client, self.batcher = client, batcher

    async def refresh(self) -> ModelSet:
        """Read the routes file and the aliases; load, warm up and swap in whatever changed."""
        from ctloop.registry.mlflow_registry import CHAMPION, PREVIOUS, alias_version

        assert self.client is not None, "attach() the registry client first"
        client = self.client
        async with self._lock:
            loop = asyncio.get_running_loop()
            while True:
                generation, current = self.generation, self.models
                try:
                    routes = await loop.run_in_executor(None, read_routes, self.settings.state_dir, self.spec)
                except ValueError as e:
                    log.error("%s; keeping the routes in force", e)
                    routes = current.routes
                wanted = [CHAMPION]
                if routes.canary_fraction > 0:
                    wanted.append(routes.canary_alias)
                if routes.shadow:
                    wanted.append(routes.shadow_alias)
                if self.spec.blue_green.keep_warm_seconds > 0:
                    wanted.append(PREVIOUS)
                versions = {alias: await loop.run_in_executor(None, alias_version, client, self.name, alias)
                            for alias in wanted}
                warm = versions.get(PREVIOUS)
                if warm is not None and not self._keep_warm(warm):
                    versions[PREVIOUS] = None
                loaded = {alias: None if version is None else await self._load(alias, version)
                          for alias, version in versions.items()}
                if generation == self.generation:
                    break  # nothing changed the set meanwhile: this view is current
            champion = loaded[CHAMPION] or current.champion
            canary = loaded.get(routes.canary_alias) if routes.canary_fraction > 0 else None
            shadow = loaded.get(routes.shadow_alias) if routes.shadow else None
            if champion is not None:
                canary = None if canary is not None and canary.version == champion.version else canary
                shadow = None if shadow is not None and shadow.version == champion.version else shadow
            previous = loaded.get(PREVIOUS)
            previous = None if previous is not None and champion is not None and previous.version == champion.version \
                else previous
            new = ModelSet(champion, canary, shadow, routes, previous)
            self.swap(new)
            self._cache = {m.version: m for m in (new.champion, new.canary, new.shadow, new.previous) if m is not None}
            return new

    def _keep_warm(self, version: str) -> bool:
        """Whether ``@previous`` (``version``) is still within ``serving.blue_green.keep_warm_seconds``."""
        import time

        first = self._previous_seen.setdefault(version, time.monotonic())
        self._previous_seen = {version: first}  # only the current @previous is remembered
        return time.monotonic() - first <= self.spec.blue_green.keep_warm_seconds

    def swap(self, new: ModelSet, by_refresh: bool = True) -> None:
        """The swap: one reference assignment (and the gauges that describe it)."""
        self.models = new
        if not by_refresh:
            self.generation += 1
        m = self.metrics
        m.ready.set(1 if new.champion is not None else 0)
        m.canary_fraction.set(new.routes.canary_fraction if new.canary else 0)
        m.model_info.clear()
        for role, lm in (("champion", new.champion), ("canary", new.canary), ("shadow", new.shadow),
                         ("previous", new.previous)):
            if lm is not None:
                m.model_info.labels(role, lm.version).set(1)

    async def _load(self, alias: str, version: str) -> LoadedModel | None:
        cached = self._cache.get(version)
        if cached is not None:
            return cached if cached.alias == alias else replace(cached, alias=alias)
        loop = asyncio.get_running_loop()
        try:
            model, compiled, path = await loop.run_in_executor(None, self._load_and_warm, version)
        except Exception as e:
            self.metrics.load_errors.labels(alias).inc()
            log.exception("model %s v%s (@%s) failed to load or warm up; not swapped in", self.name, version, alias)
            self.last_refresh_error = f"v{version} (@{alias}): {type(e).__name__}: {e}"
            return None
        self.metrics.swaps.labels(alias).inc()
        log.info("model %s v%s (@%s) loaded and warmed up; %s", self.name, version, alias, path)
        return LoadedModel(alias, version, model, now(), compiled, path)

    def _load_and_warm(self, version: str) -> tuple[Any, Any, str]:
        """Load, compile when the pipeline allows it (verified against scikit-learn), and answer a warm-up
        call through the path that will serve."""
        import mlflow
        from mlflow.models import Model

        from ctloop.estimators.compiled import verified, verified_features
        from ctloop.estimators.onnx import verified_onnx

        local = mlflow.artifacts.download_artifacts(f"models:/{self.name}/{version}")
        model = mlflow.sklearn.load_model(local)
        warmup = self.warmup_records(Model.load(local).load_input_example(local))
        compiled, path = None, "scikit-learn path (serving.compiled and serving.onnx are off)"
        if self.spec.compiled:
            try:
                compiled, path = verified(model, self.contract)
            except ScoringError as e:
                path = f"scikit-learn path (probe failed: {e})"
        if compiled is None and self.spec.onnx:  # every other pipeline: ONNX Runtime when it reproduces it
            try:
                compiled, onnx_path = verified_onnx(model, self.contract)
            except ScoringError as e:
                onnx_path = f"scikit-learn path (ONNX probe failed: {e})"
            path = onnx_path if compiled is not None or not self.spec.compiled else f"{path}; {onnx_path}"
        if compiled is None and self.spec.compiled:  # e.g. gradient boosting: NumPy features, its own trees
            try:
                compiled, features_path = verified_features(model, self.contract)
            except ScoringError as e:
                features_path = f"scikit-learn path (features probe failed: {e})"
            path = features_path if compiled is not None else f"{path}; {features_path}"
        assert self.batcher is not None
        warm = LoadedModel("warm-up", version, model, now(), compiled, path)
        scores = self.batcher.scores_now(warm, warmup)
        if len(scores) != len(warmup):
            raise ScoringError(f"warm-up returned {len(scores)} scores for {len(warmup)} records")
        return model, compiled, path

    def warmup_records(self, example: Any) -> list[dict[str, Any]]:
        """The model's logged input example (real rows, as the request schema would pass them), or one
        record of mid-range numbers and missing categories when it has none."""
        import pandas as pd

        if isinstance(example, pd.DataFrame) and set(self.contract.features) <= set(example.columns):
            return [{c: (None if pd.isna(v) else (float(v) if c in self.contract.numeric_features else str(v)))
                     for c, v in row.items() if c in self.contract.features}
                    for row in example.to_dict("records")]
        record: dict[str, Any] = {}
        for name in self.contract.numeric_features:
            spec = self.contract.columns[name]
            record[name] = min(max(0.0, spec.min if spec.min is not None else 0.0),
                               spec.max if spec.max is not None else 0.0)
        for name in self.contract.categorical_features:
            record[name] = None
        return [record]

    def describe(self) -> dict[str, Any]:
        models = self.models

        def one(lm: LoadedModel | None) -> dict[str, Any] | None:
            return None if lm is None else {"version": lm.version, "alias": lm.alias, "loaded_at": lm.loaded_at,
                                            "scoring": lm.path}

        return {"model": self.name, "ready": models.champion is not None,
                "champion": one(models.champion),
                "canary": None if models.canary is None else {**(one(models.canary) or {}),
                                                               "fraction": models.routes.canary_fraction},
                "shadow": one(models.shadow), "previous_warm": one(models.previous),
                "routes": models.routes.to_dict(),
                "last_refresh_error": self.last_refresh_error}
