"""``dvc.yaml`` on a clean clone: ``dvc repro`` runs prepare -> train -> evaluate with the ``ctloop``
commands; after a params change only the affected stages re-run; ``dvc params diff``, ``dvc metrics show``
and ``dvc plots show`` work."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO

pytestmark = pytest.mark.integration


def _run(cmd: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{' '.join(cmd)}:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done


def test_dvc_repro_reruns_only_the_affected_stages(tmp_path: Path) -> None:
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
           # as after `make demo`: the data sits in the demo's home, which dvc.yaml's `lake` points at; the
           # model is the clone's models/support_escalation.yaml (its lake part: <lake>/support_escalation)
           "CTLOOP_HOME": str(clone / ".ctloop" / "demo"), "CTLOOP_MODELS_DIR": str(clone / "models"),
           "CTLOOP_GX_DIR": str(clone / "great_expectations")}
    env.pop("CTLOOP_PARAMS", None)
    spec_path, defaults_path = clone / "models" / "support_escalation.yaml", clone / "models" / "_defaults.yaml"
    spec, defaults = yaml.safe_load(spec_path.read_text()), yaml.safe_load(defaults_path.read_text())

    def write() -> None:
        spec_path.write_text(yaml.safe_dump(spec, sort_keys=False))
        defaults_path.write_text(yaml.safe_dump(defaults, sort_keys=False))

    # a small world, committed so that `dvc params diff` compares against it
    spec["source"]["rows_per_day"] = 600
    defaults["training"]["min_rows"] = 1000
    write()
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
    _run([*git, "commit", "-qam", "small world"], clone, env)
    _run(["ctloop", "ingest", "--start", "2026-01-01", "--end", "2026-01-06"], clone, env)  # six days, one process
    assert (clone / ".ctloop" / "demo" / "lake" / "support_escalation" / "curated").is_dir(), "the model's part of the lake"

    first = _run(["dvc", "repro"], clone, env).stdout
    for stage in ("prepare", "train", "evaluate"):
        assert f"Running stage '{stage}@support_escalation'" in first, first
    metrics = json.loads(_run(["dvc", "metrics", "show", "--json"], clone, env).stdout)
    values = next(iter(metrics.values()))["data"]["metrics/support_escalation/metrics.json"]["data"]
    assert 0.7 < values["challenger"]["roc_auc"] <= 1.0
    assert "Data and pipelines are up to date" in _run(["dvc", "status"], clone, env).stdout

    defaults["training"]["models"]["logistic_regression"]["C"] = 0.25  # a shared default
    write()
    diff = json.loads(_run(["dvc", "params", "diff", "--json"], clone, env).stdout)
    change = diff["models/_defaults.yaml"]["training.models.logistic_regression.C"]
    assert (change["old"], change["new"]) == (1.0, 0.25)
    second = _run(["dvc", "repro"], clone, env).stdout
    assert "Stage 'prepare@support_escalation' didn't change, skipping" in second, second
    assert "Running stage 'train@support_escalation'" in second and "Running stage 'evaluate@support_escalation'" in second

    spec["dataset"]["slices"] = spec["dataset"]["slices"][:1]  # the model's own key
    write()
    third = _run(["dvc", "repro"], clone, env).stdout
    assert "Running stage 'evaluate@support_escalation'" in third and "Running stage 'train@" not in third, third
    assert "Running stage 'prepare@" not in third

    _run(["dvc", "plots", "show"], clone, env)
    assert (clone / "dvc_plots" / "index.html").exists()
    lock = yaml.safe_load((clone / "dvc.lock").read_text())
    assert lock["stages"]["prepare@support_escalation"]["outs"][0]["md5"].endswith(".dir")
    shutil.rmtree(clone / ".ctloop", ignore_errors=True)
