"""The request contract of ``POST /predict``, generated from the dataset contract in ``params.yaml`` (the same
columns and types as the registered model's MLflow signature, which :func:`check_signature` compares).

A body is one record (``{"channel": "chat", ...}``) or a batch (``{"records": [{...}, ...]}``). Every feature
is required (``null`` is allowed where the contract says the column is nullable: the model's imputers take
it); numbers must be JSON numbers (finite), categories strings. Besides the features a record may carry
``request_id`` (echoed and logged; generated when absent), ``key`` (what the canary split is sticky on), the
contract's id column (the sticky key when ``key`` is absent) and its timestamp column (the event time the
prediction is logged under; the time the server received it otherwise). Anything else is refused: a typo
in a feature name must not silently become a missing value.

Limits, so one request cannot poison or flood the prediction log: a category value is at most
``serving.max_text_length`` characters; an event time must lie within the log's timestamp range
(:data:`TS_MIN` .. :data:`TS_MAX`, inside pandas' own) and is stored in UTC; an input echoed back in a 422
is cut to a short, depth-bounded representation.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, create_model

from ctloop.core.errors import shown

if TYPE_CHECKING:
    from ctloop.core.params import DatasetSpec

MAX_KEY = 200
# pandas timestamps end at 2262-04-11 and start at 1677-09-21: a logged event time must fit with a margin
TS_MIN = datetime(1677, 9, 22, tzinfo=UTC)
TS_MAX = datetime(2262, 4, 10, tzinfo=UTC)


def bounded_utc(value: datetime) -> datetime:
    """The event time in UTC, refused outside [TS_MIN, TS_MAX) (a naive time is taken as UTC)."""
    try:
        utc = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except (OverflowError, ValueError) as e:  # 9999-12-31T23:59:59-01:00 is past datetime's own range in UTC
        raise ValueError(f"cannot be expressed in UTC: {e}") from None
    if not TS_MIN <= utc < TS_MAX:
        raise ValueError(f"must be between {TS_MIN.date()} and {TS_MAX.date()} (the prediction log's range)")
    return utc


EventTime = Annotated[datetime, AfterValidator(bounded_utc)]


class RequestInvalid(Exception):
    """The body is not a valid request; ``errors`` are FastAPI-shaped (``loc``, ``msg``, ``type``)."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__(f"{len(errors)} error(s)")
        self.errors = errors


class RequestSchema:
    def __init__(self, contract: DatasetSpec, max_records: int, max_text_length: int = 1_000,
                 max_document_length: int = 10_000) -> None:
        self.contract = contract
        self.max_records = max_records
        fields: dict[str, Any] = {
            "request_id": (Annotated[str, Field(min_length=1, max_length=MAX_KEY)] | None, None),
            "key": (Annotated[str, Field(max_length=MAX_KEY)] | None, None),
            contract.id: (Annotated[str, Field(max_length=MAX_KEY)] | int | None, None),
            contract.timestamp: (EventTime | None, None),
        }
        for name in contract.numeric_features:
            number = Annotated[float, Field(strict=True, allow_inf_nan=False)]
            fields[name] = (number | None, ...) if contract.columns[name].nullable else (number, ...)
        for name in contract.categorical_features:
            text = Annotated[str, Field(strict=True, max_length=max_text_length)]
            fields[name] = (text | None, ...) if contract.columns[name].nullable else (text, ...)
        for name in contract.text_features:  # free text: any script, empty allowed, up to max_document_length
            document = Annotated[str, Field(strict=True, max_length=max_document_length)]
            fields[name] = (document | None, ...) if contract.columns[name].nullable else (document, ...)
        self.record = create_model("PredictionRecord", __config__=ConfigDict(extra="forbid"), **fields)
        batch = create_model("PredictionBatch", __config__=ConfigDict(extra="forbid"),
                             records=(list[self.record], Field(min_length=1, max_length=max_records)))  # type: ignore[name-defined]
        self._record = TypeAdapter(self.record)
        self._batch = TypeAdapter(batch)

    def parse(self, body: bytes) -> tuple[list[dict[str, Any]], bool]:
        """The validated records and whether the body was a batch; :class:`RequestInvalid` otherwise."""
        import orjson

        try:
            obj = orjson.loads(body)
        except orjson.JSONDecodeError as e:
            raise RequestInvalid([{"loc": ["body"], "msg": f"invalid JSON: {e}", "type": "json_invalid"}]) from e
        is_batch = isinstance(obj, dict) and "records" in obj
        try:
            if is_batch:
                parsed: BaseModel = self._batch.validate_python(obj)
                records = [r.model_dump() for r in parsed.records]  # type: ignore[attr-defined]
            else:
                records = [self._record.validate_python(obj).model_dump()]
        except ValidationError as e:
            raise RequestInvalid([
                {"loc": ["body", *e_["loc"]], "msg": e_["msg"], "type": e_["type"],
                 **({"input": _short(e_["input"])} if "input" in e_ and e_["type"] != "missing" else {})}
                for e_ in e.errors(include_url=False)]) from e
        return records, is_batch

    def openapi(self) -> dict[str, Any]:
        one = self.record.model_json_schema()
        return {"requestBody": {"required": True, "content": {"application/json": {"schema": {"oneOf": [
            one, {"type": "object", "properties": {"records": {"type": "array", "items": one,
                                                               "maxItems": self.max_records}},
                  "required": ["records"], "additionalProperties": False}]}}}}}


def check_signature(signature_inputs: list[tuple[str, str]], contract: DatasetSpec) -> list[str]:
    """Differences between a model's MLflow signature (name, type) and the contract's features."""
    problems = []
    theirs = dict(signature_inputs)
    for name in contract.features:
        if name not in theirs:
            problems.append(f"{name}: in params.yaml dataset.columns, not in the model signature")
            continue
        numeric = name in contract.numeric_features
        if numeric != (theirs[name] in ("double", "float", "long", "integer")):
            problems.append(f"{name}: params.yaml says {contract.columns[name].type}, the signature {theirs[name]}")
    problems += [f"{name}: in the model signature, not in params.yaml" for name in theirs
                 if name not in contract.features]
    return problems


def _short(value: Any) -> Any:
    """The input as echoed in a 422: itself when short and flat, else a bounded representation (never the
    whole of a 20 MB value, never a recursion through a 1,000-deep structure)."""
    if isinstance(value, (int, float, bool)) or value is None:
        return value
    if isinstance(value, str) and len(value) <= 80:
        return value
    return shown(value)
