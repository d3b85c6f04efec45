"""Serving parts without a server: sticky canary buckets, route changes, the canary guard's judgement, the
bounded prediction-log writer, the compiled scorer against scikit-learn, and the fast record path against
the generic one."""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np
import pandas as pd
import pytest

from ctloop.core.params import CanaryGuardSpec, get_params
from ctloop.decisions.canary import judge_canary
from ctloop.estimators.compiled import NotCompilable, compile_linear, probe_records, verified
from ctloop.estimators.pipeline import build_pipeline
from ctloop.estimators.scoring import prepare_rows, records_frame
from ctloop.serving.logwriter import LogWriter
from ctloop.serving.routing import Routes, bucket, on_canary, read_routes, write_routes
from tests.serving_helpers import training_frame


def test_canary_buckets_are_stable_uniform_and_monotone_in_the_fraction() -> None:
    keys = [f"customer-{i}" for i in range(20_000)]
    assert bucket("customer-7") == bucket("customer-7")
    share = np.mean([on_canary(k, 0.1) for k in keys])
    assert abs(share - 0.1) < 0.01
    at_10 = {k for k in keys if on_canary(k, 0.1)}
    at_25 = {k for k in keys if on_canary(k, 0.25)}
    assert at_10 <= at_25  # raising the fraction only moves keys onto the canary
    assert not any(on_canary(k, 0.0) for k in keys[:1000])


def test_route_changes_are_checked_and_persisted(tmp_path) -> None:  # type: ignore[no-untyped-def]
    spec = get_params().serving
    routes = read_routes(tmp_path, spec)
    assert routes == Routes.defaults(spec)
    changed = routes.changed("test", canary_fraction=0.2, shadow=True)
    write_routes(tmp_path, changed)
    again = read_routes(tmp_path, spec)
    assert (again.canary_fraction, again.shadow, again.updated_by) == (0.2, True, "test")
    for bad, message in (({"canary_fraction": 2}, "canary_fraction"), ({"canary_alias": "champion"}, "canary_alias"),
                         ({"shadow": "yes"}, "shadow"), ({"colour": 1}, "unknown route setting")):
        with pytest.raises(ValueError, match=message):
            routes.changed("test", **bad)
    (tmp_path / "serving" / "routes.json").write_text("{broken")
    with pytest.raises(ValueError, match=r"routes\.json"):
        read_routes(tmp_path, spec)


def _stats(n: int, errors: int, p99: float) -> dict[str, Any]:
    return {"requests": n, "error_rate": errors / n if n else None, "p99_ms": p99}


def test_canary_guard_judges_errors_and_latency_against_the_champion() -> None:
    policy = CanaryGuardSpec(window=500, min_requests=50, max_error_rate_increase=0.01, max_p99_ratio=3.0,
                             min_p99_increase_ms=20)
    champion = _stats(500, 0, 5.0)
    assert not judge_canary(champion, _stats(49, 49, 500.0), policy).stop  # too few canary requests to judge
    assert not judge_canary(champion, _stats(100, 1, 10.0), policy).stop   # 1% errors, p99 within 3x / +20 ms
    errors = judge_canary(champion, _stats(100, 3, 10.0), policy)
    assert errors.stop and "error rate 3.0%" in errors.reasons[0]
    slow = judge_canary(champion, _stats(100, 0, 30.0), policy)  # above 3x5 and 5+20
    assert slow.stop and "p99 30.0 ms" in slow.reasons[0]
    assert not judge_canary(champion, _stats(100, 0, 24.0), policy).stop  # 3x exceeded, +20 ms not


def test_log_writer_is_bounded_when_storage_is_slow_and_flushes_everything_on_close() -> None:
    written: list[int] = []
    release = threading.Event()

    def slow_sink(frame: pd.DataFrame, stem: str) -> None:
        release.wait(10)  # storage hangs until released
        written.append(len(frame))

    writer = LogWriter(slow_sink, ["request_id"], flush_seconds=0.05, flush_rows=10, max_queue_rows=100)
    accepted = sum(writer.offer([{"request_id": f"r{i}"}]) for i in range(300))
    time.sleep(0.2)
    assert writer.depth <= 100 and writer.dropped > 0
    assert accepted + writer.dropped == 300
    release.set()
    writer.close()
    assert sum(written) == accepted == writer.written and writer.depth == 0


def test_log_writer_keeps_rows_when_a_write_fails() -> None:
    calls: list[int] = []

    def flaky(frame: pd.DataFrame, stem: str) -> None:
        calls.append(len(frame))
        if len(calls) == 1:
            raise OSError("disk full")

    writer = LogWriter(flaky, ["request_id"], flush_seconds=0.05, flush_rows=1000, max_queue_rows=1000)
    writer.offer([{"request_id": f"r{i}"} for i in range(50)])
    time.sleep(0.3)
    writer.close()
    assert writer.write_errors == 1 and writer.written == 50 and writer.dropped == 0


@pytest.fixture(scope="module")
def fitted() -> tuple[Any, Any, pd.DataFrame]:
    params = get_params()
    frame = training_frame(params, rows=2000)
    lr = build_pipeline(params.dataset, "logistic_regression", {"max_iter": 1000})
    lr.fit(frame[params.dataset.features], frame[params.dataset.target])
    hgb = build_pipeline(params.dataset, "hist_gradient_boosting", {"max_iter": 10})
    hgb.fit(frame[params.dataset.features], frame[params.dataset.target])
    return lr, hgb, frame


def test_compiled_scorer_reproduces_predict_proba_and_refuses_what_it_cannot_fold(fitted) -> None:  # type: ignore[no-untyped-def]
    lr, hgb, frame = fitted
    contract = get_params().dataset
    scorer, why = verified(lr, contract)
    assert scorer is not None and why.startswith("compiled")
    records = [{c: (None if pd.isna(v) else v) for c, v in r.items()} for r in frame[contract.features].to_dict("records")]
    records[0]["language"] = "klingon"
    records[1]["message_length"] = 10**9  # beyond the contract: clipped on both paths
    records[2]["sentiment"] = None
    expected = lr.predict_proba(records_frame(records, contract))[:, 1]
    assert np.max(np.abs(scorer(records) - expected)) < 1e-9
    with pytest.raises(NotCompilable):
        compile_linear(hgb, contract)
    none, why = verified(hgb, contract)
    assert none is None and "scikit-learn path" in why
    assert len(probe_records(lr, contract)) == 200


def test_fast_record_path_scores_like_the_generic_contract_path(fitted) -> None:  # type: ignore[no-untyped-def]
    lr, _, frame = fitted
    contract = get_params().dataset
    rows = frame[contract.features].head(300).copy()
    rows.loc[rows.index[0], "message_length"] = 1e12
    rows.loc[rows.index[1], "channel"] = "x" * 5000
    records = [{c: (None if pd.isna(v) else v) for c, v in r.items()} for r in rows.to_dict("records")]
    fast = lr.predict_proba(records_frame(records, contract))[:, 1]
    generic, rejections, _ = prepare_rows(rows.reset_index(drop=True), contract)
    assert not rejections
    assert np.allclose(fast, lr.predict_proba(generic[contract.features])[:, 1], atol=1e-12)
