"""A traffic generator for ``ctloop serve``: the simulated day's requests sent over HTTP, so the prediction
log the monitor reads is what the server wrote. Each record carries its ``request_id`` (the delayed labels
join on it), the ticket id (the sticky canary key) and its event time (the log's partition)."""

from __future__ import annotations

import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

from ctloop.core.errors import CtloopError

if TYPE_CHECKING:
    import httpx
    import pandas as pd

    from ctloop.core.params import Params
    from ctloop.data.store import Lake
    from ctloop.dev.traffic import TrafficSpec


class ServingUnavailable(CtloopError):
    exit_code = 1


def http_client(url: str, token: str | None, timeout: float = 30.0) -> httpx.Client:
    import httpx

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=timeout)


def wait_ready(client: httpx.Client, timeout: float = 120.0, champion: str | None = None) -> dict[str, Any]:
    """Wait until ``/ready`` says yes (and, when given, the champion it serves is ``champion``)."""
    import httpx

    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            r = client.get("/ready")
            last = r.json()
            if r.status_code == 200 and (champion is None or last.get("champion") == champion):
                return dict(last)
        except httpx.HTTPError as e:
            last = str(e)
        time.sleep(0.2)
    raise ServingUnavailable(f"{client.base_url}: not ready with champion {champion or 'any'} after {timeout:.0f}s "
                             f"(last answer: {last})")


def request_records(requests: pd.DataFrame, params: Params, ids: list[str]) -> list[dict[str, Any]]:
    contract = params.dataset
    records = []
    for row, key in zip(requests.to_dict("records"), ids, strict=True):
        rec = {c: (None if _missing(row[c]) else row[c]) for c in contract.features}
        rec["request_id"] = row["request_id"]
        rec[contract.timestamp] = row["ts"].isoformat()
        rec[contract.id] = key
        records.append(rec)
    return records


def send_records(client: httpx.Client, records: list[dict[str, Any]], batch: int = 25,
                 concurrency: int = 4) -> list[dict[str, Any]]:
    """POST the records in batches from ``concurrency`` threads; the answers in record order. A refused
    request raises naming the status and the server's detail."""
    chunks = [records[i:i + batch] for i in range(0, len(records), batch)]

    def send(chunk: list[dict[str, Any]]) -> list[dict[str, Any]]:
        r = client.post("/predict", json={"records": chunk} if batch > 1 else chunk[0])
        if r.status_code != 200:
            raise ServingUnavailable(f"{client.base_url}/predict answered {r.status_code}: {r.text[:300]}")
        body = r.json()
        return list(body["predictions"]) if batch > 1 else [body]

    with ThreadPoolExecutor(concurrency) as pool:
        return [answer for answers in pool.map(send, chunks) for answer in answers]


def wait_logged(lake: Lake, day: date, request_ids: set[str], timeout: float = 60.0) -> int:
    """Wait until every answered request of ``day`` is in the prediction log (the server writes in the
    background); the number of logged rows of the day on the champion and canary routes."""
    import pandas as pd

    from ctloop.data.predictions import prediction_files

    deadline = time.monotonic() + timeout
    logged: set[str] = set()
    while time.monotonic() < deadline:
        files = prediction_files(lake, day)
        if files:
            frame = pd.concat([pd.read_parquet(f, columns=["request_id", "route"]) for f in files])
            logged = set(frame.loc[frame["route"] != "shadow", "request_id"])
            if request_ids <= logged:
                return len(logged)
        time.sleep(0.2)
    raise ServingUnavailable(f"{lake.partition('predictions', day)}: {len(request_ids - logged)} of "
                             f"{len(request_ids)} answered requests not logged after {timeout:.0f}s")


def send_labels(client: httpx.Client, labels: pd.DataFrame, batch: int = 500,
                label_type: type = int) -> dict[str, int]:
    """POST the labels to ``/feedback`` as the labelling system would (``label_type`` float for a
    regression's values); the server's counts, summed."""
    totals = {"accepted": 0, "unknown": 0}
    rows = [{"request_id": r["request_id"], "label": label_type(r["label"]), "labeled_at": r["labeled_at"].isoformat()}
            for r in labels.to_dict("records")]
    for i in range(0, len(rows), batch):
        r = client.post("/feedback", json={"labels": rows[i:i + batch]})
        if r.status_code != 200:
            raise ServingUnavailable(f"{client.base_url}/feedback answered {r.status_code}: {r.text[:300]}")
        body = r.json()
        totals["accepted"] += int(body["accepted"])
        totals["unknown"] += int(body["unknown"])
    return totals


def send_traffic(client: httpx.Client, spec: TrafficSpec, params: Params, lake: Lake, batch: int = 25,
                 concurrency: int = 4) -> list[dict[str, Any]]:
    """Each day: the simulated requests through the server, then that day's delayed labels through its
    ``POST /feedback`` (stamped with the day they arrive)."""
    from ctloop.dev.traffic import day_labels, day_requests

    out = []
    for i in range(spec.days):
        day = spec.start + timedelta(days=i)
        source, requests, _, labeled = day_requests(day, spec, params)  # latency: measured by the server
        started = time.perf_counter()
        answers = send_records(client, request_records(requests, params, list(source[params.dataset.id])), batch, concurrency)
        seconds = time.perf_counter() - started
        logged = wait_logged(lake, day, {a["request_id"] for a in answers})
        sent = send_labels(client, day_labels(day, spec, params, source, requests, labeled))
        served = Counter(f"v{a['model_version']} {a['route']}" for a in answers)
        out.append({"date": day.isoformat(), "rows": len(answers), "logged": logged, "served": dict(served),
                    "champion": Counter(a["model_version"] for a in answers).most_common(1)[0][0],
                    "seconds": round(seconds, 2), "labels": sent["accepted"], "unknown_labels": sent["unknown"],
                    "labels_arrive": (day + timedelta(days=spec.label_delay_days)).isoformat()})
    return out


def send_delivered_day(client: httpx.Client, day: date, frame: pd.DataFrame, params: Params, lake: Lake,
                       label_delay: timedelta = timedelta(hours=12), batch: int = 25,
                       concurrency: int = 4) -> dict[str, Any]:
    """A day of a team's own delivered rows (``frame``: the day's file, label included) as production: each
    row through the server without its label, then the true labels through ``/feedback``, arriving
    ``label_delay`` after each row's event time."""
    import pandas as pd

    contract = params.dataset
    ids = frame[contract.id].astype(str).reset_index(drop=True)
    requests = pd.concat([pd.DataFrame({"request_id": "R" + ids, "ts": frame[contract.timestamp].reset_index(drop=True)}),
                          frame[contract.features].reset_index(drop=True)], axis=1)
    answers = send_records(client, request_records(requests, params, list(ids)), batch, concurrency)
    logged = wait_logged(lake, day, {a["request_id"] for a in answers})
    labels = pd.DataFrame({"request_id": requests["request_id"], "label": frame[contract.target].to_numpy(),
                           "labeled_at": requests["ts"] + label_delay})
    sent = send_labels(client, labels, label_type=float if contract.task == "regression" else int)
    return {"date": day.isoformat(), "rows": len(answers), "logged": logged,
            "served": dict(Counter(f"v{a['model_version']} {a['route']}" for a in answers)),
            "labels": sent["accepted"], "unknown_labels": sent["unknown"]}


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and value != value)
