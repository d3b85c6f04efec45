"""The CLI contract (DESIGN.md): exit 0 ok, 1 check failed, 2 bad input naming the file; --json prints one object."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import run_cli


def test_simulate_is_byte_deterministic(tmp_path: Path, ctloop_home: Path) -> None:
    a, b = tmp_path / "a.parquet", tmp_path / "b.parquet"
    for out in (a, b):
        r = run_cli("simulate", "batch", "--date", "2026-01-05", "--scenario", "covariate_shift",
                    "--drift-start", "2026-01-01", "--rows", "300", "--out", str(out))
        assert r.returncode == 0, r.stderr
    assert a.read_bytes() == b.read_bytes()


def test_validate_exit_codes_and_json(tmp_path: Path, ctloop_home: Path) -> None:
    good, bad = tmp_path / "good.parquet", tmp_path / "bad.parquet"
    run_cli("simulate", "batch", "--date", "2026-01-05", "--rows", "500", "--out", str(good))
    run_cli("simulate", "batch", "--date", "2026-01-05", "--rows", "500", "--scenario", "schema_break",
            "--drift-start", "2026-01-05", "--out", str(bad))

    ok = run_cli("validate", str(good), "--date", "2026-01-05", "--json")
    assert ok.returncode == 0, ok.stderr
    body = json.loads(ok.stdout)  # exactly one JSON object on stdout
    assert body["success"] is True and body["row_count"] == 500 and body["failed_expectations"] == []

    failed = run_cli("validate", str(bad), "--date", "2026-01-05", "--json")
    assert failed.returncode == 1
    body = json.loads(failed.stdout)
    assert body["success"] is False
    assert "sentiment" in {f["column"] for f in body["failed_expectations"]}

    missing = run_cli("validate", str(tmp_path / "nope.parquet"), "--json")
    assert missing.returncode == 2 and missing.stdout == ""
    assert str(tmp_path / "nope.parquet") in missing.stderr and len(missing.stderr.strip().splitlines()) == 1

    fake = tmp_path / "fake.parquet"
    fake.write_text("ticket_id,created_at\nT1,2026-01-05\n")
    r = run_cli("validate", str(fake))
    assert r.returncode == 2 and "named .parquet but holds CSV text" in r.stderr


def test_bad_params_exit_2_naming_the_key(tmp_path: Path, ctloop_home: Path) -> None:
    bad = tmp_path / "params.yaml"
    bad.write_text("dataset: {name: x}\nvalidation: {suite: s}\n")
    r = run_cli("validate", "whatever.parquet", env={"CTLOOP_PARAMS": str(bad)})
    assert r.returncode == 2 and "dataset.id" in r.stderr and str(bad) in r.stderr


def test_unknown_scenario_is_a_usage_error(tmp_path: Path, ctloop_home: Path) -> None:
    r = run_cli("simulate", "batch", "--date", "2026-01-05", "--scenario", "meteor", "--out", str(tmp_path / "x.parquet"))
    assert r.returncode == 2 and "unknown scenario" in r.stderr
