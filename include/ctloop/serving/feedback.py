"""``POST /feedback``: delayed labels from the system that learns the truth (a support agent closing the
ticket, a flight landing), for requests the server answered. One label or ``{"labels": [...]}``; each is
``request_id``, ``label`` (one of ``dataset.classes``) and an optional ``labeled_at`` (now, when absent).
Labels are written to ``labels/dt=<day>/`` by their own bounded writer, the files the monitor joins on the
request id. An id this server has not answered recently (another replica answered it, or it is older than
``serving.feedback_memory`` requests, or it is wrong) is still stored, and counted and reported as unknown:
a label is never dropped for want of a match.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import AfterValidator, ConfigDict, Field, TypeAdapter, ValidationError, create_model

from ctloop.serving.schema import MAX_KEY, EventTime, RequestInvalid, _short

if TYPE_CHECKING:
    from ctloop.core.params import DatasetSpec
    from ctloop.serving.logwriter import LogWriter
    from ctloop.serving.metrics import ServingMetrics

MAX_UNKNOWN_LISTED = 100


class RecentRequests:
    """The ids of roughly the last ``capacity`` requests this server answered, in bounded memory: two
    generations of 8-byte hashes (a new one starts when the current holds half the capacity; the oldest
    is dropped), about 60 bytes an id whatever its length."""

    def __init__(self, capacity: int) -> None:
        self.half = max(1, capacity // 2)
        self._current: set[int] = set()
        self._previous: set[int] = set()

    @staticmethod
    def _key(request_id: str) -> int:
        return int.from_bytes(hashlib.blake2b(request_id.encode(), digest_size=8).digest(), "big")

    def add(self, ids: list[str]) -> None:
        for i in ids:
            self._current.add(self._key(i))
            if len(self._current) >= self.half:
                self._previous, self._current = self._current, set()

    def __contains__(self, request_id: object) -> bool:
        if not isinstance(request_id, str):
            return False
        key = self._key(request_id)
        return key in self._current or key in self._previous


class FeedbackHandler:
    def __init__(self, contract: DatasetSpec, max_records: int, recent: RecentRequests, metrics: ServingMetrics) -> None:
        classes = set(contract.classes)

        def in_classes(value: int) -> int:
            if value not in classes:
                raise ValueError(f"expected one of {sorted(classes)}")
            return value

        label: Any = (Annotated[int, Field(strict=True), AfterValidator(in_classes)] if contract.is_classifier else
                      Annotated[float, Field(allow_inf_nan=False)])  # a regression label: any finite number
        record = create_model("FeedbackLabel", __config__=ConfigDict(extra="forbid"),
                              request_id=(Annotated[str, Field(min_length=1, max_length=MAX_KEY)], ...),
                              label=(label, ...), labeled_at=(EventTime | None, None))
        batch = create_model("FeedbackBatch", __config__=ConfigDict(extra="forbid"),
                             labels=(list[record], Field(min_length=1, max_length=max_records)))  # type: ignore[valid-type]
        self.record_model = record
        self._one = TypeAdapter(record)
        self._many = TypeAdapter(batch)
        self.recent = recent
        self.metrics = metrics
        self.writer: LogWriter | None = None

    def openapi(self) -> dict[str, Any]:
        one = self.record_model.model_json_schema()
        return {"requestBody": {"required": True, "content": {"application/json": {"schema": {"oneOf": [
            one, {"type": "object", "properties": {"labels": {"type": "array", "items": one}},
                  "required": ["labels"], "additionalProperties": False}]}}}}}

    def parse(self, body: bytes) -> list[dict[str, Any]]:
        import orjson

        try:
            obj = orjson.loads(body)
        except orjson.JSONDecodeError as e:
            raise RequestInvalid([{"loc": ["body"], "msg": f"invalid JSON: {e}", "type": "json_invalid"}]) from e
        try:
            if isinstance(obj, dict) and "labels" in obj:
                return [r.model_dump() for r in self._many.validate_python(obj).labels]  # type: ignore[attr-defined]
            return [self._one.validate_python(obj).model_dump()]
        except ValidationError as e:
            raise RequestInvalid([
                {"loc": ["body", *e_["loc"]], "msg": e_["msg"], "type": e_["type"],
                 **({"input": _short(e_["input"])} if "input" in e_ and e_["type"] != "missing" else {})}
                for e_ in e.errors(include_url=False)]) from e

    def accept(self, body: bytes) -> tuple[int, dict[str, Any]]:
        try:
            labels = self.parse(body)
        except RequestInvalid as e:
            self.metrics.rejected.labels("422").inc()
            return 422, {"detail": e.errors}
        now = datetime.now(UTC)
        rows = [{"request_id": r["request_id"], "label": r["label"], "labeled_at": r["labeled_at"] or now}
                for r in labels]
        unknown = [r["request_id"] for r in rows if r["request_id"] not in self.recent]
        assert self.writer is not None
        if not self.writer.offer(rows):
            self.metrics.rejected.labels("503").inc()
            return 503, {"detail": "the label queue is full; retry later (nothing of this request was kept)"}
        self.metrics.feedback.labels("true").inc(len(rows) - len(unknown))
        self.metrics.feedback.labels("false").inc(len(unknown))
        return 200, {"accepted": len(rows), "unknown": len(unknown), "unknown_ids": unknown[:MAX_UNKNOWN_LISTED]}
