"""Serving parts without a server: sticky canary buckets, route changes, the canary guard's judgement, the
bounded prediction-log writer, the compiled scorer against scikit-learn, and the fast record path against
the generic one."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ctloop.core.params import CanaryGuardSpec, get_params
from ctloop.data.routes import Routes, read_routes, write_routes
from ctloop.decisions.canary import judge_canary
from ctloop.estimators.compiled import NotCompilable, compile_linear, probe_records, verified
from ctloop.estimators.pipeline import build_pipeline
from ctloop.estimators.scoring import prepare_rows, records_frame
from ctloop.serving.logwriter import LogWriter
from ctloop.serving.routing import bucket, on_canary
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
    # the canary serves every key (a rollout's 100% step): the champion's window is from a quieter time,
    # so latency is not judged against it; errors still are
    assert not judge_canary(champion, _stats(100, 0, 300.0), policy, concurrent=False).stop
    failing = judge_canary(champion, _stats(100, 3, 300.0), policy, concurrent=False)
    assert failing.stop and len(failing.reasons) == 1 and "error rate 3.0%" in failing.reasons[0]


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


@settings(max_examples=25, deadline=None, database=None, derandomize=True)
@given(n=st.integers(1, 60), poisoned=st.sets(st.integers(0, 59), max_size=6),
       when=st.sampled_from([datetime(3000, 1, 1, tzinfo=UTC), datetime(1500, 6, 1, tzinfo=UTC), "not a time"]))
def test_poisoned_rows_are_dead_lettered_and_every_other_row_is_written(n: int, poisoned: set[int], when: Any) -> None:
    """A row the lake cannot store (an event time past pandas' range) is isolated: every other row of
    its batch is written, the bad one goes to the dead-letter file with the reason, nothing is dropped,
    and the log goes on writing what comes after."""
    import json
    import tempfile

    from ctloop.data.predictions import write_dead_letters, write_predictions
    from ctloop.data.store import Lake

    bad = {i for i in poisoned if i < n}
    with tempfile.TemporaryDirectory() as tmp:
        lake = Lake(Path(tmp))
        writer = LogWriter(lambda frame, stem: write_predictions(lake, frame, stem), ["request_id", "ts", "score"],
                           flush_seconds=0.05, flush_rows=1000, max_queue_rows=10_000,
                           dead_letter=lambda rows, reason, stem: write_dead_letters(lake, rows, reason, stem))
        day = datetime(2026, 1, 5, 12, tzinfo=UTC)
        writer.offer([{"request_id": f"r{i}", "ts": when if i in bad else day, "score": 0.5} for i in range(n)])
        writer.offer([{"request_id": "after", "ts": day, "score": 0.5}])
        writer.close()
        assert (writer.written, writer.dead_lettered, writer.dropped, writer.depth) == (n - len(bad) + 1, len(bad), 0, 0)
        files = sorted((lake.root / "predictions").glob("dt=*/hour=*/*.parquet"))
        stored = set(pd.concat([pd.read_parquet(f) for f in files])["request_id"]) if files else set()
        assert stored == {f"r{i}" for i in range(n) if i not in bad} | {"after"}
        letters = [json.loads(line) for f in (lake.root / "dead_letter" / "predictions").glob("*.jsonl")
                   for line in f.read_text().splitlines()] if bad else []
        assert sorted(x["row"]["request_id"] for x in letters) == sorted(f"r{i}" for i in bad)
        assert all(x["reason"] for x in letters)
        assert not list(lake.root.rglob("*.tmp")), "no half-written file is left behind"


def test_the_queue_depth_counts_the_rows_being_written() -> None:
    started, release = threading.Event(), threading.Event()

    def slow(frame: pd.DataFrame, stem: str) -> None:
        started.set()
        release.wait(10)

    writer = LogWriter(slow, ["request_id"], flush_seconds=0.01, flush_rows=1, max_queue_rows=100)
    writer.offer([{"request_id": f"r{i}"} for i in range(7)])
    assert started.wait(10)
    assert writer.depth == 7, "rows taken for the write in progress are still waiting to be stored"
    release.set()
    writer.close()
    assert writer.depth == 0 and writer.written == 7


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
