"""Bad input to the training loop: clear errors naming the window or the key, and the champion untouched."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
import yaml

from ctloop.core.params import get_params, read_spec
from ctloop.core.settings import get_settings
from ctloop.data.simulator import SimulationSpec, simulate_day
from ctloop.data.store import Lake
from ctloop.registry.mlflow_registry import CHAMPION, alias_version, configure_mlflow, promote
from tests.conftest import run_cli

pytestmark = pytest.mark.integration


@pytest.fixture
def with_champion(ctloop_home: Path):  # type: ignore[no-untyped-def]
    settings = get_settings()
    client = configure_mlflow(settings)
    name = get_params().training.registered_model
    client.create_registered_model(name)
    client.create_model_version(name, source="file:///nonexistent/v1")
    promote(client, settings, name, "1", None, "fixture champion")
    return client, name


def test_empty_window(with_champion, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    client, name = with_champion
    r = run_cli("prepare", "--out-dir", str(tmp_path / "ts"), "--as-of", "2026-01-20")
    assert r.returncode == 1
    assert "training window [2026-01-06, 2026-01-20) holds 0 curated day(s)" in r.stderr
    assert alias_version(client, name, CHAMPION) == "1"


def test_window_with_only_quarantined_days(with_champion, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    client, name = with_champion
    lake = Lake(get_settings().lake_root)
    for day in (date(2026, 1, 5), date(2026, 1, 6)):
        src = tmp_path / f"{day}.parquet"
        simulate_day(day, SimulationSpec(rows=50)).to_parquet(src)
        lake.write_quarantine(day, lake.write_raw(day, src), {"success": False})
    r = run_cli("prepare", "--out-dir", str(tmp_path / "ts"))
    assert r.returncode == 1 and "no curated partition" in r.stderr
    assert alias_version(client, name, CHAMPION) == "1"


def test_params_naming_an_unknown_model(with_champion, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    client, name = with_champion
    data = read_spec(get_settings().spec_path)
    data["training"]["model"] = "random_forest"
    bad = tmp_path / "params.yaml"
    bad.write_text(yaml.safe_dump(data))
    r = run_cli("train", "--data-dir", str(tmp_path), env={"CTLOOP_PARAMS": str(bad)})
    assert r.returncode == 2
    assert "training.model" in r.stderr and str(bad) in r.stderr
    assert alias_version(client, name, CHAMPION) == "1"


def test_promote_unknown_version(with_champion) -> None:  # type: ignore[no-untyped-def]
    client, name = with_champion
    r = run_cli("promote", "99", "--reason", "typo")
    assert r.returncode == 2 and "has no version 99" in r.stderr
    assert alias_version(client, name, CHAMPION) == "1"
