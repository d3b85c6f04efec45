"""`ctloop drift`: the output contract, --fail-on-drift, column types from the contract or inferred."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ctloop.data.simulator import SimulationSpec, simulate_day
from tests.conftest import run_cli

pytestmark = pytest.mark.integration


def test_contract_columns_and_fail_on_drift(tmp_path: Path, ctloop_home: Path) -> None:
    ref, same, shifted = tmp_path / "ref.parquet", tmp_path / "same.parquet", tmp_path / "shifted.parquet"
    simulate_day(date(2026, 1, 5), SimulationSpec(rows=4000)).to_parquet(ref)
    simulate_day(date(2026, 1, 6), SimulationSpec(rows=4000)).to_parquet(same)
    simulate_day(date(2026, 1, 6), SimulationSpec(rows=4000, scenario="covariate_shift",
                                                  drift_start=date(2026, 1, 1))).to_parquet(shifted)

    quiet = run_cli("drift", "--reference", str(ref), "--current", str(same), "--json", "--fail-on-drift")
    assert quiet.returncode == 0, quiet.stderr
    body = json.loads(quiet.stdout)
    assert set(body) == {"dataset_drift", "drift_share", "columns", "rows", "sampled", "compared", "why",
                         "thresholds"}
    assert body["why"].startswith("the contract's 10 features") and body["thresholds"] == "fixed (Evidently's)"
    assert body["rows"] == {"reference": 4000, "current": 4000} and body["dataset_drift"] is False
    assert set(body["columns"]) == {"channel", "product_area", "customer_tier", "language", "message_length",
                                    "sentiment", "prior_contacts_30d", "account_age_days",
                                    "first_response_minutes", "hour_of_day"}, "the contract's features only"
    assert body["columns"]["sentiment"]["method"].startswith("Wasserstein")
    assert body["columns"]["channel"]["method"].startswith("Jensen-Shannon")
    assert set(body["columns"]["channel"]) == {"method", "score", "threshold", "drift"}

    report = tmp_path / "report.html"
    drifted = run_cli("drift", "--reference", str(ref), "--current", str(shifted), "--json", "--fail-on-drift",
                      "--report", str(report))
    assert drifted.returncode == 1
    body = json.loads(drifted.stdout)
    assert body["dataset_drift"] is True and body["drift_share"] == 0.2
    assert {c for c, v in body["columns"].items() if v["drift"]} == {"message_length", "product_area"}
    assert report.stat().st_size > 10_000


def test_types_are_inferred_outside_the_contract(tmp_path: Path, ctloop_home: Path) -> None:
    rng = np.random.default_rng(0)
    ref = pd.DataFrame({"x": rng.normal(0, 1, 3000), "flag": rng.choice([True, False], 3000),
                        "colour": rng.choice(["red", "blue"], 3000)})
    cur = ref.assign(x=ref["x"] + 2.0)
    ref.to_parquet(tmp_path / "r.parquet")
    cur.to_parquet(tmp_path / "c.parquet")
    r = run_cli("drift", "--reference", str(tmp_path / "r.parquet"), "--current", str(tmp_path / "c.parquet"), "--json")
    body = json.loads(r.stdout)
    assert body["columns"]["x"]["method"].startswith("Wasserstein") and body["columns"]["x"]["drift"] is True
    assert not body["columns"]["colour"]["method"].startswith("Wasserstein")
    assert not body["columns"]["flag"]["method"].startswith("Wasserstein")


def test_missing_input_names_the_file(tmp_path: Path, ctloop_home: Path) -> None:
    r = run_cli("drift", "--reference", str(tmp_path / "nope"), "--current", str(tmp_path / "nope2"), "--json")
    assert r.returncode == 2 and str(tmp_path / "nope") in r.stderr and r.stdout == ""


def test_files_without_the_contract_are_compared_on_every_common_column(tmp_path: Path, ctloop_home: Path) -> None:
    """Twelve columns of someone else's data, one of which happens to be called like a contract feature:
    judged on all twelve, not on that one (which once reported drift_share 1.0)."""
    rng = np.random.default_rng(3)
    ref = pd.DataFrame({f"m{i}": rng.normal(0, 1, 3000) for i in range(11)} | {"channel": rng.choice(["a", "b"], 3000)})
    cur = ref.sample(frac=1.0, random_state=1).assign(channel=rng.choice(["a", "b", "c"], 3000))
    ref.to_parquet(tmp_path / "r.parquet")
    cur.to_parquet(tmp_path / "c.parquet")
    body = json.loads(run_cli("drift", "--reference", str(tmp_path / "r.parquet"), "--current",
                              str(tmp_path / "c.parquet"), "--json").stdout)
    assert set(body["compared"]) == set(ref.columns) and "share (12" in body["why"]
    assert body["drift_share"] == pytest.approx(1 / 12)
