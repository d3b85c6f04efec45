"""The LLM app's demo (``make demo-llm``) and its data: the customer table its lookup tool reads from the lake.

The golden tickets name customers ``c-001`` .. ``c-007``; the rest of the table is drawn from the
simulator's distributions (seeded), the way a team's CRM export would sit in its lake.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ctloop.data.simulator import TIERS

if TYPE_CHECKING:
    from ctloop.core.settings import Settings

# the golden set's customers: who they are matters to the escalation model (tier, history)
GOLDEN_CUSTOMERS = {
    "c-001": ("enterprise", 1900, 5), "c-002": ("free", 40, 0), "c-003": ("pro", 700, 3),
    "c-004": ("free", 120, 0), "c-005": ("pro", 365, 1), "c-006": ("pro", 900, 2), "c-007": ("enterprise", 2500, 1),
}


def customer_table(n: int = 500, seed: int = 5) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = [{"customer_id": cid, "customer_tier": t, "account_age_days": age, "prior_contacts_30d": prior}
            for cid, (t, age, prior) in GOLDEN_CUSTOMERS.items()]
    for i in range(len(rows) + 1, n + 1):
        rows.append({"customer_id": f"c-{i:03d}", "customer_tier": str(rng.choice(TIERS, p=[0.6, 0.3, 0.1])),
                     "account_age_days": int(rng.gamma(2.0, 300)), "prior_contacts_30d": int(rng.poisson(0.8))})
    return pd.DataFrame(rows)


def write_customers(path: Path, n: int = 500) -> Path:
    """Write the table once (raw data is never rewritten: an existing table is kept)."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        customer_table(n).to_parquet(path, index=False)
    return path


def simulated_tickets(day: date, n: int, seed: int = 7) -> list[dict[str, Any]]:
    """A day of the simulator's tickets as the triage app receives them: the subject as the text, the
    support system's own fields as features, and a customer from the table."""
    from ctloop.data.simulator import SimulationSpec, simulate_day

    frame = simulate_day(day, SimulationSpec(rows=n, seed=seed, text=True)).head(n)
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, 501, size=len(frame))
    keep = ["channel", "product_area", "language", "sentiment", "first_response_minutes", "hour_of_day"]
    return [{"ticket_id": str(r["ticket_id"]), "text": str(r["subject"]), "customer_id": f"c-{int(i):03d}",
             "features": {k: (r[k].item() if hasattr(r[k], "item") else r[k]) for k in keep}}
            for r, i in zip(frame.to_dict("records"), ids, strict=True)]


def _ctloop(env: dict[str, str], *args: str) -> dict[str, Any]:
    """One `ctloop` verb as a user runs it (``--json``); a failure stops the demo with the verb's own line."""
    import json
    import subprocess
    import sys

    out = subprocess.run([str(Path(sys.executable).with_name("ctloop")), *args, "--json"], env=env,
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise DemoFailed(f"ctloop {' '.join(args)}: {out.stderr.strip().splitlines()[-1] if out.stderr.strip() else out.returncode}")
    result: dict[str, Any] = json.loads(out.stdout)
    return result


class DemoFailed(Exception):
    pass


def _escalation_champion(console: Any, settings: Settings, env: dict[str, str]) -> str:
    """The classifier the triage app's escalation tool calls: two simulated weeks ingested and validated,
    trained, evaluated, gated and promoted, verb by verb (the stages of dvc.yaml)."""
    data = settings.home / "demo-llm" / "training_set"
    _ctloop(env, "ingest", "--start", "2026-01-01", "--end", "2026-01-14")
    _ctloop(env, "prepare", "--out-dir", str(data), "--as-of", "2026-01-15", "--reason", "demo-llm: the escalation tool")
    version = str(_ctloop(env, "train", "--data-dir", str(data))["version"])
    _ctloop(env, "evaluate", "--data-dir", str(data), "--suites", "none")
    _ctloop(env, "gate", "--data-dir", str(data))
    _ctloop(env, "promote", version, "--reason", "demo-llm: the escalation tool's first champion")
    console.print(f"support_escalation v{version}: trained on 2026-01-01..14, gated, champion")
    return version


@contextmanager
def _serve(settings: Settings, env: dict[str, str], app: str) -> Iterator[Any]:
    import signal
    import subprocess
    import sys

    from ctloop.dev.client import http_client, wait_ready
    from ctloop.dev.local_airflow import free_port

    port = free_port()
    log_path = settings.home / "demo-llm" / "serve.log"
    with log_path.open("w") as out:
        proc = subprocess.Popen([str(Path(sys.executable).with_name("ctloop")), "serve", "--port", str(port),
                                 "--app", app], env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            with http_client(f"http://127.0.0.1:{port}", None) as client:
                wait_ready(client, timeout=180)
                yield client
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)


def run_llm_demo(tickets: int = 400) -> None:
    """The support-triage LLM app through the loop, on the local model (``make llm-extra``): three prompt
    versions gated (v2 echoes the ticket, so injected lines get into its replies: rejected), v3 rolled
    out step by step on `ctloop serve`, and the day's token use and cost per version."""
    import os
    import time

    from rich.console import Console
    from rich.table import Table

    from ctloop.core.apps import get_app
    from ctloop.core.audit import audit_log
    from ctloop.core.settings import Settings
    from ctloop.dev.local_airflow import telemetry_off_env
    from ctloop.flows.prompt_monitor import monitor_app
    from ctloop.flows.prompt_rollout import advance_prompt_rollout
    from ctloop.flows.prompts import register_version, release_version
    from ctloop.llm.providers import provider_from_spec
    from ctloop.llm.triage import ServedEscalation
    from ctloop.registry import prompts

    console = Console(width=max(160, Console().width))  # the tables stay readable when written to a file
    base = Settings()
    settings = Settings(home=base.home / "demo-llm" / "home")
    if settings.home.exists():
        import shutil

        shutil.rmtree(settings.home)
    settings.home.mkdir(parents=True)
    env = {**os.environ, **telemetry_off_env(), **settings.process_env(), "CTLOOP_MODEL": "support_escalation"}
    spec = get_app(settings, "support_triage")
    provider = provider_from_spec(spec.provider)  # fails here, naming `make llm-extra`, without the extra
    started = time.monotonic()
    console.rule("ctloop demo-llm: the support-triage app, its prompt versions gated and rolled out")
    _escalation_champion(console, settings, env)
    write_customers(spec.customers_path(settings))
    with _serve(settings, env, spec.name) as server:
        escalation = ServedEscalation(spec.tools.escalation, str(server.base_url))
        gates = Table("prompt", "change", "gate", "golden", "injection", "schema", "tokens/request", "cost/1k", "why")
        for n, change in ((1, "first version"), (2, "friendlier: repeats the customer's message"),
                          (3, "shorter reply")):
            v = register_version(settings, spec, settings.project_dir / "apps" / "support_triage" / f"prompt-v{n}.txt",
                                 change)
            r = release_version(settings, spec, v.version, provider, escalation, actor="demo-llm")
            m = r.challenger.metrics
            outcome = "champion" if r.moves else "candidate (rollout)" if r.rollout else "rejected"
            failed = [c.detail for c in r.decision.checks if not c.passed and c.check == "floor"]
            why = "; ".join(failed) if failed else "every floor and suite passed"
            gates.add_row(f"v{v.version}", change, outcome, f"{m['golden_pass_rate']:.0%}",
                          f"{m['injection_pass_rate']:.0%}", f"{m['schema_pass_rate']:.0%}",
                          f"{m['tokens_per_request']:.0f}", f"{m['cost_per_1k_requests']:.4f}", why)
        console.print(gates)
        steps = Table("step", "weight", "outcome", "action", "why")
        stream = simulated_tickets(date(2026, 1, 15), tickets)
        sent = 0
        while sent < len(stream):
            state = prompts.read_rollout(settings, spec.name)
            if not state or state["status"] != "running":
                break
            time.sleep(spec.poll_seconds + 1)  # the server picks up the step's weight
            for ticket in stream[sent:sent + 20]:
                server.post(f"/apps/{spec.name}/answer", json=ticket, timeout=120).raise_for_status()
            sent += 20
            time.sleep(2)  # the request log flushes every second
            analysis, state = advance_prompt_rollout(settings, spec, actor="demo-llm")
            if analysis.action != "wait":
                steps.add_row(str(analysis.step + 1), f"{analysis.weight:.0%}", analysis.outcome, analysis.action,
                              "; ".join(analysis.reasons)[:90])
        console.print(steps)
        console.print(f"{sent} tickets answered through POST /apps/{spec.name}/answer; rollout: "
                      f"{(prompts.read_rollout(settings, spec.name) or {}).get('status')}")
    window = monitor_app(settings, spec, datetime.now(UTC).date())
    usage = Table("prompt", "requests", "tokens in", "tokens out", "tokens/request", "cost", "schema failures",
                  "p95 ms", "ms per tool call")
    for s in window.versions:
        usage.add_row(f"v{s.version}", str(s.requests), str(s.input_tokens), str(s.output_tokens),
                      f"{s.tokens_per_request:.0f}", f"{s.cost:.4f}", f"{s.schema_failure_rate:.1%}",
                      f"{s.p95_latency_ms:.0f}" if s.p95_latency_ms else "-",
                      ", ".join(f"{k} {v:.0f}" for k, v in s.tool_ms.items()))
    console.print(usage)
    aliases = {a: prompts.alias_version(spec.prompt_name, a) for a in ("champion", "previous", "candidate")}
    check = audit_log(settings).verify()
    console.print(f"prompts:/{spec.prompt_name}: {aliases}; audit chain {'intact' if check.ok else 'BROKEN'} "
                  f"({check.entries} entries); MLflow: `mlflow ui --backend-store-uri {settings.tracking_uri}` "
                  f"(experiments ctloop-{spec.name} and ctloop-{spec.name}-monitoring, the Prompts tab)")
    console.print(f"demo-llm took {time.monotonic() - started:.0f} s")
