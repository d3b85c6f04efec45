"""``ctloop golden add --from-log``: a logged production request becomes a reviewed golden case; unknown
or duplicate ids are refused naming them; nothing else in the file changes."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from tests.conftest import run_cli

pytestmark = pytest.mark.integration


def test_golden_add_from_the_prediction_log(use_params, ctloop_home: Path) -> None:  # type: ignore[no-untyped-def]
    from ctloop.core.params import get_params
    from ctloop.core.settings import get_settings
    from ctloop.data.predictions import write_predictions
    from ctloop.data.simulator import SimulationSpec, simulate_day
    from ctloop.data.store import Lake

    golden = ctloop_home.parent / "golden.jsonl"
    golden.write_text('{"case_id": "seed-1", "expected": 0, "features": {}}\n')
    use_params(evaluation={"golden": {"path": str(golden)}})
    params, settings = get_params(), get_settings()
    day = date(2026, 2, 3)
    batch = simulate_day(day, SimulationSpec(rows=50))
    log = batch[params.dataset.features].assign(
        request_id=[f"req-{i}" for i in range(50)], ts=datetime(2026, 2, 3, 10, tzinfo=UTC), model_name="m",
        model_version="4", route="champion", prediction=0, score=0.12, latency_ms=3.0)
    write_predictions(Lake(settings.lake_root), log, "test")

    added = run_cli("golden", "add", "req-7", "req-9", "--from-log", "--label", "1", "--note", "missed escalation",
                    "--json")
    assert added.returncode == 0, added.stderr
    assert json.loads(added.stdout)["added"] == ["prod-req-7", "prod-req-9"]
    lines = golden.read_text().splitlines()
    assert lines[0] == '{"case_id": "seed-1", "expected": 0, "features": {}}'
    case = json.loads(lines[1])
    assert case["expected"] == 1 and case["note"] == "missed escalation" and "v4" in case["source"]
    assert case["features"]["sentiment"] == pytest.approx(float(batch.iloc[7]["sentiment"]))

    missing = run_cli("golden", "add", "req-999", "--label", "1", "--note", "x")
    assert missing.returncode == 2 and "req-999" in missing.stderr
    duplicate = run_cli("golden", "add", "req-7", "--label", "1", "--note", "again")
    assert duplicate.returncode == 2 and "prod-req-7" in duplicate.stderr
    assert len(golden.read_text().splitlines()) == 3
