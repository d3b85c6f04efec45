"""``ctloop serve``: the FastAPI app that serves each model's ``@champion`` with canary and shadow routes
(one app per model, mounted under ``/models/<name>/`` by :func:`create_deployment_app`).

The app only wires HTTP to the parts: :class:`~ctloop.serving.models.ModelStore` (load, warm up, swap),
:class:`~ctloop.serving.guard.CanaryGuard` (judge and stop the canary),
:class:`~ctloop.serving.handler.PredictionHandler` (one ``/predict`` call) and the prediction-log writer.
The registry watcher polls the aliases and the routes file every ``serving.poll_seconds``; ``PUT /routes``
applies at once.

What any request gets, whatever it carries: a body above ``serving.max_body_bytes`` is a 413 (read no
further); a body that is not declared JSON (``Content-Type: application/json`` or ``…+json``) a 415; the
bearer scheme is matched case-insensitively (RFC 7235); anything that escapes a handler is a 500 that is
counted in ``/metrics`` and keeps the connection open.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

# at module level: FastAPI reads the handlers' annotations (``request: Request``) from this module
from fastapi import FastAPI, Request, Response

from ctloop.core.errors import ConfigError, DependencyUnavailable
from ctloop.data.routes import read_routes, write_routes
from ctloop.serving.batcher import MicroBatcher
from ctloop.serving.feedback import FeedbackHandler, RecentRequests
from ctloop.serving.guard import CanaryGuard
from ctloop.serving.handler import PredictionHandler
from ctloop.serving.models import ModelStore
from ctloop.serving.routing import routes_openapi

if TYPE_CHECKING:
    from ctloop.core.apps import LlmAppSpec
    from ctloop.core.params import Params
    from ctloop.core.settings import Settings
    from ctloop.serving.logwriter import LogWriter

log = logging.getLogger("ctloop.serving")


class BodyTooLarge(Exception):
    pass


def serving_token(settings: Settings) -> str | None:
    """The bearer token, or None for no auth. Set but empty is refused: it would silently turn auth off."""
    if settings.serving_token is None:
        return None
    token = settings.serving_token.get_secret_value()
    if not token.strip():
        raise ConfigError("CTLOOP_SERVING_TOKEN is set but empty: set a token, or unset it to serve without auth")
    return token


class ServingState:
    """What one server process holds: the parts, wired together, with their lifecycle."""

    def __init__(self, settings: Settings, params: Params) -> None:
        from ctloop.serving.metrics import ServingMetrics

        self.settings = settings
        self.spec = params.serving
        self.name = params.training.registered_model
        self.token = serving_token(settings)
        self.metrics = ServingMetrics()
        self.store = ModelStore(settings, params, self.metrics)
        self.guard = CanaryGuard(settings, self.spec.guard, self.store, self.metrics)
        self.recent = RecentRequests(self.spec.feedback_memory)
        self.handler = PredictionHandler(params, self.store, self.guard, self.metrics, self.recent)
        self.feedback = FeedbackHandler(params.dataset, self.spec.max_records, self.recent, self.metrics)
        self.contract = params.dataset
        self.writer: LogWriter | None = None
        self.labels_writer: LogWriter | None = None
        self._watcher: asyncio.Task[None] | None = None

    async def start(self) -> None:
        from ctloop.data.predictions import (
            LABEL_COLUMNS,
            expected_log_columns,
            write_dead_letters,
            write_labels,
            write_predictions,
        )
        from ctloop.data.store import Lake
        from ctloop.registry.mlflow_registry import configure_mlflow
        from ctloop.serving.logwriter import LogWriter

        lake = Lake(self.settings.lake_root)
        self.writer = LogWriter(lambda frame, stem: write_predictions(lake, frame, stem),
                                expected_log_columns(self.contract), self.spec.log.flush_seconds,
                                self.spec.log.flush_rows, self.spec.log.max_queue_rows,
                                dead_letter=lambda rows, reason, stem: write_dead_letters(lake, rows, reason, stem))
        self.labels_writer = LogWriter(lambda frame, stem: write_labels(lake, frame, f"feedback-{stem}"),
                                       list(LABEL_COLUMNS), self.spec.log.flush_seconds, self.spec.log.flush_rows,
                                       self.spec.log.max_queue_rows,
                                       dead_letter=lambda rows, reason, stem: write_dead_letters(
                                           lake, rows, reason, f"feedback-{stem}"))
        self.feedback.writer = self.labels_writer
        batcher = MicroBatcher(self.contract, self.spec.batching.max_batch, self.spec.batching.max_wait_ms,
                               self.metrics, self.spec.threads)
        batcher.start()
        self.store.attach(configure_mlflow(self.settings), batcher)
        self.handler.attach(batcher, self.writer)
        try:
            await self.store.refresh()
        except DependencyUnavailable as e:  # not ready (503 on /ready, saying why) until the registry answers
            self.store.last_refresh_error = str(e)
            log.error("%s; not ready, retrying every %ss", e, self.spec.poll_seconds)
        self._watcher = asyncio.get_running_loop().create_task(self._watch(), name="ctloop-registry-watcher")

    async def stop(self) -> None:
        """After uvicorn drained the requests: finish shadow scoring, score what is queued, flush the log."""
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        if self.handler.shadow_tasks:
            await asyncio.gather(*self.handler.shadow_tasks, return_exceptions=True)
        if self.store.batcher is not None:
            await self.store.batcher.close()
        if self.writer is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.writer.close)
            log.info("prediction log flushed: %d rows written, %d dropped, %d dead-lettered", self.writer.written,
                     self.writer.dropped, self.writer.dead_lettered)
        if self.labels_writer is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.labels_writer.close)
            log.info("labels flushed: %d written, %d dropped", self.labels_writer.written, self.labels_writer.dropped)

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.spec.poll_seconds)
            try:
                await self.store.refresh()
            except Exception as e:  # a registry hiccup must not stop serving the model in hand
                self.store.last_refresh_error = f"{type(e).__name__}: {e}"
                log.exception("registry refresh failed; serving the models in hand")

    async def set_routes(self, changes: dict[str, Any], by: str) -> dict[str, Any]:
        routes = read_routes(self.settings.state_dir, self.spec).changed(by, **changes)
        write_routes(self.settings.state_dir, routes)
        await self.store.refresh()
        return self.describe()

    def describe(self) -> dict[str, Any]:
        return self.store.describe() | {"guard": self.guard.describe()}

    def authorized(self, request: Request) -> bool:
        if self.token is None:
            return True
        scheme, _, given = request.headers.get("authorization", "").strip().partition(" ")
        return scheme.lower() == "bearer" and secrets.compare_digest(given.strip().encode(), self.token.encode())


def _is_json(request: Request) -> bool:
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


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
    metrics = state.metrics

    def respond(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
        return Response(orjson.dumps(body), status, headers, media_type="application/json")

    def refused(status: int, detail: Any, headers: dict[str, str] | None = None) -> Response:
        metrics.rejected.labels(str(status)).inc()
        return respond(status, {"detail": detail}, headers)

    def unauthorized() -> Response:
        return refused(401, "missing or wrong bearer token", {"WWW-Authenticate": "Bearer"})

    Handler = Callable[[Request], Awaitable[Response]]

    def guarded(path: str, needs_body: bool = False) -> Callable[[Handler], Handler]:
        """Auth first (but /health), then the body rules, then the handler; whatever escapes is a counted
        500 with a JSON body, and the connection stays open."""
        def wrap(fn: Handler) -> Handler:
            async def inner(request: Request) -> Response:
                try:
                    if path != "/health" and not state.authorized(request):
                        return unauthorized()
                    if needs_body:
                        if not _is_json(request):
                            return refused(415, "the body must be JSON (Content-Type: application/json)")
                        try:
                            request.state.body = await _read_body(request, state.spec.max_body_bytes)
                        except BodyTooLarge:
                            return refused(413, f"body larger than serving.max_body_bytes "
                                                f"({state.spec.max_body_bytes} bytes)", {"Connection": "close"})
                    return await fn(request)
                except Exception as e:
                    metrics.internal_errors.labels(path).inc()
                    log.exception("%s %s failed", request.method, path)
                    return respond(500, {"detail": f"internal error: {type(e).__name__}"})
            inner.__name__, inner.__doc__ = fn.__name__, fn.__doc__
            return inner
        return wrap

    @app.post("/predict", openapi_extra=state.handler.schema.openapi())
    @guarded("/predict", needs_body=True)
    async def predict(request: Request) -> Response:
        """Score one record or a batch (`{"records": [...]}`)."""
        status, body = await state.handler.predict(request.state.body, time.perf_counter())
        return respond(status, body)

    @app.post("/feedback", openapi_extra=state.feedback.openapi())
    @guarded("/feedback", needs_body=True)
    async def feedback(request: Request) -> Response:
        """Delayed labels: `{"request_id": "...", "label": 1}` or `{"labels": [...]}`."""
        status, body = state.feedback.accept(request.state.body)
        return respond(status, body)

    @app.get("/health")
    @guarded("/health")
    async def health(request: Request) -> Response:
        """Liveness: the process answers."""
        return respond(200, {"status": "ok"})

    @app.get("/ready")
    @guarded("/ready")
    async def ready(request: Request) -> Response:
        """Readiness: a champion is loaded and answered its warm-up call."""
        champion = state.store.models.champion
        if champion is None:
            return respond(503, {"ready": False, "detail": state.store.last_refresh_error or "no champion loaded yet"})
        return respond(200, {"ready": True, "champion": champion.version})

    @app.get("/model")
    @guarded("/model")
    async def model(request: Request) -> Response:
        """Versions and routes in force, and the canary guard's view."""
        return respond(200, state.describe())

    @app.put("/routes", openapi_extra=routes_openapi())
    @guarded("/routes", needs_body=True)
    async def routes(request: Request) -> Response:
        """Change canary and shadow at run time: `{"canary_fraction": 0.1, "shadow": true}`."""
        try:
            changes = orjson.loads(request.state.body)
            if not isinstance(changes, dict):
                raise ValueError("expected a JSON object")
            return respond(200, await state.set_routes(changes, by="PUT /routes"))
        except ValueError as e:  # orjson.JSONDecodeError is a ValueError
            return refused(422, [{"loc": ["body"], "msg": str(e)[:300], "type": "value_error"}])

    @app.get("/metrics")
    @guarded("/metrics")
    async def metrics_endpoint(request: Request) -> Response:
        """Prometheus text format."""
        from prometheus_client import CONTENT_TYPE_LATEST

        return Response(metrics.render(state.writer, state.labels_writer), 200, media_type=CONTENT_TYPE_LATEST)

    return app


def create_deployment_app(settings: Settings, specs: dict[str, Params], broken: dict[str, str] | None = None,
                          apps: dict[str, LlmAppSpec] | None = None, self_url: str | None = None) -> FastAPI:
    """Every model of the deployment in one process: each model's app (:func:`create_app`, with its own
    store, hot swap, routes, guard, prediction log and metrics) under ``/models/<name>/``; with one model,
    also at the root (``POST /predict``, as before). ``GET /models`` lists them; a model that is not there
    is a 404 naming the models; a model whose spec does not validate answers 503 with the spec's error
    (the other models are served). Each LLM app of ``apps`` answers under ``/apps/<name>/``
    (:mod:`ctloop.serving.llm_app`); its escalation tool calls this server (``self_url``) unless its spec
    names another."""
    import orjson

    broken = dict(broken or {})
    children = {name: create_app(settings.for_model(name), params) for name, params in sorted(specs.items())}
    token = serving_token(settings)
    llm_children = {name: _llm_child(settings, spec, token, self_url) for name, spec in sorted((apps or {}).items())}

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # a mounted app's lifespan does not run by itself: start and stop each model's here
        async with contextlib.AsyncExitStack() as stack:
            for child in [*children.values(), *llm_children.values()]:
                await stack.enter_async_context(child.router.lifespan_context(child))
            yield

    app = FastAPI(title="ctloop serve", version="1", lifespan=lifespan, openapi_url=None, docs_url=None,
                  redoc_url=None, description="Every model of the deployment, each under /models/<name>/.")
    app.state.models = children

    def respond(status: int, body: Any) -> Response:
        return Response(orjson.dumps(body), status, media_type="application/json")

    def authorized(request: Request) -> bool:
        return all(child.state.ctloop.authorized(request) for child in children.values()) if children else (
            token is None)

    @app.get("/health")
    async def health(request: Request) -> Response:
        """Liveness: the process answers."""
        return respond(200, {"status": "ok"})

    @app.get("/models")
    async def models(request: Request) -> Response:
        """Each model: its registered model, the champion loaded, and whether it is ready."""
        if not authorized(request):
            return Response(orjson.dumps({"detail": "missing or wrong bearer token"}), 401,
                            {"WWW-Authenticate": "Bearer"}, media_type="application/json")
        body = {name: {"registered_model": child.state.ctloop.name, "ready": child.state.ctloop.store.models.champion
                       is not None, "champion": getattr(child.state.ctloop.store.models.champion, "version", None)}
                for name, child in children.items()}
        return respond(200, {"models": body, "invalid": broken})

    if len(children) != 1:
        @app.get("/ready")
        async def ready(request: Request) -> Response:
            """Readiness: every model has a champion loaded."""
            waiting = [n for n, c in children.items() if c.state.ctloop.store.models.champion is None]
            return respond(503 if waiting or not children else 200, {"ready": not waiting and bool(children),
                                                                       "waiting": waiting})

    for name, child in children.items():
        app.mount(f"/models/{name}", child)
    for name, llm_child in llm_children.items():
        app.mount(f"/apps/{name}", llm_child)

    @app.api_route("/models/{name}/{rest:path}", methods=["GET", "POST", "PUT", "DELETE", "PATCH"])
    async def unknown_model(request: Request, name: str, rest: str) -> Response:
        """A model this server does not have."""
        if name in broken:
            return respond(503, {"detail": f"model {name!r} is not served: {broken[name]}"})
        return respond(404, {"detail": f"no model {name!r} here (models: {', '.join(children) or 'none'})"})

    if len(children) == 1:
        app.mount("/", next(iter(children.values())))  # one model: today's routes at the root too
    return app


def _llm_child(settings: Settings, spec: LlmAppSpec, token: str | None, self_url: str | None) -> FastAPI:
    import os

    from ctloop.llm.providers import provider_from_spec
    from ctloop.llm.triage import ServedEscalation
    from ctloop.serving.llm_app import create_llm_app

    url = spec.tools.escalation.url or os.environ.get("CTLOOP_SERVE_URL") or self_url
    if not url:
        raise ConfigError(f"apps/{spec.name}.yaml: tools.escalation.url: not set (or CTLOOP_SERVE_URL)")
    return create_llm_app(settings, spec, provider_from_spec(spec.provider), ServedEscalation(spec.tools.escalation,
                                                                                              url, token), token)


def serve(settings: Settings, specs: dict[str, Params], host: str, port: int,
          broken: dict[str, str] | None = None, apps: dict[str, LlmAppSpec] | None = None) -> None:
    """Run the deployment's app under uvicorn (uvloop, httptools). SIGTERM: stop accepting, finish the requests
    in flight, score what is queued, flush each model's prediction log, exit."""
    import uvicorn

    # the server's own log is its console (a service's supervisor keeps it), not the CLI's log file
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)
    self_url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"
    app = create_deployment_app(settings, specs, broken, apps, self_url)  # a bad setting (an empty token) fails here
    uvicorn.run(app, host=host, port=port, loop="uvloop", http="httptools", access_log=False,
                timeout_graceful_shutdown=30, log_level="info")
