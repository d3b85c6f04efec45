"""The hash-chained audit log: every kind of tampering is caught and the first bad line is named;
concurrent writers never fork or interleave the chain."""

from __future__ import annotations

import itertools
import json
import multiprocessing
from pathlib import Path

import pytest

from ctloop.core.audit import AuditLog
from tests.conftest import run_cli


def _log(tmp_path: Path, n: int = 5) -> AuditLog:
    log = AuditLog(tmp_path / "audit" / "audit.jsonl")
    for i in range(n):
        log.append("gate", f"model v{i}", "passed" if i % 2 else "rejected", [f"reason {i}"], {"i": i})
    return log


def _lines(log: AuditLog) -> list[str]:
    return log.path.read_text().splitlines()


def _write(log: AuditLog, lines: list[str]) -> None:
    log.path.write_text("".join(line + "\n" for line in lines))


def test_an_untouched_log_verifies(tmp_path: Path) -> None:
    log = _log(tmp_path)
    result = log.verify()
    assert result.ok and result.entries == 5 and result.bad_line is None
    entries = log.entries()
    assert [e["seq"] for e in entries] == [1, 2, 3, 4, 5]
    assert all(b["prev"] == a["hash"] for a, b in itertools.pairwise(entries))


def test_an_edited_entry_is_named(tmp_path: Path) -> None:
    log = _log(tmp_path)
    lines = _lines(log)
    entry = json.loads(lines[2])
    entry["outcome"] = "passed" if entry["outcome"] == "rejected" else "rejected"
    lines[2] = json.dumps(entry, sort_keys=True, separators=(",", ":"))
    _write(log, lines)
    result = log.verify()
    assert not result.ok and result.bad_line == 3 and "edited" in (result.problem or "")


def test_an_edit_that_recomputes_the_hash_breaks_the_next_link(tmp_path: Path) -> None:
    from ctloop.core.audit import _digest

    log = _log(tmp_path)
    lines = _lines(log)
    entry = json.loads(lines[1])
    entry["reasons"] = ["nothing to see"]
    entry["hash"] = _digest(entry)
    lines[1] = json.dumps(entry)
    _write(log, lines)
    result = log.verify()
    assert not result.ok and result.bad_line == 3 and "chain" in (result.problem or "")


def test_a_removed_entry_is_named(tmp_path: Path) -> None:
    log = _log(tmp_path)
    lines = _lines(log)
    del lines[1]
    _write(log, lines)
    result = log.verify()
    assert not result.ok and result.bad_line == 2 and "removed" in (result.problem or "")


def test_reordered_entries_are_named(tmp_path: Path) -> None:
    log = _log(tmp_path)
    lines = _lines(log)
    lines[3], lines[4] = lines[4], lines[3]
    _write(log, lines)
    result = log.verify()
    assert not result.ok and result.bad_line == 4


def test_entries_cut_off_the_end_are_caught(tmp_path: Path) -> None:
    log = _log(tmp_path)
    _write(log, _lines(log)[:-2])
    result = log.verify()
    assert not result.ok and result.bad_line == 4 and "end" in (result.problem or "")
    # and a later append does not paper over the cut: it chains from HEAD, not from the file's last line
    log.append("promotion", "model v9", "promoted")
    assert not log.verify().ok


def test_a_garbled_line_is_named(tmp_path: Path) -> None:
    log = _log(tmp_path)
    lines = _lines(log)
    lines[0] = lines[0][:-10]
    _write(log, lines)
    result = log.verify()
    assert not result.ok and result.bad_line == 1 and "JSON" in (result.problem or "")


def _append_many(path: str, worker: int, n: int) -> None:
    log = AuditLog(Path(path))
    for i in range(n):
        log.append("validation", f"batch {worker}-{i}", "passed", details={"worker": worker})


def test_concurrent_writers_keep_one_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit" / "audit.jsonl"
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_append_many, args=(str(path), w, 25)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert all(p.exitcode == 0 for p in procs)
    log = AuditLog(path)
    result = log.verify()
    assert result.ok, result
    assert result.entries == 100
    subjects = {e["subject"] for e in log.entries()}
    assert len(subjects) == 100


def test_cli_verify_names_the_bad_line_and_exits_1(ctloop_home: Path) -> None:
    from ctloop.core.audit import audit_log
    from ctloop.core.settings import get_settings

    log = audit_log(get_settings())
    for i in range(3):
        log.append("drift_trigger", f"window 2026-01-0{i + 1}", "triggered", ["data drift"])
    ok = run_cli("audit", "verify", "--json")
    assert ok.returncode == 0 and json.loads(ok.stdout)["entries"] == 3
    shown = run_cli("audit", "show", "--kind", "drift_trigger", "--json")
    assert [e["subject"] for e in json.loads(shown.stdout)["entries"]] == [
        "window 2026-01-01", "window 2026-01-02", "window 2026-01-03"]
    lines = log.path.read_text().splitlines()
    lines[1] = lines[1].replace("triggered", "suppressed")
    log.path.write_text("\n".join(lines) + "\n")
    bad = run_cli("audit", "verify")
    assert bad.returncode == 1
    assert f"{log.path}:2:" in bad.stdout and "edited" in bad.stdout


def test_unknown_kind_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown audit kind"):
        AuditLog(tmp_path / "a.jsonl").append("coffee", "x", "y")


def test_a_line_with_an_invalid_utf8_byte_is_named(tmp_path: Path) -> None:
    from ctloop.core.audit import AuditLog
    from ctloop.core.errors import AuditTampered

    log = AuditLog(tmp_path / "audit.jsonl")
    for i in range(3):
        log.append("gate", f"v{i}", "passed")
    lines = log.path.read_bytes().splitlines(keepends=True)
    lines[1] = lines[1][:20] + b"\xff" + lines[1][21:]
    log.path.write_bytes(b"".join(lines))
    result = log.verify()
    assert not result.ok and result.bad_line == 2 and "not UTF-8" in (result.problem or "")
    with pytest.raises(AuditTampered, match=r"audit\.jsonl:2: not UTF-8"):
        log.entries()
