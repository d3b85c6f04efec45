"""The request contract of ``POST /predict``, generated from the dataset contract in ``params.yaml`` (the same
columns and types as the registered model's MLflow signature, which :func:`check_signature` compares).

A body is one record (``{"channel": "chat", ...}``) or a batch (``{"records": [{...}, ...]}``). Every feature
is required (``null`` is allowed where the contract says the column is nullable: the model's imputers take
it); numbers must be JSON numbers (finite), categories strings. Besides the features a record may carry
``request_id`` (echoed and logged; generated when absent), ``key`` (what the canary split is sticky on), the
contract's id column (the sticky key when ``key`` is absent) and its timestamp column (the event time the
prediction is logged under; the time the server received it otherwise). Anything else is refused: a typo
in a feature name must not silently become a missing value.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, create_model

if TYPE_CHECKING:
    from ctloop.params import DatasetSpec

MAX_KEY = 200


class RequestInvalid(Exception):
    """The body is not a valid request; ``errors`` are FastAPI-shaped (``loc``, ``msg``, ``type``)."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__(f"{len(errors)} error(s)")
        self.errors = errors


class RequestSchema:
    def __init__(self, contract: DatasetSpec, max_records: int) -> None:
        self.contract = contract
        self.max_records = max_records
        fields: dict[str, Any] = {
            "request_id": (Annotated[str, Field(min_length=1, max_length=MAX_KEY)] | None, None),
            "key": (Annotated[str, Field(max_length=MAX_KEY)] | None, None),
            contract.id: (Annotated[str, Field(max_length=MAX_KEY)] | int | None, None),
            contract.timestamp: (datetime | None, None),
        }
        for name in contract.numeric_features:
            number = Annotated[float, Field(strict=True, allow_inf_nan=False)]
            fields[name] = (number | None, ...) if contract.columns[name].nullable else (number, ...)
        for name in contract.categorical_features:
            text = Annotated[str, Field(strict=True)]
            fields[name] = (text | None, ...) if contract.columns[name].nullable else (text, ...)
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
    text = repr(value)
    return value if len(text) <= 80 else text[:77] + "..."
