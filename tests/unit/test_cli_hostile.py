"""The CLI's argument parsing under generated hostile input: every verb that takes a date or a path
answers a bad one with exit 2 and one line naming the option or the file, never a traceback."""

from __future__ import annotations

import contextlib
import io
import sys
from datetime import date
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

DATE_VERBS = {
    "ingest": ["ingest", "--date"],
    "monitor": ["monitor", "--date"],
    "prepare": ["prepare", "--out-dir", "/nonexistent/ctloop-out", "--as-of"],
    "simulate traffic": ["simulate", "traffic", "--start"],
    "golden add": ["golden", "add", "R1", "--note", "why", "--until"],
}
HOSTILE = settings(max_examples=60, deadline=None, database=None, derandomize=True,
                   suppress_health_check=list(HealthCheck))


def _is_date(value: str) -> bool:
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return len(value) == 10


def run_main(*args: str) -> tuple[int, str, str]:
    """``ctloop ARGS`` in this process (the same ``main`` the console script runs)."""
    from ctloop.cli import main

    out, err = io.StringIO(), io.StringIO()
    argv = sys.argv
    sys.argv = ["ctloop", *args]
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main()
                code = 0
            except SystemExit as e:
                code = int(e.code or 0)
    finally:
        sys.argv = argv
    return code, out.getvalue(), err.getvalue()


@HOSTILE
@given(verb=st.sampled_from(sorted(DATE_VERBS)),
       value=st.text(st.characters(exclude_categories=["Cs"]), max_size=30).filter(lambda s: not _is_date(s))
       | st.sampled_from(["../../etc", "2026-13-45", "", "2026-02-30", "0000-01-01", "9999-99-99", "2026/01/05"]))
def test_a_bad_date_is_exit_2_and_one_line(ctloop_home: Path, verb: str, value: str) -> None:
    code, out, err = run_main(*DATE_VERBS[verb], value)
    assert code == 2, (verb, value, out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ctloop: error:"), (verb, value, err)
    assert "Traceback" not in out + err


CONTENT = st.one_of(st.binary(max_size=300), st.just(b""), st.just(b"PAR1" + b"\x00" * 40),
                    st.text(max_size=200).map(lambda s: s.encode("utf-8", "surrogatepass")))


@HOSTILE
@given(content=CONTENT | st.none(), suffix=st.sampled_from([".parquet", ".csv", ".txt", ""]),
       verb=st.sampled_from(["validate", "drift"]))
def test_a_bad_file_is_named_in_one_line(ctloop_home: Path, tmp_path_factory: pytest.TempPathFactory,
                                         content: bytes | None, suffix: str, verb: str) -> None:
    folder = tmp_path_factory.mktemp("hostile-file")
    path = folder / f"input{suffix}"
    if content is not None:  # None: the file does not exist
        path.write_bytes(content)
    args = [verb, str(path)] if verb == "validate" else [verb, "--reference", str(path), "--current", str(path)]
    code, out, err = run_main(*args)
    assert "Traceback" not in out + err
    assert code in (1, 2), (content, suffix, out, err)
    if code == 2:
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("ctloop: error:") and str(path) in lines[0], err
