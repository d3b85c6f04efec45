"""History, rollback and manual approval against a real MLflow SQLite registry: alias moves are recorded
in order, rollback is one compare-and-set step that keeps two fallbacks, a rolled-back version needs a
new gate pass, manual mode holds a candidate, and a rollback racing a promotion leaves one consistent
champion."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ctloop.core.errors import GateRejected, PromotionConflict, RegistryError
from ctloop.core.params import get_params
from ctloop.core.settings import get_settings
from ctloop.flows.promotion import hold_candidate, promote_version, rollback_version
from ctloop.registry.mlflow_registry import (
    CANDIDATE,
    CHAMPION,
    PREVIOUS,
    PREVIOUS_2,
    alias_version,
    configure_mlflow,
    read_history,
)
from tests.conftest import gate_version, run_cli, version_with_run

pytestmark = pytest.mark.integration


def _gate(client, name: str, version: str, passed: bool, champion: str | None) -> None:  # type: ignore[no-untyped-def]
    gate_version(client, name, version, passed, champion, [f"gate {version}"])


@pytest.fixture
def registry(ctloop_home: Path):  # type: ignore[no-untyped-def]
    settings, params = get_settings(), get_params()
    client = configure_mlflow(settings)
    name = params.training.registered_model
    client.create_registered_model(name)
    for i in range(1, 6):
        version_with_run(client, name, f"file:///nonexistent/v{i}")
    return client, settings, params, name


def _chain(client, settings, params, name, versions: list[str]) -> None:  # type: ignore[no-untyped-def]
    champion = None
    for v in versions:
        _gate(client, name, v, True, champion)
        promote_version(params, settings, v, f"promote v{v}", expected_champion=champion)
        champion = v


def _aliases(client, name) -> tuple:  # type: ignore[no-untyped-def,type-arg]
    return tuple(alias_version(client, name, a) for a in (CHAMPION, PREVIOUS, PREVIOUS_2))


def test_two_previous_champions_stay_loadable_and_history_is_in_order(registry) -> None:  # type: ignore[no-untyped-def]
    client, settings, params, name = registry
    _chain(client, settings, params, name, ["1", "2", "3", "4"])
    assert _aliases(client, name) == ("4", "3", "2")
    history = read_history(settings, name)
    assert [h["kind"] for h in history] == ["promote"] * 4
    assert [h["reason"] for h in history] == ["promote v1", "promote v2", "promote v3", "promote v4"]
    last = {m["alias"]: (m["from"], m["to"]) for m in history[-1]["moves"]}
    assert last == {"champion": ("3", "4"), "previous": ("2", "3"), "previous-2": ("1", "2")}
    shown = run_cli("history", "--json")
    assert shown.returncode == 0 and len(json.loads(shown.stdout)["history"]) == 4


def test_rollback_by_cli_restores_previous_and_revokes_the_gate_pass(registry) -> None:  # type: ignore[no-untyped-def]
    client, settings, params, name = registry
    _chain(client, settings, params, name, ["1", "2", "3"])
    done = run_cli("rollback", "--reason", "errors up after release", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["rolled_back"] == "3"
    assert _aliases(client, name) == ("2", "1", None)
    tags = client.get_model_version(name, "3").tags
    assert tags["ctloop.rolled_back_reason"] == "errors up after release" and "ctloop.gate_decision" not in tags
    # the rolled-back version cannot come back without a new gate pass
    with pytest.raises(GateRejected):
        promote_version(params, settings, "3", "try again", expected_champion="2")
    assert run_cli("promote", "3", "--reason", "again").returncode == 1
    _gate(client, name, "3", True, "2")
    promote_version(params, settings, "3", "fixed and re-gated")
    assert alias_version(client, name, CHAMPION) == "3"
    kinds = [h["kind"] for h in read_history(settings, name)]
    assert kinds == ["promote", "promote", "promote", "rollback", "promote"]


def test_rollback_to_a_named_version_and_refusals(registry) -> None:  # type: ignore[no-untyped-def]
    client, settings, params, name = registry
    with pytest.raises(RegistryError, match="no @champion"):
        rollback_version(params, settings, None, "nothing yet")
    _chain(client, settings, params, name, ["1", "2", "3", "4"])
    rollback_version(params, settings, "2", "v3 and v4 share the bad feature")
    assert _aliases(client, name) == ("2", "3", None)
    with pytest.raises(PromotionConflict, match="already the champion"):
        rollback_version(params, settings, "2", "again")
    with pytest.raises(RegistryError, match="no version 99"):
        rollback_version(params, settings, "99", "typo")
    assert run_cli("rollback", "--reason", "x", "--to", "2").returncode == 1


def test_manual_mode_holds_a_candidate_and_approval_refuses_a_failed_gate(registry) -> None:  # type: ignore[no-untyped-def]
    client, settings, params, name = registry
    _chain(client, settings, params, name, ["1"])
    _gate(client, name, "2", True, "1")
    hold_candidate(params, settings, "2", "weekly retrain")
    assert alias_version(client, name, CANDIDATE) == "2" and alias_version(client, name, CHAMPION) == "1"
    _gate(client, name, "3", False, "1")
    refused = run_cli("approve", "3", "--reason", "looks fine to me")
    assert refused.returncode == 1 and "failed its gate" in refused.stderr
    approved = run_cli("approve", "2", "--reason", "reviewed the suites", "--json")
    assert approved.returncode == 0, approved.stderr
    assert alias_version(client, name, CHAMPION) == "2" and alias_version(client, name, CANDIDATE) is None
    audit = run_cli("audit", "show", "--kind", "approval", "--json")
    outcomes = [e["outcome"] for e in json.loads(audit.stdout)["entries"]]
    assert outcomes == ["refused", "approved"]


def test_a_rollback_racing_a_promotion_leaves_a_consistent_champion(registry) -> None:  # type: ignore[no-untyped-def]
    client, settings, params, name = registry
    _chain(client, settings, params, name, ["1", "2"])
    _gate(client, name, "3", True, "2")
    code = ("import sys\nfrom ctloop.core.errors import CtloopError\nfrom ctloop.core.params import get_params\n"
            "from ctloop.core.settings import get_settings\nfrom ctloop.flows.promotion import promote_version, rollback_version\n"
            "s, p = get_settings(), get_params()\ntry:\n"
            "    if sys.argv[1] == 'promote':\n        promote_version(p, s, '3', 'race', expected_champion='2')\n"
            "    else:\n        rollback_version(p, s, None, 'race', expected_champion='2')\n"
            "    print('won')\nexcept CtloopError as e:\n    print('lost', e)\n")
    procs = [subprocess.Popen([sys.executable, "-c", code, kind], stdout=subprocess.PIPE, text=True,
                              env=os.environ.copy()) for kind in ("promote", "rollback")]
    outs = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert sorted(o.split()[0] for o in outs) == ["lost", "won"], outs
    champion, previous, _ = _aliases(client, name)
    if outs[0].startswith("won"):  # the promotion won: v3 is champion, v2 previous
        assert (champion, previous) == ("3", "2")
    else:  # the rollback won: v1 is champion again
        assert champion == "1"
    assert read_history(settings, name)[-1]["kind"] in ("promote", "rollback")
