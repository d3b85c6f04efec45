from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pandas as pd
import pytest

from ctloop.core.errors import ConfigError, InsufficientData
from ctloop.core.params import load_params
from ctloop.data.simulator import SimulationSpec, simulate_day
from ctloop.data.store import Lake
from ctloop.data.training_set import build_training_set, latest_as_of, select_window
from ctloop.estimators.pipeline import build_pipeline

PARAMS = load_params(Path(__file__).resolve().parents[2] / "models" / "support_escalation.yaml")
D = [date(2026, 1, 1) + timedelta(days=i) for i in range(20)]


def test_window_splits_by_time_and_skips_missing_days() -> None:
    curated = [d for d in D if d != D[12]]  # a quarantined day is simply absent
    w = select_window(curated, as_of=D[15], window_days=10, test_days=2)
    assert w.start == D[5] and w.end == D[15]
    assert w.test_days == (D[13], D[14])
    assert max(w.train_days) < min(w.test_days)
    assert D[12] not in w.train_days and D[15] not in w.train_days + w.test_days


def test_too_few_days_names_the_window() -> None:
    with pytest.raises(InsufficientData, match=r"\[2026-01-09, 2026-01-11\) holds 1 curated day"):
        select_window([D[9]], as_of=D[10], window_days=2, test_days=1)


def test_latest_as_of_ignores_future_partitions() -> None:
    assert latest_as_of([*D[:5], D[10]], reference=D[7]) == D[5]
    with pytest.raises(InsufficientData):
        latest_as_of([D[10]], reference=D[5])


def _lake_with(tmp_path: Path, days: list[date], rows: int = 300, **spec: object) -> Lake:
    lake = Lake(tmp_path / "lake")
    for d in days:
        lake.write_curated(d, simulate_day(d, SimulationSpec(rows=rows, **spec)), {"rows": rows})  # type: ignore[arg-type]
    return lake


def test_no_test_row_leaks_into_training(tmp_path: Path) -> None:
    lake = _lake_with(tmp_path, D[:10])
    params = PARAMS.model_copy(update={"training": PARAMS.training.model_copy(update={"min_rows": 100})})
    train, test, _w = build_training_set(lake, params, as_of=D[10], window_days=10)
    assert set(train["ticket_id"]).isdisjoint(test["ticket_id"])
    assert train["created_at"].max() < test["created_at"].min()
    assert len(test) == 600 and len(train) == 2400


def test_single_class_and_too_few_rows_are_typed_errors(tmp_path: Path) -> None:
    lake = _lake_with(tmp_path, D[:6])
    for d in D[:6]:
        f = lake.read_curated([d])
        lake.write_curated(d, f.assign(escalated=0), {"rows": len(f)})
    params = PARAMS.model_copy(update={"training": PARAMS.training.model_copy(update={"min_rows": 100})})
    with pytest.raises(InsufficientData, match="single class"):
        build_training_set(lake, params, as_of=D[6], window_days=6)
    with pytest.raises(InsufficientData, match="fewer than 2000"):
        build_training_set(_lake_with(tmp_path / "b", D[:6], rows=100), PARAMS, as_of=D[6], window_days=6)


@pytest.mark.parametrize("model", ["logistic_regression", "hist_gradient_boosting"])
def test_pipeline_is_built_from_the_contract_and_survives_unseen_and_missing_values(model: str) -> None:
    pipe = build_pipeline(PARAMS.dataset, model, seed=1)
    train = pd.concat([simulate_day(d, SimulationSpec(rows=400)) for d in D[:3]])
    pipe.fit(train[PARAMS.dataset.features], train["escalated"])
    cols = pipe.named_steps["features"].transformers_
    assert set(cols[0][2]) == set(PARAMS.dataset.numeric_features)
    assert set(cols[1][2]) == set(PARAMS.dataset.categorical_features)
    odd = train[PARAMS.dataset.features].head(3).copy()
    odd.loc[odd.index[0], "language"] = "zh"
    odd["sentiment"] = odd["sentiment"].astype("float64")
    odd.loc[odd.index[1], "sentiment"] = float("nan")
    scores = pipe.predict_proba(odd)[:, 1]
    assert ((scores >= 0) & (scores <= 1)).all()


def test_unknown_model_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"training\.model: unknown model 'random_forest'"):
        build_pipeline(PARAMS.dataset, "random_forest")
