"""The audit trail: an append-only, hash-chained JSON-lines log of every decision ctloop takes.

Each entry carries its sequence number and the SHA-256 of the entry before it; its own hash covers every
field. ``HEAD`` (beside the log) holds the newest sequence number and hash, and a new entry chains from
``HEAD``, not from whatever the file ends with, so cutting entries off the end is caught too. Appends
hold a host-wide lock, so concurrent tasks never interleave or fork the chain.

Written by the library at the point of decision (validation, quarantine, gate, promotion, drift trigger)
and by the Airflow listener in ``plugins/`` for DAG run outcomes. ``ctloop audit verify`` names the first
bad line. Whoever must hear of a decision subscribes to the process's new entries (:func:`subscribe`):
the alerts, at the edge (``ctloop.airflow_edge``), so the library itself never reaches Airflow.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ctloop.core.locks import file_lock

if TYPE_CHECKING:
    from ctloop.core.settings import Settings

log = logging.getLogger(__name__)

GENESIS = "0" * 64
KINDS = ("validation", "quarantine", "labels", "gate", "promotion", "approval", "rollback", "drift_trigger",
         "canary_stop", "dag_run", "access", "rollout", "registration", "llm_monitor")


def _digest(entry: dict[str, Any]) -> str:
    body = {k: v for k, v in entry.items() if k != "hash"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":"), default=str).encode()).hexdigest()


@dataclass(frozen=True)
class AuditEntry:
    seq: int
    at: str
    kind: str
    subject: str
    outcome: str
    reasons: list[str]
    details: dict[str, Any]
    actor: str
    prev: str
    hash: str = ""
    model: str | None = None  # the model the decision is about (one chain for the deployment)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class AuditVerification:
    ok: bool
    entries: int
    bad_line: int | None = None
    problem: str | None = None
    head: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class AuditLog:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.head_path = path.with_name("HEAD")
        self.lock_path = path.with_name(".lock")

    def _head(self) -> tuple[int, str]:
        if not self.head_path.exists():
            return 0, GENESIS
        head = json.loads(self.head_path.read_text())
        return int(head["seq"]), str(head["hash"])

    def append(self, kind: str, subject: str, outcome: str, reasons: list[str] | tuple[str, ...] = (),
               details: dict[str, Any] | None = None, actor: str | None = None,
               model: str | None = None) -> AuditEntry:
        if kind not in KINDS:
            raise ValueError(f"unknown audit kind {kind!r}; one of {KINDS}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with file_lock(self.lock_path):
            seq, prev = self._head()
            body = {"seq": seq + 1, "at": datetime.now(UTC).isoformat(timespec="microseconds"), "kind": kind,
                    "subject": subject, "outcome": outcome, "reasons": [str(r) for r in reasons],
                    "details": json.loads(json.dumps(details or {}, default=str)),
                    "actor": actor or os.environ.get("CTLOOP_ACTOR", "ctloop"), "prev": prev, "model": model}
            entry = AuditEntry(**body, hash=_digest(body))
            with self.path.open("a") as fh:
                fh.write(json.dumps(entry.to_dict(), sort_keys=True, separators=(",", ":")) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
            tmp = self.head_path.with_name(f".HEAD.{os.getpid()}")
            tmp.write_text(json.dumps({"seq": entry.seq, "hash": entry.hash}))
            os.replace(tmp, self.head_path)
        return entry

    def lines(self) -> list[str | UnicodeDecodeError]:
        """The log's lines; a line that is not UTF-8 (an edited byte) is its decoding error, to be named."""
        if not self.path.exists():
            return []
        out: list[str | UnicodeDecodeError] = []
        for raw in self.path.read_bytes().splitlines():
            try:
                out.append(raw.decode("utf-8"))
            except UnicodeDecodeError as e:
                out.append(e)
        return out

    def entries(self) -> list[dict[str, Any]]:
        """Every entry, oldest first; a line that is not an entry raises :class:`AuditTampered` naming it."""
        from ctloop.core.errors import AuditTampered

        out = []
        for n, line in enumerate(self.lines(), start=1):
            try:
                if isinstance(line, UnicodeDecodeError):
                    raise ValueError(f"not UTF-8 text (byte {line.start + 1})")
                if line.strip():
                    out.append(json.loads(line))
            except ValueError as e:
                raise AuditTampered(f"{self.path}:{n}: {e}; run `ctloop audit verify`") from None
        return out

    def verify(self) -> AuditVerification:
        """Walk the chain; the first line whose content, sequence number or link is wrong is named."""
        head_seq, head_hash = self._head()
        head = {"seq": head_seq, "hash": head_hash}
        lines = self.lines()
        prev = GENESIS
        for n, line in enumerate(lines, start=1):
            def bad(problem: str, n: int = n) -> AuditVerification:
                return AuditVerification(False, len(lines), n, problem, head)
            if isinstance(line, UnicodeDecodeError):
                return bad(f"not UTF-8 text: byte {line.start + 1} of the line was edited")
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                return bad("not a JSON object (line edited or truncated)")
            if not isinstance(entry, dict) or "hash" not in entry:
                return bad("not an audit entry")
            if _digest(entry) != entry["hash"]:
                return bad(f"entry #{entry.get('seq')} was edited: its content does not match its hash")
            if entry.get("seq") != n:
                return bad(f"expected entry #{n}, found #{entry.get('seq')}: an entry was removed or the "
                           f"entries were reordered")
            if entry.get("prev") != prev:
                return bad(f"entry #{n} does not chain to the entry before it: the previous entry was "
                           f"replaced, or this one was re-hashed after an edit")
            prev = entry["hash"]
        if head_seq != len(lines) or head_hash != prev:
            return AuditVerification(False, len(lines), len(lines) + 1,
                                     f"HEAD records entry #{head_seq}, the log ends at #{len(lines)}: entries at "
                                     f"the end were removed or replaced", head)
        return AuditVerification(True, len(lines), head=head)


def audit_log(settings: Settings) -> AuditLog:
    return AuditLog(settings.home / "audit" / "audit.jsonl")


Subscriber = Callable[[dict[str, Any], "Settings"], object]
_subscribers: list[Subscriber] = []


def subscribe(callback: Subscriber) -> None:
    """Call ``callback(entry, settings)`` after each entry this process records (once per callback)."""
    if callback not in _subscribers:
        _subscribers.append(callback)


def unsubscribe(callback: Subscriber) -> None:
    if callback in _subscribers:
        _subscribers.remove(callback)


def record(kind: str, subject: str, outcome: str, reasons: list[str] | tuple[str, ...] = (),
           details: dict[str, Any] | None = None, actor: str | None = None,
           settings: Settings | None = None) -> AuditEntry:
    """Append one decision to the audit log under ``CTLOOP_HOME`` (the call sites' one-liner), then tell the
    subscribers, after the entry is safe; a subscriber that fails is logged and never fails the decision."""
    from ctloop.core.settings import get_settings

    s = settings or get_settings()
    entry = audit_log(s).append(kind, subject, outcome, reasons, details, actor, model=s.model)
    for callback in list(_subscribers):
        try:
            callback(entry.to_dict(), s)
        except Exception:
            log.exception("audit subscriber %r failed on entry #%d", callback, entry.seq)
    return entry


def entries_since(entries: list[dict[str, Any]], since: datetime | None) -> list[dict[str, Any]]:
    if since is None:
        return entries
    floor = since if since.tzinfo else since.replace(tzinfo=UTC)
    return [e for e in entries if datetime.fromisoformat(e["at"]) >= floor]
