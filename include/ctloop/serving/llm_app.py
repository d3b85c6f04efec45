"""An LLM app behind `ctloop serve`: ``POST /apps/<name>/answer`` answers a ticket with the champion prompt
version, or with ``@candidate`` for the share of ticket keys its staged rollout has earned (sticky per
``ticket_id``), and logs every answer to the app's request log (:mod:`ctloop.data.llm_log`).

The aliases and the rollout's weight are re-read every ``poll_seconds``; an MLflow outage keeps the versions
already loaded. The model runs in a worker thread, so the event loop keeps answering ``/health`` and the
escalation classifier's own requests (the triage app calls ``/models/<model>/predict`` on this server).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson
from fastapi import FastAPI, Request, Response

from ctloop.core.errors import ConfigError, CtloopError, DependencyUnavailable
from ctloop.data.llm_log import LLM_LOG_COLUMNS, write_llm_log
from ctloop.llm.triage import Customers, KnowledgeBase, Ticket, TriageApp, cost
from ctloop.registry import prompts
from ctloop.registry.mlflow_registry import CHAMPION, configure_mlflow
from ctloop.serving.logwriter import LogWriter
from ctloop.serving.routing import bucket

if TYPE_CHECKING:
    import pandas as pd

    from ctloop.core.apps import LlmAppSpec
    from ctloop.core.settings import Settings
    from ctloop.llm.providers import ChatProvider
    from ctloop.llm.triage import EscalationScorer

log = logging.getLogger("ctloop.serving.llm")
logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per escalation-tool call would bury the server's own
MAX_BODY = 1_000_000


class LlmServingState:
    def __init__(self, settings: Settings, spec: LlmAppSpec, provider: ChatProvider, escalation: EscalationScorer,
                 token: str | None) -> None:
        self.settings, self.spec, self.provider, self.escalation, self.token = settings, spec, provider, escalation, token
        configure_mlflow(settings)
        self.kb = KnowledgeBase.read(spec.knowledge_base_path(settings.project_dir))
        self.customers = Customers.read(spec.customers_path(settings))
        self.apps: dict[str, TriageApp] = {}
        self.champion: str | None = None
        self.candidate: str | None = None
        self.weight = 0.0
        lake = settings.lake_root

        def sink(frame: pd.DataFrame, stem: str) -> None:
            write_llm_log(lake, spec.name, frame, stem)

        self.writer = LogWriter(sink, LLM_LOG_COLUMNS, flush_seconds=1.0, flush_rows=200)

    def _app(self, version: str) -> TriageApp:
        if version not in self.apps:
            p = prompts.load(self.spec.prompt_name, version)
            self.apps[version] = TriageApp(self.spec, p.template, p.version, self.provider, self.kb, self.customers,
                                           self.escalation, trace=False)
        return self.apps[version]

    def refresh(self) -> None:
        """Re-read the aliases and the rollout's weight; on an outage keep what is loaded."""
        try:
            champion = prompts.alias_version(self.spec.prompt_name, CHAMPION)
            candidate, weight = prompts.candidate_weight(self.settings, self.spec.name)
            for v in (champion, candidate):
                if v is not None:
                    self._app(v)
        except CtloopError as e:
            log.warning("%s: keeping prompt v%s (weight %.2f on v%s): %s", self.spec.name, self.champion,
                        self.weight, self.candidate, e)
            return
        self.champion, self.candidate, self.weight = champion, candidate, weight if candidate else 0.0

    def choose(self, key: str) -> tuple[str, str] | None:
        """(route, version) for a ticket key: the candidate for its sticky share, else the champion."""
        if self.candidate is not None and self.weight > 0 and bucket(key) < self.weight:
            return "candidate", self.candidate
        return ("champion", self.champion) if self.champion is not None else None

    def row(self, request_id: str, at: datetime, ticket: Ticket, route: str, version: str, answer: Any,
            error: str | None) -> dict[str, Any]:
        base = {"request_id": request_id, "at": at.isoformat(), "ticket_id": ticket.ticket_id, "route": route,
                "prompt_version": version, "text": ticket.text[:2000], "text_length": len(ticket.text), "error": error}
        if answer is None:
            return base
        tools = {c.name: c.latency_ms for c in answer.tool_calls}
        return base | {"model": answer.model, "decision_route": answer.route, "escalate": answer.escalate,
                       "reply": answer.reply, "schema_valid": answer.schema_valid, "refused": answer.refused,
                       "llm_disagreed": answer.llm_disagreed, "input_tokens": answer.input_tokens,
                       "output_tokens": answer.output_tokens,
                       "cost": cost(self.spec, answer.input_tokens, answer.output_tokens),
                       "latency_ms": answer.latency_ms, "tool_ms": orjson.dumps(tools).decode()}


def create_llm_app(settings: Settings, spec: LlmAppSpec, provider: ChatProvider, escalation: EscalationScorer,
                   token: str | None = None) -> FastAPI:
    state = LlmServingState(settings, spec, provider, escalation, token)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await asyncio.to_thread(state.refresh)

        async def poll() -> None:
            while True:
                await asyncio.sleep(spec.poll_seconds)
                await asyncio.to_thread(state.refresh)

        task = asyncio.create_task(poll())
        try:
            yield
        finally:
            task.cancel()
            await asyncio.to_thread(state.writer.close)

    app = FastAPI(title=f"ctloop LLM app {spec.name}", lifespan=lifespan, openapi_url=None, docs_url=None,
                  redoc_url=None)
    app.state.ctloop = state

    def respond(status: int, body: Any) -> Response:
        return Response(orjson.dumps(body), status, media_type="application/json")

    def authorized(request: Request) -> bool:
        return token is None or request.headers.get("authorization") == f"Bearer {token}"

    @app.post("/answer")
    async def answer(request: Request) -> Response:
        """One ticket: ``{"ticket_id", "text", "customer_id"?, "features"?}`` -> ``{route, escalate, reply}``."""
        if not authorized(request):
            return respond(401, {"detail": "missing or wrong bearer token"})
        body = await request.body()
        if len(body) > MAX_BODY:
            return respond(413, {"detail": f"body over {MAX_BODY} bytes"})
        try:
            data = orjson.loads(body)
            if not isinstance(data, dict):
                raise ConfigError("body: expected a JSON object (a ticket)")
            ticket = Ticket.from_dict(data)
        except orjson.JSONDecodeError:
            return respond(400, {"detail": "body: not JSON"})
        except ConfigError as e:
            return respond(400, {"detail": str(e)})
        request_id = uuid.uuid4().hex
        chosen = state.choose(ticket.ticket_id or request_id)
        if chosen is None:
            return respond(503, {"detail": f"prompts:/{spec.prompt_name}@champion: no champion prompt version yet"})
        route, version = chosen
        at = datetime.now(UTC)
        start = time.perf_counter()
        try:
            result = await asyncio.to_thread(state.apps[version].answer, ticket)
        except DependencyUnavailable as e:
            state.writer.offer([state.row(request_id, at, ticket, route, version, None, str(e))])
            return respond(503, {"detail": str(e), "request_id": request_id})
        except Exception as e:
            log.exception("%s: answering %s failed", spec.name, ticket.ticket_id)
            state.writer.offer([state.row(request_id, at, ticket, route, version, None, type(e).__name__)])
            return respond(500, {"detail": f"internal error: {type(e).__name__}", "request_id": request_id})
        state.writer.offer([state.row(request_id, at, ticket, route, version, result, None)])
        return respond(200, {"request_id": request_id, **result.outputs(), "prompt_version": version,
                             "served_by": route, "latency_ms": round((time.perf_counter() - start) * 1000, 3)})

    @app.get("/status")
    async def status(request: Request) -> Response:
        """The versions loaded and the candidate's weight."""
        return respond(200, {"app": spec.name, "champion": state.champion, "candidate": state.candidate,
                             "weight": state.weight, "logged": state.writer.written, "dropped": state.writer.dropped})

    return app
