"""Free text (``type: text``): the simulated support tickets carry a subject. The default pipeline vectorises it
with a bounded TF-IDF vocabulary; the adversarial suite sends empty, huge, non-Latin and emoji text; the
monitor judges text drift on Evidently's descriptors (text length, share of words the reference never used),
and a new product launched in another script (scenario ``text_shift``) is detected on the subject while a
stable day is not; ``ctloop serve`` takes any script and refuses a document beyond its limit naming the field."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from ctloop.core.params import read_spec
from tests.conftest import REPO, SPEC, run_cli

pytestmark = pytest.mark.integration

DAYS = [date(2026, 1, 1) + timedelta(days=i) for i in range(8)]


@pytest.fixture(scope="module")
def text_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    from ctloop.core.params import load_params
    from ctloop.core.settings import get_settings
    from ctloop.data.simulator import SimulationSpec, simulate_day
    from ctloop.data.store import Lake
    from ctloop.flows.ingest import ingest_day
    from ctloop.flows.promotion import promote_version
    from ctloop.flows.retrain import describe_trigger, evaluate, gate, prepare, train, training_set_dir
    from ctloop.validation.context import open_context

    root = tmp_path_factory.mktemp("text")
    raw = read_spec(SPEC)
    columns = raw["dataset"]["columns"]
    raw["dataset"]["columns"] = {**{k: v for k, v in columns.items() if k != "escalated"},
                                 "subject": {"type": "text"}, "escalated": columns["escalated"]}
    raw["source"] |= {"text": True, "rows_per_day": 600}
    raw["training"] |= {"min_rows": 1000, "window_days": 8, "test_days": 2, "text_max_features": 100}
    raw["evaluation"]["suites"] = ["behavioural", "adversarial"]
    for case, subject in zip(raw["evaluation"]["behavioural"]["minimum_functionality"],
                             ("Still broken again unacceptable", "Password question thanks"), strict=True):
        case["features"]["subject"] = subject  # a case carries every feature of the contract
    raw["evaluation"]["adversarial"] = {"batch_rows": 2000}
    params_file = root / "params.yaml"
    params_file.write_text(yaml.safe_dump(raw))
    gx = root / "great_expectations"
    shutil.copytree(REPO / "great_expectations", gx, ignore=shutil.ignore_patterns("uncommitted"))
    reference = root / "reference.parquet"
    pd.concat([simulate_day(d, SimulationSpec(rows=600, text=True)) for d in DAYS[:4]]).to_parquet(reference)
    env = {"CTLOOP_HOME": str(root / "home"), "CTLOOP_PARAMS": str(params_file), "CTLOOP_GX_DIR": str(gx)}
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        built = run_cli("suite", "build", "--from", str(reference))
        assert built.returncode == 0, built.stderr
        get_settings.cache_clear()
        settings, params = get_settings(), load_params(params_file)
        lake, context = Lake(settings.lake_root), open_context(settings)
        for day in DAYS:
            assert ingest_day(day, params, lake, context).status == "curated"
        data = training_set_dir(lake, "text")
        prepare(params, lake, DAYS[-1] + timedelta(days=1), 8, data, describe_trigger("manual", "text test", None))
        trained = train(params, settings, data)
        evaluated = evaluate(params, settings, data, trained.version, trained.run_id)
        decision = gate(params, settings, data / "evaluation.json")
        promote_version(params, settings, trained.version, "text champion")
        yield {"settings": settings, "params": params, "lake": lake, "trained": trained, "evaluated": evaluated,
               "decision": decision, "env": env, "root": root}
    get_settings.cache_clear()


def test_the_subject_is_vectorised_with_a_bounded_vocabulary(text_world) -> None:  # type: ignore[no-untyped-def]
    import mlflow

    model = mlflow.sklearn.load_model(text_world["trained"].model_uri)
    tfidf = model.named_steps["features"].named_transformers_["text_subject"].named_steps["tfidf"]
    assert 0 < len(tfidf.vocabulary_) <= 100  # training.text_max_features
    assert {"refund", "urgent"} <= set(tfidf.vocabulary_)
    assert text_world["decision"].passed, text_world["decision"].reasons


def test_adversarial_text_is_scored_or_rejected_never_a_crash(text_world) -> None:  # type: ignore[no-untyped-def]
    summary = text_world["evaluated"].suites["adversarial"]
    assert "each scored in [0, 1] or rejected with a reason" in summary, summary
    from ctloop.evaluation.suites import adversarial_cases

    names = set(adversarial_cases(pd.DataFrame([{c: 1 for c in text_world["params"].dataset.features}]),
                                  text_world["params"].dataset, text_world["params"].evaluation))
    assert {"non-Latin text subject", "emoji and control characters subject", "empty string subject",
            "very long string subject"} <= names


def test_text_drift_is_seen_on_its_descriptors_and_a_stable_day_is_quiet(text_world) -> None:  # type: ignore[no-untyped-def]
    from ctloop.dev.traffic import TrafficSpec, simulate_traffic
    from ctloop.flows.monitor import assess_window

    settings, params, lake = text_world["settings"], text_world["params"], text_world["lake"]
    quiet, shifted = date(2026, 1, 12), date(2026, 1, 13)
    simulate_traffic(TrafficSpec(quiet, 1, rows_per_day=800), params, settings, lake)
    simulate_traffic(TrafficSpec(shifted, 1, "text_shift", shifted, rows_per_day=800, magnitude=0.5), params, settings,
                     lake)
    calm = assess_window(lake, params, settings, quiet)
    moved = assess_window(lake, params, settings, shifted)
    columns = moved.to_dict()["drift"]["columns"]
    oov = "subject: out-of-vocabulary share"
    assert {oov, "subject: text length"} <= set(columns)
    assert oov not in calm.to_dict()["drifted_columns"]
    assert oov in moved.to_dict()["drifted_columns"], moved.to_dict()["drift"]["columns"][oov]
    report = Path(moved.to_dict()["report"]).read_text()
    assert oov in report  # in Evidently's HTML report beside the features


def test_the_server_takes_any_script_and_refuses_a_document_beyond_its_limit(text_world) -> None:  # type: ignore[no-untyped-def]
    from ctloop.data.simulator import SimulationSpec, simulate_day
    from tests.serving_helpers import Server

    settings, params = text_world["settings"], text_world["params"]
    row = simulate_day(DAYS[0], SimulationSpec(rows=1, text=True))[params.dataset.features].iloc[0].to_dict()
    record = {k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()}
    server = Server(settings.home, settings.params)
    try:
        server.wait_ready()
        with server.client() as c:
            for subject in ("登录失败 не работает", "", "😡" * 500, None):
                r = c.post("/predict", json={**record, "subject": subject})
                assert r.status_code == 200 and 0 <= r.json()["score"] <= 1, (subject, r.text)
            r = c.post("/predict", json={**record, "subject": "x" * (params.serving.max_document_length + 1)})
            assert r.status_code == 422 and "subject" in r.text
    finally:
        server.stop()
