from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ctloop.core.errors import ConfigError
from ctloop.core.params import load_params, read_spec
from ctloop.core.settings import Settings

REPO = Path(__file__).resolve().parents[2]
SPEC = REPO / "models" / "support_escalation.yaml"


def _write(tmp_path: Path, mutate) -> Path:  # type: ignore[no-untyped-def]
    data = read_spec(SPEC)
    mutate(data)
    p = tmp_path / "params.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


def test_repo_params_load_and_derive_features() -> None:
    params = load_params(SPEC)
    ds = params.dataset
    assert ds.target == "escalated" and ds.id not in ds.features and ds.timestamp not in ds.features
    assert "sentiment" in ds.numeric_features and "channel" in ds.categorical_features


@pytest.mark.parametrize(
    ("mutate", "key"),
    [
        (lambda d: d["dataset"]["columns"]["sentiment"].update(type="decimal"), "dataset.columns.sentiment.type"),
        (lambda d: d["dataset"].update(target="outcome"), "dataset.target names column 'outcome'"),
        (lambda d: d["validation"].pop("suite"), "validation.suite"),
        (lambda d: d["validation"].update(null_tolerance=1.5), "validation.null_tolerance"),
        (lambda d: d["source"].update(kind="files"), "source.path is required"),
        (lambda d: d.update(extra_section={}), "extra_section"),
        (lambda d: d["dataset"].update(slices=["sentiment"]), "dataset.slices"),
    ],
)
def test_bad_params_name_the_key(tmp_path: Path, mutate, key: str) -> None:  # type: ignore[no-untyped-def]
    path = _write(tmp_path, mutate)
    with pytest.raises(ConfigError) as err:
        load_params(path)
    assert key in str(err.value) and str(path) in str(err.value)


def test_unreadable_params(tmp_path: Path) -> None:
    bad = tmp_path / "params.yaml"
    bad.write_text("dataset: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_params(bad)
    with pytest.raises(ConfigError, match="not found"):
        load_params(tmp_path / "missing.yaml")


def test_settings_come_from_ctloop_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CTLOOP_HOME", str(tmp_path / "h"))
    monkeypatch.setenv("CTLOOP_SCHEDULE_END", "2030-02-03")
    monkeypatch.delenv("CTLOOP_PARAMS", raising=False)
    s = Settings()
    assert s.home == (tmp_path / "h").resolve()
    assert s.model == "support_escalation" and s.spec_path == s.models_dir / "support_escalation.yaml"
    assert s.lake_root == s.home / "lake" / "support_escalation", "each model's part of the lake"
    assert s.tracking_uri == f"sqlite:///{s.home / 'mlflow' / 'mlflow.db'}"
    assert s.schedule_end is not None and s.schedule_end.isoformat() == "2030-02-03"
    monkeypatch.setenv("CTLOOP_SCHEDULE_END", "not-a-date")
    with pytest.raises(ValueError, match="schedule_end"):
        Settings()


def test_the_mlflow_run_link_goes_to_the_tracking_server_or_to_mlflow_ui(tmp_path: Path) -> None:
    embedded = Settings(home=tmp_path)
    assert embedded.mlflow_run_url("3", "abc") == "http://localhost:5000/#/experiments/3/runs/abc"  # `mlflow ui`
    served = Settings(home=tmp_path, mlflow_tracking_uri="http://mlflow:5000/")
    assert served.mlflow_run_url("3", "abc") == "http://mlflow:5000/#/experiments/3/runs/abc"
    chosen = Settings(home=tmp_path, mlflow_tracking_uri="http://mlflow:5000", mlflow_ui_url="https://ml.example.com")
    assert chosen.mlflow_run_url("3", "abc") == "https://ml.example.com/#/experiments/3/runs/abc"


def test_a_promotion_that_replaces_a_champion_rolls_out_by_default() -> None:
    from ctloop.core.params import PromotionSpec

    assert PromotionSpec().mode == "rollout"
