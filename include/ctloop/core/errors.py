"""Typed errors. Each maps to a CLI exit code (DESIGN.md: 1 = the check ran and failed, 2 = bad input)."""

from __future__ import annotations

import reprlib
from typing import Any

_SHOWN = reprlib.Repr()
_SHOWN.maxlevel, _SHOWN.maxstring, _SHOWN.maxother, _SHOWN.maxlist, _SHOWN.maxdict = 3, 80, 80, 5, 5


def shown(value: Any) -> str:
    """A bad value as an error message names it: short and depth-bounded, whatever its size or nesting
    (a 20 MB string or a 1,000-deep list is cut, never echoed whole or recursed through)."""
    return _SHOWN.repr(value)


class CtloopError(Exception):
    """Base of every error ctloop raises on purpose."""

    exit_code = 2


class UsageError(CtloopError):
    """A command-line argument is not what the verb takes; the message names the option and the value."""


class ConfigError(CtloopError):
    """params.yaml or a runtime setting is invalid; the message names the key."""


class DataUnreadable(CtloopError):
    """A user file is missing, corrupt or not in the format its name claims; the message names the file."""


class SchemaError(CtloopError):
    """Data does not match the dataset contract; the message names the column."""


class ValidationFailed(CtloopError):
    """A Great Expectations suite ran and at least one expectation failed."""

    exit_code = 1

    def __init__(self, message: str, failures: list[dict[str, object]] | None = None, rows: int = 0) -> None:
        super().__init__(message)
        self.failures = failures or []
        self.rows = rows  # rows of the batch that failed (all of them went to quarantine)


class SuiteMissing(CtloopError):
    """The named expectation suite does not exist in the GX context."""


class InsufficientData(CtloopError):
    """A training window has too few rows or a single class; no model is trained."""

    exit_code = 1


class GateRejected(CtloopError):
    """The promotion gate rejected a challenger."""

    exit_code = 1


class PromotionConflict(CtloopError):
    """The champion alias moved between the gate's decision and the promotion (compare-and-set lost)."""

    exit_code = 1


class RegistryError(CtloopError):
    """A registered model, version or alias that was asked for does not exist."""


class DependencyUnavailable(CtloopError):
    """A service ctloop needs (the MLflow tracking server, the metadata DB) did not answer within the
    bounded retries; the message names its URI. Never mistaken for an empty answer."""


class StorageFull(DependencyUnavailable):
    """The disk (or quota) under the lake or a store is full; the message names the directory and the
    space. Whatever was half-written is removed."""


class AirflowRuntimeFailed(CtloopError):
    """The local Airflow processes could not be started or a run did not finish."""

    exit_code = 1


class AuditTampered(CtloopError):
    """The audit log's hash chain is broken: an entry was edited, removed or reordered."""

    exit_code = 1


class VersioningError(CtloopError):
    """A DVC operation (track, push, materialise) failed; the message names the path."""


class NotReproduced(CtloopError):
    """A retrain from the recorded data and params did not give the registered metrics."""

    exit_code = 1

    def __init__(self, message: str, result: object = None) -> None:
        super().__init__(message)
        self.result = result


class LimitsExceeded(CtloopError):
    """A monitoring window ran and is beyond its limits (an LLM app's token budget, schema failures, ...)."""

    exit_code = 1
