"""Lineage and reproducibility through the real path: GX-validated ingest, DVC-versioned curated partitions
and training sets pushed to the DVC remote, a champion in a real MLflow registry, then lineage resolution,
``ctloop reproduce`` from the remote alone, the audit trail, and concurrent ingests."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, run_cli, write_params

pytestmark = pytest.mark.integration

DAYS = [date(2026, 1, 1) + timedelta(days=i) for i in range(8)]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:  # type: ignore[type-arg]
    from ctloop.core.params import load_params
    from ctloop.core.settings import get_settings
    from ctloop.data.store import Lake
    from ctloop.flows.ingest import ingest_day
    from ctloop.flows.promotion import promote_version
    from ctloop.flows.retrain import (
        describe_trigger,
        evaluate,
        gate,
        prepare,
        train,
        training_set_dir,
        validate_training_set,
    )
    from ctloop.validation.context import open_context

    root = tmp_path_factory.mktemp("lineage")
    params_file = write_params(root / "params.yaml", source={"rows_per_day": 600},
                               training={"min_rows": 1000, "window_days": 8, "test_days": 2})
    env = {"CTLOOP_HOME": str(root / "home"), "CTLOOP_PARAMS": str(params_file)}
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        get_settings.cache_clear()
        settings, params = get_settings(), load_params(params_file)
        lake, context = Lake(settings.lake_root), open_context(settings)
        for day in DAYS:
            assert ingest_day(day, params, lake, context).status == "curated"
        data = training_set_dir(lake, "first-champion")
        prepare(params, lake, DAYS[-1] + timedelta(days=1), 8, data, describe_trigger("manual", "lineage test", None,
                                                                                       "support_escalation__retrain", "manual__x"))
        validate_training_set(params, settings, data)
        trained = train(params, settings, data)
        evaluate(params, settings, data, trained.version, trained.run_id)
        assert gate(params, settings, data / "evaluation.json").passed
        promote_version(params, settings, trained.version, "lineage test champion")
        yield {"settings": settings, "params": params, "lake": lake, "data": data, "trained": trained,
               "env": env, "params_file": params_file}
    get_settings.cache_clear()


def _dvc_md5(dvcfile: Path) -> str:
    return str(yaml.safe_load(dvcfile.read_text())["outs"][0]["md5"])


def _in_remote(settings, md5: str) -> bool:  # type: ignore[no-untyped-def]
    return (Path(settings.dvc_remote_url) / "files" / "md5" / md5[:2] / md5[2:]).exists()


def test_curated_partitions_and_training_sets_are_tracked_and_pushed(world) -> None:  # type: ignore[no-untyped-def]
    from ctloop.data.versioning import LakeVersions

    settings, lake = world["settings"], world["lake"]
    for day in DAYS:
        part = lake.partition("curated", day)
        dvcfile = part.with_name(f"{part.name}.dvc")
        assert dvcfile.exists(), f"{part} is not tracked by DVC"
        assert _in_remote(settings, _dvc_md5(dvcfile)), f"{part} was not pushed"
    ts = world["data"].with_name(f"{world['data'].name}.dvc")
    assert _in_remote(settings, _dvc_md5(ts))
    # evaluation.json and gate_decision.json were written after versioning; .dvcignore keeps them out
    assert LakeVersions.from_settings(settings).status() == {}


def test_lineage_resolves_to_existing_raw_partitions(world) -> None:  # type: ignore[no-untyped-def]
    from ctloop.flows.lineage import resolve_lineage

    settings, params, lake, version = world["settings"], world["params"], world["lake"], world["trained"].version
    chain = resolve_lineage(settings, params, lake, version)
    assert chain.complete, chain.problems
    assert "champion" in chain.aliases
    assert [p["day"] for p in chain.partitions] == [d.isoformat() for d in DAYS]
    for part in chain.partitions:
        assert part["dvc_md5"] == _dvc_md5(Path(part["curated"] + ".dvc"))
        assert part["validation"]["success"] is True
        [raw] = part["raw_files"]
        path = Path(raw["path"])
        assert path.parent == lake.partition("raw", date.fromisoformat(part["day"]))
        assert hashlib.sha256(path.read_bytes()).hexdigest() == raw["sha256"]
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    assert chain.code["git_commit"] == head
    assert chain.config["params_sha256"] == hashlib.sha256(world["params_file"].read_bytes()).hexdigest()
    assert chain.training_set["dvc_md5"] == _dvc_md5(world["data"].with_name(f"{world['data'].name}.dvc"))
    assert chain.trigger["trigger"] == "manual" and chain.trigger["airflow.run_id"] == "manual__x"

    shown = run_cli("lineage", version, "--json", env=world["env"])
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["training_set"]["dvc_md5"] == chain.training_set["dvc_md5"]


def test_reproduce_pulls_the_data_version_from_the_remote_and_matches(world) -> None:  # type: ignore[no-untyped-def]
    settings, data = world["settings"], world["data"]
    # nothing local is left: the training set, its pointer and the whole DVC cache are gone
    shutil.rmtree(data)
    data.with_name(f"{data.name}.dvc").unlink()
    shutil.rmtree(settings.home / "dvc-cache")
    done = run_cli("reproduce", world["trained"].version, "--json", env=world["env"])
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout)
    assert result["identical"] and result["data_matches"]
    assert result["max_metric_difference"] == 0.0 and result["max_score_difference"] == 0.0
    assert result["reproduced"]["roc_auc"] > 0.7


def test_every_decision_is_in_the_audit_trail(world) -> None:  # type: ignore[no-untyped-def]
    from ctloop.core.audit import audit_log

    log = audit_log(world["settings"])
    assert log.verify().ok
    kinds = [(e["kind"], e["outcome"]) for e in log.entries()]
    assert kinds.count(("validation", "passed")) == len(DAYS) + 1  # the batches and the training set
    assert ("gate", "passed") in kinds
    promotion = [e for e in log.entries() if e["kind"] == "promotion"]
    assert promotion[-1]["outcome"] == "promoted" and promotion[-1]["reasons"] == ["lineage test champion"]


def test_concurrent_ingests_keep_the_dvc_repo_and_the_audit_chain_consistent(world) -> None:  # type: ignore[no-untyped-def]
    from ctloop.core.audit import audit_log
    from ctloop.data.versioning import LakeVersions

    settings, lake = world["settings"], world["lake"]
    before = len(audit_log(settings).entries())
    days = [DAYS[-1] + timedelta(days=i) for i in range(1, 5)]
    exe = str(Path(sys.executable).with_name("ctloop"))  # the interpreter's own install, venv activated or not
    procs = [subprocess.Popen([exe, "ingest", "--date", d.isoformat(), "--json"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env={**os.environ, **world["env"]}) for d in days]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-800:] for o in outs]
    for d in days:
        part = lake.partition("curated", d)
        assert _in_remote(settings, _dvc_md5(part.with_name(f"{part.name}.dvc")))
    # (the reproduce test emptied the cache on purpose; the new partitions must be clean)
    status = LakeVersions.from_settings(settings).status()
    assert not [k for k in status if any(d.isoformat() in k for d in days)], status
    log = audit_log(settings)
    assert log.verify().ok
    assert len(log.entries()) == before + len(days)


def test_a_changed_raw_batch_breaks_the_lineage(world) -> None:  # type: ignore[no-untyped-def]
    """Runs last in this module: it damages the lake on purpose."""
    raw = world["lake"].raw_files(DAYS[2])[0]
    raw.chmod(0o644)
    raw.write_bytes(raw.read_bytes() + b"tampered")
    shown = run_cli("lineage", world["trained"].version, "--json", env=world["env"])
    assert shown.returncode == 1
    problems = json.loads(shown.stdout)["problems"]
    assert any(str(raw) in p and "changed" in p for p in problems), problems
