"""One ``/predict`` call: parse it against the request schema, route each record (champion or the sticky
canary), score through the micro-batcher, answer, hand the rows to the prediction log, and shadow-score
in the background. Every outcome is counted for the canary guard and the metrics."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ctloop.estimators.scoring import ScoringError
from ctloop.serving.routing import CANARY_ROUTE, CHAMPION_ROUTE, SHADOW_ROUTE, on_canary
from ctloop.serving.schema import RequestInvalid, RequestSchema

if TYPE_CHECKING:
    from ctloop.core.params import Params
    from ctloop.serving.batcher import LoadedModel, MicroBatcher
    from ctloop.serving.feedback import RecentRequests
    from ctloop.serving.guard import CanaryGuard
    from ctloop.serving.logwriter import LogWriter
    from ctloop.serving.metrics import ServingMetrics
    from ctloop.serving.models import ModelSet, ModelStore

log = logging.getLogger("ctloop.serving")


class PredictionHandler:
    def __init__(self, params: Params, store: ModelStore, guard: CanaryGuard, metrics: ServingMetrics,
                 recent: RecentRequests) -> None:
        self.contract = params.dataset
        self.name = params.training.registered_model
        self.threshold = params.evaluation.threshold
        self.classifier = params.dataset.is_classifier
        self.schema = RequestSchema(self.contract, params.serving.max_records, params.serving.max_text_length,
                                    params.serving.max_document_length)
        self.store = store
        self.guard = guard
        self.metrics = metrics
        self.recent = recent  # the ids answered, for /feedback to recognise
        self.batcher: MicroBatcher | None = None
        self.writer: LogWriter | None = None
        self.shadow_tasks: set[asyncio.Task[None]] = set()

    def attach(self, batcher: MicroBatcher, writer: LogWriter) -> None:
        self.batcher, self.writer = batcher, writer

    async def predict(self, body: bytes, started: float) -> tuple[int, dict[str, Any]]:
        """(HTTP status, response body) for one ``/predict`` call."""
        try:
            records, is_batch = self.schema.parse(body)
        except RequestInvalid as e:
            self.metrics.rejected.labels("422").inc()
            return 422, {"detail": e.errors}
        models = self.store.models  # the snapshot this request lives on
        if models.champion is None:
            self.metrics.rejected.labels("503").inc()
            return 503, {"detail": "no champion loaded yet (see GET /ready)"}
        received = datetime.now(UTC)
        for r in records:
            if r["request_id"] is None:
                r["request_id"] = uuid.uuid4().hex
        groups: dict[str, list[int]] = {}
        for i, r in enumerate(records):
            groups.setdefault(self._route(r, models), []).append(i)
        served: dict[int, tuple[LoadedModel, str, Any]] = {}
        try:
            for route, members in groups.items():
                for i, lm, rt, score in await self._score_route(route, [records[i] for i in members], members,
                                                                models, started):
                    served[i] = (lm, rt, score)
        except ScoringError as e:
            self.metrics.requests.labels(models.champion.version, CHAMPION_ROUTE, "error").inc()
            self.guard.outcome(CHAMPION_ROUTE, True, (time.perf_counter() - started) * 1000, models.champion.version)
            return 500, {"detail": f"model v{models.champion.version} failed: {e}"}
        latency = time.perf_counter() - started
        out, rows = [], []
        for i, r in enumerate(records):
            lm, route, raw = served[i]
            prediction, score, probabilities = self.decide(raw)
            answer = {"request_id": r["request_id"], "prediction": prediction, "score": score}
            if probabilities is not None:
                answer["probabilities"] = probabilities
            out.append(answer | {"model_version": lm.version, "route": route})
            rows.append(self.log_row(r, received, lm.version, route, prediction, score, latency, probabilities))
        self.metrics.requests.labels(out[0]["model_version"], out[0]["route"], "ok").inc()  # a batch: its first
        for (version, route), n in Counter((o["model_version"], o["route"]) for o in out).items():
            self.metrics.records.labels(version, route).inc(n)
            self.metrics.latency.labels(version, route).observe(latency)
        for o in out:
            self.metrics.scores.labels(o["model_version"], o["route"]).observe(o["score"])
            if self.classifier:  # a class is a label value; a regressor's value would be one label per request
                self.metrics.predictions.labels(o["model_version"], o["route"], str(o["prediction"])).inc()
        assert self.writer is not None
        self.writer.offer(rows)
        self.recent.add([o["request_id"] for o in out])
        if models.shadow is not None:
            task = asyncio.get_running_loop().create_task(self._shadow(models.shadow, records, received))
            self.shadow_tasks.add(task)
            task.add_done_callback(self.shadow_tasks.discard)
        return 200, ({"predictions": out} if is_batch else out[0])

    def _route(self, record: dict[str, Any], models: ModelSet) -> str:
        if models.canary is None:
            return CHAMPION_ROUTE
        key = record["key"] or record.get(self.contract.id) or record["request_id"]
        return CANARY_ROUTE if on_canary(str(key), models.routes.canary_fraction) else CHAMPION_ROUTE

    async def _score_route(self, route: str, records: list[dict[str, Any]], members: list[int], models: ModelSet,
                           started: float) -> list[tuple[int, LoadedModel, str, Any]]:
        """Scores of one route's records; a failing canary answers from the champion (and counts against
        the canary), a failing champion raises."""
        assert self.batcher is not None and models.champion is not None
        if route == CANARY_ROUTE and models.canary is not None:
            try:
                scores = await self.batcher.score(models.canary, records)
                self.guard.outcome(CANARY_ROUTE, False, (time.perf_counter() - started) * 1000, models.canary.version)
                return [(i, models.canary, CANARY_ROUTE, self._raw(s)) for i, s in zip(members, scores, strict=True)]
            except ScoringError as e:
                self.metrics.errors.labels(models.canary.version, CANARY_ROUTE).inc()
                self.guard.outcome(CANARY_ROUTE, True, (time.perf_counter() - started) * 1000, models.canary.version)
                log.warning("canary v%s failed (%s); answered by the champion", models.canary.version, e)
        try:
            scores = await self.batcher.score(models.champion, records)
        except ScoringError:
            self.metrics.errors.labels(models.champion.version, CHAMPION_ROUTE).inc()
            raise
        self.guard.outcome(CHAMPION_ROUTE, False, (time.perf_counter() - started) * 1000, models.champion.version)
        return [(i, models.champion, CHAMPION_ROUTE, self._raw(s)) for i, s in zip(members, scores, strict=True)]

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
            prediction, score, probabilities = self.decide(self._raw(s))
            rows.append(self.log_row(r, received, shadow.version, SHADOW_ROUTE, prediction, score, latency,
                                     probabilities))
            self.metrics.scores.labels(shadow.version, SHADOW_ROUTE).observe(score)
        self.metrics.records.labels(shadow.version, SHADOW_ROUTE).inc(len(records))
        self.writer.offer(rows)

    def _raw(self, output: Any) -> Any:
        """One record's model output: a float, or a multiclass model's probabilities (a list per class)."""
        return [float(p) for p in output] if self.contract.task == "multiclass" else float(output)

    def decide(self, raw: Any) -> tuple[float, float, dict[str, float] | None]:
        """(prediction, score, probabilities): the class at ``evaluation.threshold`` and the positive class's
        probability (binary); the most probable class, its probability and every class's (multiclass); the
        predicted value twice (regression)."""
        if self.contract.task == "multiclass":
            best = max(range(len(raw)), key=raw.__getitem__)
            return self.contract.classes[best], raw[best], dict(zip(map(str, self.contract.classes), raw, strict=True))
        return (int(raw >= self.threshold) if self.classifier else raw), raw, None

    def log_row(self, record: dict[str, Any], received: datetime, version: str, route: str, prediction: float,
                score: float, latency: float, probabilities: dict[str, float] | None = None) -> dict[str, Any]:
        """The prediction-log row: the event time (in UTC, already bounded by the schema), the features as
        the model saw them, the outcome."""
        ts = record.get(self.contract.timestamp) or received
        row = {"request_id": record["request_id"], "ts": ts, "model_name": self.name, "model_version": version,
               "route": route}
        for name in self.contract.features:
            row[name] = record[name]
        row |= {"prediction": prediction, "score": score, "latency_ms": round(latency * 1000, 3)}
        if probabilities is not None:  # multiclass: every class's probability, for prediction drift per class
            row |= {f"proba_{c}": p for c, p in probabilities.items()}
        return row
