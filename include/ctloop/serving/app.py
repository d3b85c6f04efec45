"""``ctloop serve``: the FastAPI app that serves ``@champion`` with canary and shadow routes.

One :class:`ServingState` per process holds an immutable :class:`ModelSet` snapshot. A request reads the
snapshot once, so a swap (one assignment, done after the new model answered its warm-up call) never
touches a request in flight: it finishes on the model it started with. The registry watcher polls the
aliases and the routes file every ``serving.poll_seconds``; ``PUT /routes`` applies at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

# at module level: FastAPI reads the handlers' annotations (``request: Request``) from this module
from fastapi import FastAPI, Request, Response

from ctloop.serving.batcher import LoadedModel, MicroBatcher
from ctloop.serving.routing import (
    CANARY_ROUTE,
    CHAMPION_ROUTE,
    SHADOW_ROUTE,
    Routes,
    RouteStats,
    judge_canary,
    on_canary,
    read_routes,
    write_routes,
)
from ctloop.serving.schema import RequestInvalid, RequestSchema
from ctloop.serving.scoring import ScoringError

if TYPE_CHECKING:
    from ctloop.params import Params
    from ctloop.serving.logwriter import LogWriter
    from ctloop.settings import Settings

log = logging.getLogger("ctloop.serving")


@dataclass(frozen=True)
class ModelSet:
    champion: LoadedModel | None = None
    canary: LoadedModel | None = None  # None when the canary is off or its alias serves the champion
    shadow: LoadedModel | None = None
    routes: Routes = field(default_factory=Routes)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class ServingState:
    def __init__(self, settings: Settings, params: Params) -> None:
        from ctloop.serving.metrics import ServingMetrics

        self.settings = settings
        self.params = params
        self.spec = params.serving
        self.contract = params.dataset
        self.name = params.training.registered_model
        self.threshold = params.evaluation.threshold
        self.schema = RequestSchema(self.contract, self.spec.max_records)
        self.metrics = ServingMetrics()
        self.models = ModelSet(routes=Routes.defaults(self.spec))
        self.token = settings.serving_token.get_secret_value() if settings.serving_token else None
        self.batcher: MicroBatcher | None = None
        self.writer: LogWriter | None = None
        self.stats = {CHAMPION_ROUTE: RouteStats(self.spec.guard.window), CANARY_ROUTE: RouteStats(self.spec.guard.window)}
        self._cache: dict[str, LoadedModel] = {}
        self._refresh_lock = asyncio.Lock()
        self._shadow_tasks: set[asyncio.Task[None]] = set()
        self._canary_outcomes = 0
        self.last_refresh_error: str | None = None

    # ---- lifecycle -------------------------------------------------------------------------------------
    async def start(self) -> None:
        from ctloop.data.store import Lake
        from ctloop.monitoring.prediction_log import expected_log_columns, write_predictions
        from ctloop.registry.mlflow_registry import configure_mlflow
        from ctloop.serving.logwriter import LogWriter

        self.client = configure_mlflow(self.settings)
        lake = Lake(self.settings.lake_root)
        self.writer = LogWriter(lambda frame, stem: write_predictions(lake, frame, stem),
                                expected_log_columns(self.contract), self.spec.log.flush_seconds,
                                self.spec.log.flush_rows, self.spec.log.max_queue_rows)
        self.batcher = MicroBatcher(self.contract, self.spec.batching.max_batch, self.spec.batching.max_wait_ms,
                                    self.metrics)
        self.batcher.start()
        await self.refresh()
        self._watcher = asyncio.get_running_loop().create_task(self._watch(), name="ctloop-registry-watcher")

    async def stop(self) -> None:
        """After uvicorn drained the requests: finish shadow scoring, score what is queued, flush the log."""
        self._watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._watcher
        if self._shadow_tasks:
            await asyncio.gather(*self._shadow_tasks, return_exceptions=True)
        if self.batcher is not None:
            await self.batcher.close()
        if self.writer is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.writer.close)
            log.info("prediction log flushed: %d rows written, %d dropped", self.writer.written, self.writer.dropped)

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.spec.poll_seconds)
            try:
                await self.refresh()
            except Exception as e:  # a registry hiccup must not stop serving the model in hand
                self.last_refresh_error = f"{type(e).__name__}: {e}"
                log.exception("registry refresh failed; serving the models in hand")

    # ---- models ----------------------------------------------------------------------------------------
    async def refresh(self) -> ModelSet:
        """Read the routes file and the aliases; load, warm up and swap in whatever changed."""
        from ctloop.registry.mlflow_registry import CHAMPION, alias_version

        async with self._refresh_lock:
            loop = asyncio.get_running_loop()
            current = self.models
            try:
                routes = await loop.run_in_executor(None, read_routes, self.settings.home, self.spec)
            except ValueError as e:
                log.error("%s; keeping the routes in force", e)
                routes = current.routes
            wanted = {CHAMPION: "champion"}
            if routes.canary_fraction > 0:
                wanted[routes.canary_alias] = "canary"
            if routes.shadow:
                wanted[routes.shadow_alias] = "shadow"
            versions = {alias: await loop.run_in_executor(None, alias_version, self.client, self.name, alias)
                        for alias in wanted}
            loaded: dict[str, LoadedModel | None] = {}
            for alias, version in versions.items():
                loaded[alias] = None if version is None else await self._load(alias, version)
            champion = loaded[CHAMPION] or current.champion
            canary = loaded.get(routes.canary_alias) if routes.canary_fraction > 0 else None
            shadow = loaded.get(routes.shadow_alias) if routes.shadow else None
            if champion is not None:
                canary = None if canary is not None and canary.version == champion.version else canary
                shadow = None if shadow is not None and shadow.version == champion.version else shadow
            new = ModelSet(champion, canary, shadow, routes)
            if (new.canary and new.canary.version) != (current.canary and current.canary.version):
                self.stats[CANARY_ROUTE] = RouteStats(self.spec.guard.window)  # a new canary is judged afresh
            self.models = new  # the swap: one reference assignment
            self._cache = {m.version: m for m in (new.champion, new.canary, new.shadow) if m is not None}
            self._export(new)
            return new

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
        return LoadedModel(alias, version, model, _now(), compiled, path)

    def _load_and_warm(self, version: str) -> tuple[Any, Any, str]:
        """Load, compile when the pipeline allows it (verified against scikit-learn), and answer a warm-up
        call through the path that will serve."""
        import mlflow
        from mlflow.models import Model

        from ctloop.serving.compiled import verified

        local = mlflow.artifacts.download_artifacts(f"models:/{self.name}/{version}")
        model = mlflow.sklearn.load_model(local)
        warmup = self.warmup_records(Model.load(local).load_input_example(local))
        compiled, path = None, "scikit-learn path (serving.compiled is off)"
        if self.spec.compiled:
            try:
                compiled, path = verified(model, self.contract)
            except ScoringError as e:
                path = f"scikit-learn path (probe failed: {e})"
        assert self.batcher is not None
        warm = LoadedModel("warm-up", version, model, _now(), compiled, path)
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

    def _export(self, models: ModelSet) -> None:
        m = self.metrics
        m.ready.set(1 if models.champion is not None else 0)
        m.canary_fraction.set(models.routes.canary_fraction if models.canary else 0)
        m.model_info.clear()
        for role, lm in (("champion", models.champion), ("canary", models.canary), ("shadow", models.shadow)):
            if lm is not None:
                m.model_info.labels(role, lm.version).set(1)

    def describe(self) -> dict[str, Any]:
        models = self.models

        def one(lm: LoadedModel | None) -> dict[str, Any] | None:
            return None if lm is None else {"version": lm.version, "alias": lm.alias, "loaded_at": lm.loaded_at,
                                            "scoring": lm.path}

        return {"model": self.name, "ready": models.champion is not None,
                "champion": one(models.champion),
                "canary": None if models.canary is None else {**(one(models.canary) or {}),
                                                               "fraction": models.routes.canary_fraction},
                "shadow": one(models.shadow), "routes": models.routes.to_dict(),
                "guard": {r: s.summary() for r, s in self.stats.items()},
                "last_refresh_error": self.last_refresh_error}

    # ---- routes and the canary guard -------------------------------------------------------------------
    async def set_routes(self, changes: dict[str, Any], by: str) -> dict[str, Any]:
        routes = read_routes(self.settings.home, self.spec).changed(by, **changes)
        write_routes(self.settings.home, routes)
        await self.refresh()
        return self.describe()

    def _outcome(self, route: str, failed: bool, latency_ms: float) -> None:
        self.stats[route].add(failed, latency_ms)
        if route == CANARY_ROUTE:
            self._canary_outcomes += 1
            if failed or self._canary_outcomes % 10 == 0:
                self._guard()

    def _guard(self) -> None:
        models = self.models
        if models.canary is None:
            return
        decision = judge_canary(self.stats[CHAMPION_ROUTE].summary(), self.stats[CANARY_ROUTE].summary(),
                                self.spec.guard)
        if not decision.stop:
            return
        stopped = {"at": _now(), "version": models.canary.version, "alias": models.canary.alias,
                   "reasons": list(decision.reasons)}
        routes = replace(models.routes, canary_fraction=0.0, stopped=stopped, updated_at=_now(),
                         updated_by="canary guard")
        self.models = replace(models, canary=None, routes=routes)  # effective for the next request
        self.metrics.canary_stops.inc()
        self.metrics.canary_fraction.set(0)
        log.warning("canary v%s stopped: %s", models.canary.version, "; ".join(decision.reasons))
        asyncio.get_running_loop().run_in_executor(None, self._record_stop, routes, decision.to_dict())

    def _record_stop(self, routes: Routes, decision: dict[str, Any]) -> None:
        from ctloop.audit import record

        write_routes(self.settings.home, routes)
        assert routes.stopped is not None
        record("canary_stop", f"{self.name} v{routes.stopped['version']}", "stopped", routes.stopped["reasons"],
               details=decision, actor="ctloop serve", settings=self.settings)

    # ---- requests --------------------------------------------------------------------------------------
    def authorized(self, request: Request) -> bool:
        if self.token is None:
            return True
        given = request.headers.get("authorization", "")
        return given.startswith("Bearer ") and secrets.compare_digest(given[7:].encode(), self.token.encode())

    async def predict(self, body: bytes, started: float) -> tuple[int, dict[str, Any]]:
        """(HTTP status, response body) for one ``/predict`` call."""
        try:
            records, is_batch = self.schema.parse(body)
        except RequestInvalid as e:
            self.metrics.rejected.labels("422").inc()
            return 422, {"detail": e.errors}
        models = self.models  # the snapshot this request lives on
        if models.champion is None:
            self.metrics.rejected.labels("503").inc()
            return 503, {"detail": "no champion loaded yet (see GET /ready)"}
        received = datetime.now(UTC)
        for r in records:
            if r["request_id"] is None:
                r["request_id"] = uuid.uuid4().hex
        route_of = [self._route(r, models) for r in records]
        groups: dict[str, list[int]] = {}
        for i, route in enumerate(route_of):
            groups.setdefault(route, []).append(i)
        served: dict[int, tuple[LoadedModel, str, float]] = {}
        try:
            for route, members in groups.items():
                for i, lm, rt, score in await self._score_route(route, [records[i] for i in members], members,
                                                                models, started):
                    served[i] = (lm, rt, score)
        except ScoringError as e:
            self.metrics.requests.labels(models.champion.version, CHAMPION_ROUTE, "error").inc()
            self._outcome(CHAMPION_ROUTE, True, (time.perf_counter() - started) * 1000)
            return 500, {"detail": f"model v{models.champion.version} failed: {e}"}
        latency = time.perf_counter() - started
        out, rows = [], []
        for i, r in enumerate(records):
            lm, route, score = served[i]
            prediction = int(score >= self.threshold)
            out.append({"request_id": r["request_id"], "prediction": prediction, "score": score,
                        "model_version": lm.version, "route": route})
            rows.append(self._log_row(r, received, lm.version, route, prediction, score, latency))
        self.metrics.requests.labels(out[0]["model_version"], out[0]["route"], "ok").inc()  # a batch: its first
        for (version, route), n in Counter((o["model_version"], o["route"]) for o in out).items():
            self.metrics.records.labels(version, route).inc(n)
            self.metrics.latency.labels(version, route).observe(latency)
        for o in out:
            self.metrics.scores.labels(o["model_version"], o["route"]).observe(o["score"])
            self.metrics.predictions.labels(o["model_version"], o["route"], str(o["prediction"])).inc()
        assert self.writer is not None
        self.writer.offer(rows)
        if models.shadow is not None:
            task = asyncio.get_running_loop().create_task(self._shadow(models.shadow, records, received))
            self._shadow_tasks.add(task)
            task.add_done_callback(self._shadow_tasks.discard)
        return 200, ({"predictions": out} if is_batch else out[0])

    def _route(self, record: dict[str, Any], models: ModelSet) -> str:
        if models.canary is None:
            return CHAMPION_ROUTE
        key = record["key"] or record.get(self.contract.id) or record["request_id"]
        return CANARY_ROUTE if on_canary(str(key), models.routes.canary_fraction) else CHAMPION_ROUTE

    async def _score_route(self, route: str, records: list[dict[str, Any]], members: list[int], models: ModelSet,
                           started: float) -> list[tuple[int, LoadedModel, str, float]]:
        """Scores of one route's records; a failing canary answers from the champion (and counts against
        the canary), a failing champion raises."""
        assert self.batcher is not None and models.champion is not None
        if route == CANARY_ROUTE and models.canary is not None:
            try:
                scores = await self.batcher.score(models.canary, records)
                self._outcome(CANARY_ROUTE, False, (time.perf_counter() - started) * 1000)
                return [(i, models.canary, CANARY_ROUTE, float(s)) for i, s in zip(members, scores, strict=True)]
            except ScoringError as e:
                self.metrics.errors.labels(models.canary.version, CANARY_ROUTE).inc()
                self._outcome(CANARY_ROUTE, True, (time.perf_counter() - started) * 1000)
                log.warning("canary v%s failed (%s); answered by the champion", models.canary.version, e)
        try:
            scores = await self.batcher.score(models.champion, records)
        except ScoringError:
            self.metrics.errors.labels(models.champion.version, CHAMPION_ROUTE).inc()
            raise
        self._outcome(CHAMPION_ROUTE, False, (time.perf_counter() - started) * 1000)
        return [(i, models.champion, CHAMPION_ROUTE, float(s)) for i, s in zip(members, scores, strict=True)]

    async def _shadow(self, shadow: LoadedModel, records: list[dict[str, Any]], received: datetime) -> None:
        assert self.batcher is not None and self.writer is not None
        started = time.perf_counter()
        try:
            scores = await self.batcher.score(shadow, records)
        except ScoringError as e:
            self.metrics.errors.labels(shadow.version, SHADOW_ROUTE).inc()
            log.warning("shadow v%s failed: %s", shadow.version, e)
            return
        latency = time.perf_counter() - started
        rows = []
        for r, s in zip(records, scores, strict=True):
            score = float(s)
            rows.append(self._log_row(r, received, shadow.version, SHADOW_ROUTE, int(score >= self.threshold),
                                      score, latency))
            self.metrics.scores.labels(shadow.version, SHADOW_ROUTE).observe(score)
        self.metrics.records.labels(shadow.version, SHADOW_ROUTE).inc(len(records))
        self.writer.offer(rows)

    def _log_row(self, record: dict[str, Any], received: datetime, version: str, route: str, prediction: int,
                 score: float, latency: float) -> dict[str, Any]:
        ts = record.get(self.contract.timestamp) or received
        ts = ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)
        row = {"request_id": record["request_id"], "ts": ts, "model_name": self.name, "model_version": version,
               "route": route}
        for name in self.contract.features:
            row[name] = record[name]
        row |= {"prediction": prediction, "score": score, "latency_ms": round(latency * 1000, 3)}
        return row


def create_app(settings: Settings, params: Params) -> FastAPI:
    import orjson

    state = ServingState(settings, params)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await state.start()
        yield
        await state.stop()

    # with a token, the OpenAPI schema and docs are not served either: every route but /health is guarded
    open_docs = state.token is None
    app = FastAPI(title="ctloop serve", version="1", lifespan=lifespan,
                  description=f"Serves `{state.name}@champion` with canary and shadow routes.",
                  openapi_url="/openapi.json" if open_docs else None, docs_url="/docs" if open_docs else None,
                  redoc_url=None)
    app.state.ctloop = state

    def respond(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
        return Response(orjson.dumps(body), status, headers, media_type="application/json")

    def unauthorized() -> Response:
        state.metrics.rejected.labels("401").inc()
        return respond(401, {"detail": "missing or wrong bearer token"}, {"WWW-Authenticate": "Bearer"})

    @app.post("/predict", openapi_extra=state.schema.openapi())
    async def predict(request: Request) -> Response:
        """Score one record or a batch (`{"records": [...]}`)."""
        started = time.perf_counter()
        if not state.authorized(request):
            return unauthorized()
        status, body = await state.predict(await request.body(), started)
        return respond(status, body)

    @app.get("/health")
    async def health() -> Response:
        """Liveness: the process answers."""
        return respond(200, {"status": "ok"})

    @app.get("/ready")
    async def ready(request: Request) -> Response:
        """Readiness: a champion is loaded and answered its warm-up call."""
        if not state.authorized(request):
            return unauthorized()
        champion = state.models.champion
        if champion is None:
            return respond(503, {"ready": False, "detail": state.last_refresh_error or "no champion loaded yet"})
        return respond(200, {"ready": True, "champion": champion.version})

    @app.get("/model")
    async def model(request: Request) -> Response:
        """Versions and routes in force, and the canary guard's view."""
        if not state.authorized(request):
            return unauthorized()
        return respond(200, state.describe())

    @app.put("/routes")
    async def routes(request: Request) -> Response:
        """Change canary and shadow at run time: `{"canary_fraction": 0.1, "shadow": true}`."""
        if not state.authorized(request):
            return unauthorized()
        try:
            changes = orjson.loads(await request.body())
            if not isinstance(changes, dict):
                raise ValueError("expected a JSON object")
            return respond(200, await state.set_routes(changes, by="PUT /routes"))
        except ValueError as e:  # orjson.JSONDecodeError is a ValueError
            return respond(422, {"detail": [{"loc": ["body"], "msg": str(e), "type": "value_error"}]})

    @app.get("/metrics")
    async def metrics(request: Request) -> Response:
        """Prometheus text format."""
        if not state.authorized(request):
            return unauthorized()
        from prometheus_client import CONTENT_TYPE_LATEST

        return Response(state.metrics.render(state.writer), 200, media_type=CONTENT_TYPE_LATEST)

    return app


def serve(settings: Settings, params: Params, host: str, port: int) -> None:
    """Run the app under uvicorn (uvloop, httptools). SIGTERM: stop accepting, finish the requests in
    flight, score what is queued, flush the prediction log, exit."""
    import uvicorn

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    uvicorn.run(create_app(settings, params), host=host, port=port, loop="uvloop", http="httptools",
                access_log=False, timeout_graceful_shutdown=30, log_level="info")
