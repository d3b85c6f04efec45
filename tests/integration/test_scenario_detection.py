"""Detection on every simulator scenario through the real monitoring path: a champion trained and promoted in
a real MLflow store, simulated traffic in the prediction log with delayed labels, Evidently, the policy."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import pytest

from ctloop.core.params import load_params
from ctloop.core.settings import Settings
from ctloop.data.simulator import SimulationSpec, simulate_day
from ctloop.data.store import Lake
from ctloop.dev.traffic import TrafficSpec, simulate_traffic
from ctloop.flows.monitor import assess_window
from tests.conftest import write_params

pytestmark = pytest.mark.integration

T0 = date(2026, 3, 2)  # first day of production traffic
DRIFT = T0 + timedelta(days=7)


def _world(root: Path, settings: Settings, scenario: str, model_name: str):  # type: ignore[no-untyped-def]
    """Curated training data of a world (stable or seasonal), then a promoted champion trained on it."""
    from ctloop.flows.promotion import promote_version
    from ctloop.flows.retrain import describe_trigger, evaluate, gate, prepare, train

    params_file = write_params(root / f"params-{model_name}.yaml", training={"registered_model": model_name},
                               source={"scenario": scenario})
    params = load_params(params_file)
    lake = Lake(root / f"curated-{model_name}")
    for i in range(1, 15):
        day = T0 - timedelta(days=i)
        lake.write_curated(day, simulate_day(day, SimulationSpec(scenario=scenario, rows=2000)), {"rows": 2000})
    data = root / f"ts-{model_name}"
    prepare(params, lake, T0, 14, data, describe_trigger(None, "test world", None))
    trained = train(params, settings, data)
    evaluate(params, settings, data, trained.version, trained.run_id)
    assert gate(params, settings, data / "evaluation.json").passed
    promote_version(params, settings, trained.version, "test champion")
    return params


@pytest.fixture(scope="module")
def worlds(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple]:  # type: ignore[type-arg]
    root = tmp_path_factory.mktemp("scenarios")
    settings = Settings(home=root / "home")
    yield settings, root, {"stable": _world(root, settings, "stable", "escalation_stable"),
                           "seasonal": _world(root, settings, "seasonal", "escalation_seasonal")}


def _run(worlds, scenario: str, days: int) -> list[dict]:  # type: ignore[no-untyped-def]
    settings, root, params_by_world = worlds
    params = params_by_world["seasonal" if scenario == "seasonal" else "stable"]
    lake = Lake(root / f"traffic-{scenario}")
    simulate_traffic(TrafficSpec(T0, days, scenario, DRIFT, rows_per_day=2000, label_delay_days=2,
                                 label_fraction=0.5), params, settings, lake)
    return [assess_window(lake, params, settings, T0 + timedelta(days=i)).to_dict() for i in range(days)]


@pytest.mark.parametrize("scenario", ["stable", "seasonal"])
def test_no_trigger_over_14_windows(worlds, scenario: str) -> None:  # type: ignore[no-untyped-def]
    summaries = _run(worlds, scenario, 14)
    assert [s["decision"]["status"] for s in summaries] == ["no_drift"] * 14, [s["decision"]["reasons"] for s in summaries]


@pytest.mark.parametrize(
    ("scenario", "evidence"),
    [
        ("covariate_shift", "data drift"),
        ("upstream_bug", "prediction drift"),
        ("new_category", "new categories in language"),
        ("concept_shift", "quality drop"),
        ("label_shift", "label shift"),
    ],
)
def test_drift_is_detected_within_two_windows(worlds, scenario: str, evidence: str) -> None:  # type: ignore[no-untyped-def]
    summaries = _run(worlds, scenario, 10)  # windows T0 .. DRIFT+2
    before, after = summaries[:7], summaries[7:]
    assert not any(s["decision"]["trigger"] for s in before), [s["decision"] for s in before]
    first = next(i for i, s in enumerate(after) if s["decision"]["trigger"])
    assert first <= 2
    assert any(evidence in r for r in after[first]["decision"]["reasons"]), after[first]["decision"]["reasons"]
    assert Path(after[first]["report"]).exists()


def test_concept_shift_is_caught_by_quality_while_inputs_do_not_drift(worlds) -> None:  # type: ignore[no-untyped-def]
    summaries = _run(worlds, "concept_shift", 10)
    assert all(s["drift_share"] == 0 and not s["prediction_drift"] for s in summaries)
    caught = next(s for s in summaries if s["decision"]["trigger"])
    assert caught["window"] == (DRIFT + timedelta(days=2)).isoformat()  # labels of DRIFT arrive two days later
    assert caught["quality_window"] == DRIFT.isoformat()
    assert caught["quality"] < caught["reference_quality"] - 0.05


def test_one_truth_per_window_report_summary_and_mlflow_agree(worlds) -> None:  # type: ignore[no-untyped-def]
    """The window that triggered: its Evidently report opens with ctloop's decision, built from the very
    summary.json beside it; the MLflow run holds the same figures; the thresholds are the calibrated ones,
    column by column, and the model's score is judged apart from the features' share."""
    import html
    import json
    import re

    from ctloop.registry.mlflow_registry import configure_mlflow

    settings = worlds[0]
    summaries = _run(worlds, "covariate_shift", 9)
    triggered = next(s for s in summaries if s["decision"]["trigger"])
    report = Path(triggered["report"])
    text = report.read_text()
    assert text.count('id="ctloop-decision"') == 1 and "DRIFT: retrain triggered" in text
    embedded = json.loads(html.unescape(re.search(
        r'<script type="application/json" id="ctloop-summary">(.*?)</script>', text, re.S).group(1)))
    on_disk = json.loads((report.parent / "summary.json").read_text())
    assert embedded == on_disk == json.loads(json.dumps(triggered, default=str))
    columns = on_disk["drift"]["columns"]
    assert "score" in columns and on_disk["drift_share"] == pytest.approx(
        sum(v["drift"] for c, v in columns.items() if c != "score") / (len(columns) - 1))
    assert on_disk["thresholds"].startswith("calibrated on v")
    assert all(v["threshold"] >= 0.1 for v in columns.values() if "p_value" not in v["method"])
    for reason in on_disk["decision"]["reasons"]:
        assert html.escape(reason) in text
    client = configure_mlflow(settings)
    [run] = client.search_runs([e.experiment_id for e in client.search_experiments()],
                               f"tags.`ctloop.window` = '{on_disk['window']}'",
                               order_by=["attributes.start_time DESC"], max_results=1)  # this window's, just logged
    assert run.data.metrics["drift_share"] == pytest.approx(on_disk["drift_share"])
    assert run.data.metrics["triggered"] == 1.0
