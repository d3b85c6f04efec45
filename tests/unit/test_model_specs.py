"""Many models in one deployment: one spec per model (``models/<name>.yaml``) over shared defaults
(``_defaults.yaml``), named by its file; every verb acts for one model (``--model``, before or after the
verb), and what a model owns (lake part, audit entries) is keyed by its name."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from ctloop.cli import hoist_model_option
from ctloop.core.errors import ConfigError
from ctloop.core.params import _merge, load_params, read_spec
from ctloop.core.settings import Settings, list_models
from tests.conftest import SPEC

KEYS = st.sampled_from(["a", "b", "c", "d"])
VALUES = st.recursive(st.one_of(st.integers(), st.text(max_size=3), st.none(), st.lists(st.integers(), max_size=2)),
                      lambda inner: st.dictionaries(KEYS, inner, max_size=3), max_leaves=8)
MAPPINGS = st.dictionaries(KEYS, VALUES, max_size=4)


@given(MAPPINGS, MAPPINGS)
def test_a_spec_overrides_the_defaults_mapping_by_mapping(base: dict[str, Any], over: dict[str, Any]) -> None:
    merged = _merge(base, over)
    assert set(merged) == set(base) | set(over)
    for key, value in merged.items():
        if key not in over:
            assert value == base[key]
        elif isinstance(over[key], dict) and isinstance(base.get(key), dict):
            assert value == _merge(base[key], over[key])
        else:
            assert value == over[key], "a list or a value replaces"
    assert _merge(base, {}) == base and _merge({}, over) == over


def _model(models: Path, name: str, **changes: Any) -> Path:
    raw = yaml.safe_load(SPEC.read_text())  # the repo's spec: what is not in it comes from _defaults.yaml
    raw["dataset"].pop("name")
    raw.pop("training", None)
    raw["validation"] = {"suite": "support_escalation_batch"}  # a spec may name the suites it shares
    raw["training"] = {"suite": "support_escalation_training_set"}
    for section, values in changes.items():
        raw[section] = {**raw.get(section, {}), **values}
    path = models / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.fixture
def deployment(tmp_path: Path) -> Path:
    models = tmp_path / "models"
    models.mkdir()
    (models / "_defaults.yaml").write_text((SPEC.parent / "_defaults.yaml").read_text())
    _model(models, "alpha")
    _model(models, "beta", source={"rows_per_day": 300, "seed": 11})
    return models


def test_a_spec_is_named_by_its_file_and_owns_what_follows_from_the_name(deployment: Path) -> None:
    params = load_params(deployment / "beta.yaml")
    assert params.dataset.name == "beta" and params.training.registered_model == "beta"
    assert params.training.experiment == "ctloop-beta"
    assert params.source.rows_per_day == 300 and params.training.window_days == 14, "the rest: the defaults"
    assert params.evaluation.golden.path == "great_expectations/golden/cases.jsonl", "the golden set it names"
    raw = yaml.safe_load((deployment / "alpha.yaml").read_text())
    del raw["evaluation"]["golden"]
    (deployment / "delta.yaml").write_text(yaml.safe_dump(raw))
    delta = load_params(deployment / "delta.yaml")
    assert delta.evaluation.golden.path == "great_expectations/golden/delta.jsonl", "no golden set named: its own"
    assert delta.evaluation.golden.min_pass_rate == 0.95, "the rest of golden from the defaults"
    (deployment / "delta.yaml").unlink()
    assert list_models(deployment) == ["alpha", "beta"]

    raw = yaml.safe_load((deployment / "beta.yaml").read_text())
    raw["dataset"]["name"] = "gamma"
    (deployment / "beta.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=r"beta\.yaml: dataset\.name: 'gamma' must be the file's name 'beta'"):
        read_spec(deployment / "beta.yaml")

    (deployment / "Beta-2.yaml").write_text("{}")
    with pytest.raises(ConfigError, match=r"Beta-2\.yaml: 'Beta-2' is not a model name"):
        list_models(deployment)


def test_the_repo_spec_is_the_old_params_file_split_in_two() -> None:
    params = load_params(SPEC)
    assert params.dataset.name == "support_escalation" and params.training.experiment == "ctloop-support-escalation"
    assert params.validation.suite == "support_escalation_batch" and params.evaluation.behavioural.directional


def test_settings_act_for_one_model_keyed_by_name(deployment: Path, tmp_path: Path) -> None:
    s = Settings(home=tmp_path / "home", models_dir=deployment)
    assert s.model is None and s.model_names() == ["alpha", "beta"]
    with pytest.raises(ConfigError, match=r"several models \(alpha, beta\): name one with --model NAME"):
        _ = s.spec_path
    beta = s.for_model("beta")
    assert beta.spec_path == deployment / "beta.yaml" and beta.lake_root == tmp_path / "home" / "lake" / "beta"
    with pytest.raises(ConfigError, match=r"--model zeta: no such model in .* \(models: alpha, beta\)"):
        _ = s.for_model("zeta").spec_path
    (deployment / "alpha.yaml").unlink()
    only = Settings(home=tmp_path / "home", models_dir=deployment)
    assert only.model == "beta", "one model: it is the default"


@given(st.lists(st.sampled_from(["ingest", "--date", "2026-01-05", "--json", "x", "--", "-m"]), max_size=6),
       st.integers(min_value=0, max_value=6), st.booleans())
def test_model_option_moves_before_the_verb_and_nothing_else_moves(args: list[str], at: int, equals: bool) -> None:
    args = [a for a in args if a not in ("--", "-m")]
    at = min(at, len(args))
    option = ["--model=beta"] if equals else ["--model", "beta"]
    argv = ["status", *args[:at], *option, *args[at:], "--", "--model", "kept"]
    hoisted = hoist_model_option(argv)
    assert hoisted == [*option, "status", *args, "--", "--model", "kept"]


def _cli(deployment: Path, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("CTLOOP_PARAMS", "CTLOOP_MODEL")}
    env |= {"CTLOOP_MODELS_DIR": str(deployment), "CTLOOP_HOME": str(home)}
    exe = str(Path(sys.executable).with_name("ctloop"))
    return subprocess.run([exe, *args], capture_output=True, text=True, env=env, timeout=300)


def test_every_verb_takes_model_and_says_which_when_it_is_missing(deployment: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    missing = _cli(deployment, home, "ingest", "--date", "2026-01-05")
    assert missing.returncode == 2 and missing.stdout == ""
    assert missing.stderr.strip() == "ctloop: error: several models (alpha, beta): name one with --model NAME (or CTLOOP_MODEL)"
    unknown = _cli(deployment, home, "status", "--model", "zeta")
    assert unknown.returncode == 2 and "(models: alpha, beta)" in unknown.stderr

    done = _cli(deployment, home, "ingest", "--date", "2026-01-05", "--model", "beta", "--json")
    assert done.returncode == 0, done.stderr
    lake = home / "lake"
    assert (lake / "beta" / "curated" / "dt=2026-01-05").is_dir() and not (lake / "alpha").exists()
    assert json.loads((lake / "beta" / "curated" / "dt=2026-01-05" / "_manifest.json").read_text())["rows"] == 300
    entries = [json.loads(line) for line in (home / "audit" / "audit.jsonl").read_text().splitlines()]
    assert entries and {e["model"] for e in entries} == {"beta"}, "each audit entry names its model"
    assert _cli(deployment, home, "audit", "verify").returncode == 0

    listed = _cli(deployment, home, "models", "--json", "--no-registry")
    assert listed.returncode == 0, listed.stderr
    rows = {m["name"]: m for m in json.loads(listed.stdout)["models"]}
    assert set(rows) == {"alpha", "beta"} and rows["beta"]["task"] == "binary" and rows["alpha"]["error"] is None

    (deployment / "broken.yaml").write_text("dataset: {columns: {x: {type: decimal}}}\n")
    broken = _cli(deployment, home, "models", "--json", "--no-registry")
    assert broken.returncode == 1, "a spec that does not validate is listed, and the check fails"
    assert "broken.yaml" in {m["name"]: m for m in json.loads(broken.stdout)["models"]}["broken"]["error"]


def test_an_alert_says_which_model_the_decision_is_about() -> None:
    from ctloop.decisions.alerts import alert_from_audit

    entry = {"seq": 7, "kind": "drift_trigger", "outcome": "triggered", "subject": "window 2026-01-12",
             "reasons": ["data drift"], "details": {}, "actor": "airflow:beta__monitor/r1", "model": "beta"}
    alert = alert_from_audit(entry)
    assert alert is not None and "beta: window 2026-01-12" in alert.title and alert.details["model"] == "beta"
    older = alert_from_audit({k: v for k, v in entry.items() if k != "model"})  # entries from before models
    assert older is not None and "model" not in older.details and ": window 2026-01-12" in older.title


@given(st.text(min_size=1, max_size=70))
def test_an_owner_is_a_team_name_or_a_one_line_error_naming_the_key(owner: str) -> None:
    import re

    from ctloop.core.owners import access_control, airflow_role, ownership
    from ctloop.core.params import Params

    raw = read_spec(SPEC) | {"owner": owner}
    if re.fullmatch(r"[a-z][a-z0-9_-]{0,62}", owner):
        params = Params.model_validate(raw)
        owned = ownership("support_escalation", params)
        assert owned is not None and owned.role == airflow_role(owner) == f"team_{owner}"
        assert owned.registered_model == "support_escalation"
        assert access_control(params) == {f"team_{owner}": {"DAGs": {"can_read", "can_edit"},
                                                             "DAG Runs": {"can_read", "can_create", "can_delete"}}}
    else:
        with pytest.raises(ConfigError, match=r"owner"):
            path = Path(os.environ.get("TMPDIR", "/tmp")) / f"owner-{os.getpid()}.yaml"
            path.write_text(yaml.safe_dump(raw))
            load_params(path)


def test_no_owner_no_access_control() -> None:
    from ctloop.core.owners import access_control, ownerships

    params = load_params(SPEC)
    assert params.owner is None and access_control(params) is None and ownerships({"x": params}) == []
    assert params.monitoring.experiment == "ctloop-support_escalation-monitoring"  # one per model


def test_the_demo_deployment_is_two_models_of_two_task_types_on_their_own_data(tmp_path: Path) -> None:
    """What ``make demo`` writes: the tickets model with the demo's incidents and the flights regression on
    its delivered files (real 2013 flights re-dated onto the demo's calendar), both valid over the defaults,
    each with its own steps, suites and lake."""
    import pandas as pd

    from ctloop.dev.demo import SECOND_MODEL, deliver_flights, demo_params

    base = Settings(home=tmp_path / "home")
    incoming = tmp_path / "incoming"
    folder = demo_params(base, {"source": {"incidents": {"2026-01-10": "upstream_bug"}}}, incoming)
    deployment = Settings(home=tmp_path / "home", models_dir=folder)
    assert deployment.model is None and deployment.model_names() == [SECOND_MODEL, "support_escalation"]
    tickets = load_params(deployment.for_model("support_escalation").spec_path)
    flights = load_params(deployment.for_model(SECOND_MODEL).spec_path)
    assert (tickets.dataset.task, flights.dataset.task) == ("binary", "regression")
    assert tickets.source.incidents == {date(2026, 1, 10): "upstream_bug"} and flights.source.kind == "files"
    assert flights.validation.suite == "flight_arrival_batch"
    assert (base.gx_dir / "expectations" / "flight_arrival_batch.json").exists(), "its suite is committed"
    assert flights.promotion.mode == "rollout" and flights.promotion.rollout.steps[0].weight == 0.25
    assert deployment.for_model(SECOND_MODEL).lake_root != deployment.for_model("support_escalation").lake_root

    assert deliver_flights(incoming, date(2026, 1, 5), date(2026, 1, 6)) == 2
    day = pd.read_parquet(incoming / "dt=2026-01-05" / "flights.parquet")
    assert (day["sched_dep"].dt.date == date(2026, 1, 5)).all() and 700 < len(day) < 1200
    assert set(flights.dataset.columns) == set(day.columns), "the delivered file is the spec's contract"
