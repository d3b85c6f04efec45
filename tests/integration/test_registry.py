"""Alias moves and compare-and-set promotion against a real MLflow SQLite registry."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ctloop.core.errors import GateRejected, PromotionConflict
from ctloop.core.params import get_params
from ctloop.core.settings import get_settings
from ctloop.registry.mlflow_registry import (
    CHAMPION,
    PREVIOUS,
    alias_version,
    configure_mlflow,
    gate_decision_of,
    promote,
)
from tests.conftest import gate_version, version_with_run

pytestmark = pytest.mark.integration


@pytest.fixture
def registry(ctloop_home: Path):  # type: ignore[no-untyped-def]
    settings = get_settings()
    client = configure_mlflow(settings)
    name = get_params().training.registered_model
    client.create_registered_model(name)
    for i in range(1, 5):
        version_with_run(client, name, f"file:///nonexistent/v{i}")
        gate_version(client, name, str(i), i != 4, None, [f"reason {i}"])
    return client, settings, name


def test_alias_moves_keep_previous(registry) -> None:  # type: ignore[no-untyped-def]
    client, settings, name = registry
    promote(client, settings, name, "1", None, "first")
    promote(client, settings, name, "2", "1", "better")
    assert alias_version(client, name, CHAMPION) == "2" and alias_version(client, name, PREVIOUS) == "1"
    tags = client.get_model_version(name, "2").tags
    assert tags["ctloop.promoted_reason"] == "better" and tags["ctloop.replaced"] == "1"


def test_compare_and_set_refuses_a_stale_expectation(registry) -> None:  # type: ignore[no-untyped-def]
    client, settings, name = registry
    promote(client, settings, name, "1", None, "first")
    promote(client, settings, name, "2", "1", "second")
    with pytest.raises(PromotionConflict, match="champion is v2, not v1"):
        promote(client, settings, name, "3", "1", "stale gate")
    assert alias_version(client, name, CHAMPION) == "2"


def test_two_concurrent_promotions_exactly_one_wins(registry) -> None:  # type: ignore[no-untyped-def]
    client, settings, name = registry
    promote(client, settings, name, "1", None, "first")
    code = (
        "import sys\n"
        "from ctloop.core.errors import PromotionConflict\n"
        "from ctloop.registry.mlflow_registry import configure_mlflow, promote\n"
        "from ctloop.core.settings import get_settings\n"
        "s = get_settings(); c = configure_mlflow(s)\n"
        "try:\n"
        f"    promote(c, s, {name!r}, sys.argv[1], '1', 'race'); print('won')\n"
        "except PromotionConflict:\n"
        "    print('lost')\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", code, v], stdout=subprocess.PIPE, text=True, env=os.environ.copy())
             for v in ("2", "3")]
    outcomes = sorted(p.communicate(timeout=120)[0].strip() for p in procs)
    assert outcomes == ["lost", "won"]
    assert alias_version(client, name, CHAMPION) in ("2", "3")
    assert alias_version(client, name, PREVIOUS) == "1"


def test_rejected_version_keeps_its_reasons_and_is_not_promoted(registry) -> None:  # type: ignore[no-untyped-def]
    from ctloop.flows.promotion import promote_version

    client, settings, name = registry
    promote(client, settings, name, "1", None, "first")
    with pytest.raises(GateRejected, match="failed its gate: reason 4"):
        promote_version(get_params(), settings, "4", "please")
    assert alias_version(client, name, CHAMPION) == "1"
    assert gate_decision_of(client, name, "4")["reasons"] == ["reason 4"]
    forced = promote_version(get_params(), settings, "4", "incident override", force=True)
    assert forced["reason"].startswith("FORCED: incident override (gate FAILED: reason 4")
    assert alias_version(client, name, CHAMPION) == "4" and alias_version(client, name, PREVIOUS) == "1"


def test_a_stale_gate_decision_is_not_promoted(registry) -> None:  # type: ignore[no-untyped-def]
    from ctloop.flows.promotion import promote_version

    client, settings, name = registry
    promote(client, settings, name, "1", None, "first")  # v3's gate decision was made with no champion
    with pytest.raises(PromotionConflict, match="judged it against champion vNone, but the champion is now v1"):
        promote_version(get_params(), settings, "3", "late approval")
    assert alias_version(client, name, CHAMPION) == "1"
