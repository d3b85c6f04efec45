"""Hostile input against a real ``ctloop serve``: Schemathesis over the server's own OpenAPI schema
(positive and negative cases for ``/predict`` and ``PUT /routes``) and Hypothesis over event times and
nesting depth. The rule for every request: never a 5xx, the prediction log keeps flowing (a clean
request sent after the fuzzing is logged, nothing is dropped or dead-lettered), memory stays bounded.
Then the fixed limits: body size (413), text length (422 with a short echo), media type (415), the
bearer scheme in any case, an empty token refused at start, and a connection kept open after an error."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ctloop.core.params import load_params
from ctloop.core.settings import get_settings
from ctloop.estimators.pipeline import build_pipeline
from tests.conftest import write_params
from tests.serving_helpers import Server, logged, register, training_frame

pytestmark = pytest.mark.faults

SERVING = {"poll_seconds": 0.5, "log": {"flush_seconds": 0.2, "flush_rows": 5000, "max_queue_rows": 200000},
           "max_body_bytes": 2 * 2**20, "max_text_length": 200}


def fuzz(max_examples: int) -> settings:
    """Bounded for CI and repeatable: the same cases every run (no example database)."""
    return settings(max_examples=max_examples, deadline=None, database=None, derandomize=True,
                    suppress_health_check=list(HealthCheck))
STATUSES: Counter[tuple[str, int]] = Counter()


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("hostile")
    home = root / "home"
    params_path = write_params(root / "params.yaml", serving=SERVING)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CTLOOP_HOME", str(home))
        mp.setenv("CTLOOP_PARAMS", str(params_path))
        get_settings.cache_clear()
        settings_, params = get_settings(), load_params(params_path)
        frame = training_frame(params, rows=1500)
        register(settings_, params, build_pipeline(params.dataset, "logistic_regression", {"max_iter": 500}), frame,
                 ("champion",))
        server = Server(home, params_path)
        try:
            server.wait_ready()
            yield {"server": server, "home": home, "params": params, "frame": frame, "params_path": params_path}
        finally:
            server.stop()
            get_settings.cache_clear()
            print("\nfuzz statuses:", dict(sorted(STATUSES.items())))


def _record(h: dict[str, Any], i: int, **changes: Any) -> dict[str, Any]:
    row = h["frame"].iloc[i % len(h["frame"])]
    plain = {c: (row[c].item() if hasattr(row[c], "item") else row[c]) for c in h["params"].dataset.features}
    rec = {c: (None if v != v else v) for c, v in plain.items()}  # NaN: a missing value
    return {**rec, "request_id": f"hostile-{i}", **changes}


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _metric(text: str, name: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples if s.name == name)


def _log_flows(h: dict[str, Any], tag: str) -> None:
    """A clean batch after the hostile ones is answered and logged, and the writer lost nothing."""
    records = [_record(h, i, request_id=f"{tag}-{i}") for i in range(20)]
    with h["server"].client() as c:
        r = c.post("/predict", json={"records": records})
        assert r.status_code == 200, r.text
        deadline = time.monotonic() + 30
        ids = {rec["request_id"] for rec in records}
        while not ids <= set(logged(h["home"] / "lake")["request_id"]):
            assert time.monotonic() < deadline, "the prediction log stopped"
            time.sleep(0.2)
        text = c.get("/metrics").text
    assert _metric(text, "ctloop_serving_internal_errors_total") == 0
    assert _metric(text, "ctloop_serving_log_dropped_rows_total") == 0
    assert _metric(text, "ctloop_serving_log_queue_rows") == 0


def test_schemathesis_over_the_openapi_schema_finds_no_5xx(hostile: dict[str, Any]) -> None:
    import schemathesis
    from schemathesis.generation.modes import GenerationMode

    url = hostile["server"].url
    rss_before = _rss_mb(hostile["server"].proc.pid)
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    plan = [("/predict", "POST", GenerationMode.POSITIVE, 120), ("/predict", "POST", GenerationMode.NEGATIVE, 200),
            ("/routes", "PUT", GenerationMode.POSITIVE, 30), ("/routes", "PUT", GenerationMode.NEGATIVE, 60)]
    import requests

    with requests.Session() as session:
        def fuzz_operation(path: str, method: str, mode: GenerationMode, n: int) -> None:
            @fuzz(n)
            @given(case=schema[path][method].as_strategy(generation_mode=mode))
            def call(case: Any) -> None:
                r = case.call(base_url=url, session=session, timeout=30)
                STATUSES[(path, r.status_code)] += 1
                assert r.status_code < 500, (case.body, r.text[:300])
            call()

        for path, method, mode, n in plan:
            fuzz_operation(path, method, mode, n)
        assert session.put(f"{url}/routes", json={"canary_fraction": 0.0, "shadow": False}).status_code == 200
    assert sum(n for (p, _), n in STATUSES.items() if p == "/predict") >= 300
    _log_flows(hostile, "after-schemathesis")
    assert _rss_mb(hostile["server"].proc.pid) - rss_before < 300, "memory stays bounded"


OFFSETS = st.integers(-23 * 60 + 1, 23 * 60 - 1).map(lambda m: timezone(timedelta(minutes=m)))


@fuzz(150)
@given(when=st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59),
                         timezones=st.none() | OFFSETS))
@example(when=datetime(3000, 1, 1, tzinfo=UTC))
@example(when=datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone(timedelta(hours=-1))))
@example(when=datetime(1, 1, 1, 0, 0, 0, tzinfo=timezone(timedelta(hours=1))))
@example(when=datetime(1677, 9, 21, 0, 12, 43, tzinfo=UTC))
@example(when=datetime(2262, 4, 11, 23, 47, 16, tzinfo=UTC))
def test_no_event_time_can_stop_the_prediction_log(hostile: dict[str, Any], when: datetime) -> None:
    ts_field = hostile["params"].dataset.timestamp
    with hostile["server"].client() as c:
        r = c.post("/predict", json=_record(hostile, 1, **{ts_field: when.isoformat()}))
    STATUSES[("/predict event time", r.status_code)] += 1
    assert r.status_code in (200, 422), r.text
    if r.status_code == 422:
        assert r.json()["detail"][0]["loc"] == ["body", ts_field]


def test_after_every_event_time_the_log_still_flows(hostile: dict[str, Any]) -> None:
    _log_flows(hostile, "after-event-times")
    with hostile["server"].client() as c:
        assert _metric(c.get("/metrics").text, "ctloop_serving_log_dead_lettered_rows_total") == 0


@fuzz(12)
@given(depth=st.integers(800, 1100), kind=st.sampled_from(["list", "dict"]),
       where=st.sampled_from(["/predict", "/routes"]))
def test_deep_json_is_refused_never_a_500(hostile: dict[str, Any], depth: int, kind: str, where: str) -> None:
    inner = "[" * depth + "]" * depth if kind == "list" else '{"a":' * depth + "1" + "}" * depth
    field = "sentiment" if where == "/predict" else "canary_fraction"
    body = ('{"' + field + '": ' + inner + '}').encode()
    with hostile["server"].client() as c:
        r = c.request("POST" if where == "/predict" else "PUT", where, content=body,
                      headers={"content-type": "application/json"})
    STATUSES[(f"{where} deep json", r.status_code)] += 1
    assert r.status_code == 422, r.text[:300]
    assert len(r.content) < 5000, "the bad input is echoed short"


def test_a_connection_stays_open_after_a_refused_request(hostile: dict[str, Any]) -> None:
    deep = b'{"sentiment": ' + b"[" * 1000 + b"]" * 1000 + b"}"
    requests = (b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(deep), deep)) + b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
    with socket.create_connection(("127.0.0.1", hostile["server"].port), timeout=30) as s:
        s.sendall(requests)
        received = b""
        while received.count(b"HTTP/1.1 ") < 2 or not received.endswith(b'{"status":"ok"}'):
            chunk = s.recv(65536)
            assert chunk, f"the server closed the connection: {received[:500]!r}"
            received += chunk
    assert received.startswith(b"HTTP/1.1 422") and b"HTTP/1.1 200" in received


def test_size_limits_and_the_echo_are_bounded(hostile: dict[str, Any]) -> None:
    with hostile["server"].client() as c:
        big = c.post("/predict", content=b'{"records": [' + b" " * (3 * 2**20) + b"]}",
                     headers={"content-type": "application/json"})
        assert big.status_code == 413 and "max_body_bytes" in big.json()["detail"]
        long = c.post("/predict", json=_record(hostile, 2, language="x" * 10_000))
        assert long.status_code == 422 and long.json()["detail"][0]["type"] == "string_too_long"
        assert len(long.content) < 1000, "a 10,000-character value is not echoed back"
        fine = c.post("/predict", json=_record(hostile, 3, language="x" * 200, request_id="longest-ok"))
        assert fine.status_code == 200
    _log_flows(hostile, "after-limits")
    rows = logged(hostile["home"] / "lake", ("request_id", "language"))
    assert rows["language"].dropna().str.len().max() <= 200, "the log keeps only what the model saw"


def test_only_json_bodies_are_read(hostile: dict[str, Any]) -> None:
    record = _record(hostile, 4)
    import json

    with hostile["server"].client() as c:
        for media, status in (("text/plain", 415), ("application/x-www-form-urlencoded", 415),
                              ("application/json; charset=utf-8", 200), ("application/problem+json", 200)):
            r = c.post("/predict", content=json.dumps(record).encode(), headers={"content-type": media})
            assert r.status_code == status, (media, r.text)
        assert c.post("/predict", content=json.dumps(record).encode()).status_code == 415  # none declared


def test_bearer_in_any_case_and_an_empty_token_refused_at_start(hostile: dict[str, Any], tmp_path: Path) -> None:
    server = Server(hostile["home"], hostile["params_path"], token="s3cret-token")  # pragma: allowlist secret
    try:
        server.wait_ready()
        record = _record(hostile, 5)
        for scheme in ("Bearer", "bearer", "BEARER", "bEaReR"):
            with server.client(token=None) as c:
                r = c.post("/predict", json=record, headers={"Authorization": f"{scheme} s3cret-token"})
                assert r.status_code == 200, scheme
        with server.client(token=None) as c:
            for header in ("Bearer", "Basic s3cret-token", "Bearer s3cret-tokenX", "Token s3cret-token"):
                assert c.post("/predict", json=record, headers={"Authorization": header}).status_code == 401
    finally:
        server.stop()
    env = {**os.environ, "CTLOOP_HOME": str(tmp_path), "CTLOOP_PARAMS": str(hostile["params_path"]),
           "CTLOOP_SERVING_TOKEN": ""}
    done = subprocess.run([str(Path(sys.executable).with_name("ctloop")), "serve", "--port", "1"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "ctloop: error: CTLOOP_SERVING_TOKEN is set but empty: set a token, or unset it to serve without auth"]
