"""``ctloop`` verbs: serving: the server, its routes, and the alerts the server hands off.

``ctloop serve`` never imports Airflow (a test holds it): an alert-worthy decision it records (a stopped
canary) is delivered by a separate ``ctloop alerts send SEQ`` process, which does.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ctloop.cli.app import JsonFlag, alert_in_process, alerts_app, app, emit, runtime
from ctloop.core.errors import ConfigError

if TYPE_CHECKING:
    from ctloop.core.params import Params


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 8000,
    llm_apps: Annotated[list[str] | None, typer.Option(
        "--app", metavar="NAME", help="also answer this LLM app (apps/NAME.yaml) at POST /apps/NAME/answer; "
                                      "repeat for more")] = None,
) -> None:
    """Serve each model's @champion over HTTP: POST /models/NAME/predict (and /predict with one model);
    /health /ready /models, per model /model /metrics /feedback and PUT /routes, with the canary and shadow
    routes of the spec's `serving` and the routes file. Every model of the deployment, or the one --model
    names. SIGTERM drains and flushes."""
    from ctloop.core.audit import subscribe, unsubscribe
    from ctloop.core.params import load_params
    from ctloop.core.settings import get_settings
    from ctloop.serving.app import serve as run

    settings = get_settings()
    # the one --model names (or the only one), else every model of the deployment
    names = [settings.model] if settings.model is not None and settings.params is None else settings.model_names()
    if not names:
        raise ConfigError(f"{settings.models_dir}: no model specs (<name>.yaml) to serve")
    specs: dict[str, Params] = {}
    broken: dict[str, str] = {}
    for name in names:
        try:
            specs[name] = load_params(settings.for_model(name).spec_path)
        except ConfigError as e:
            if len(names) == 1:
                raise
            broken[name] = str(e)  # its routes answer 503 with this; the other models are served
            typer.echo(f"ctloop serve: not serving {name}: {e}", err=True)
    threads = [p.serving.threads for p in specs.values() if p.serving.threads is not None]
    if threads:  # before any OpenMP runtime loads (threadpoolctl limits it after)
        os.environ.setdefault("OMP_NUM_THREADS", str(min(threads)))
    unsubscribe(alert_in_process)
    subscribe(alert_out_of_process)
    from ctloop.core.apps import get_app

    apps = {name: get_app(settings, name) for name in llm_apps or []}
    run(settings, specs, host, port, broken, apps)


def alert_out_of_process(entry: dict[str, Any], settings: Any) -> None:
    """Hand an alert-worthy entry to ``ctloop alerts send`` (its own process: it imports Airflow's notifiers,
    the server does not); the server never waits for it."""
    from ctloop.decisions.alerts import alert_from_audit

    if alert_from_audit(entry) is None:
        return
    subprocess.Popen([str(Path(sys.executable).with_name("ctloop")), "alerts", "send", str(entry["seq"])],
                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, start_new_session=True)


@alerts_app.command("send")
def alerts_send(
    seq: Annotated[int, typer.Argument(help="the audit entry's sequence number")],
    as_json: JsonFlag = False,
) -> None:
    """Send the alert an audit entry raises through the alerts connection (what `ctloop serve` hands off)."""
    from ctloop.airflow_edge import alert_on_audit
    from ctloop.core.audit import audit_log, unsubscribe
    from ctloop.core.settings import get_settings

    unsubscribe(alert_in_process)
    settings = get_settings()
    entry = next((e for e in audit_log(settings).entries() if e.get("seq") == seq), None)
    if entry is None:
        raise ConfigError(f"{audit_log(settings).path}: no audit entry #{seq}")
    settings = settings.for_model(entry.get("model"))  # the alerts spec of the model the entry is about
    delivery = alert_on_audit(entry, settings)
    body = delivery.to_dict() if delivery is not None else {"event": None, "delivered": False}
    emit(body, as_json, f"audit #{seq}: " + ("no alert" if delivery is None else
                                             f"{delivery.event} {'sent' if delivery.delivered else 'not sent'}"))


@app.command()
def routes(
    canary: Annotated[float | None, typer.Option(help="share of request keys sent to the canary (0 stops it)")] = None,
    canary_alias: Annotated[str | None, typer.Option("--canary-alias", help="challenger or candidate")] = None,
    shadow: Annotated[bool | None, typer.Option("--shadow/--no-shadow", help="shadow-score every request")] = None,
    shadow_alias: Annotated[str | None, typer.Option("--shadow-alias", help="challenger or candidate")] = None,
    url: Annotated[str | None, typer.Option(help="apply through a running server's PUT /routes at once")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Show or change the serving routes at run time (servers pick a change up within serving.poll_seconds)."""
    from ctloop.data.routes import read_routes, routes_path, write_routes

    settings, params, _ = runtime()
    changes = {k: v for k, v in {"canary_fraction": canary, "canary_alias": canary_alias, "shadow": shadow,
                                 "shadow_alias": shadow_alias}.items() if v is not None}
    if url:
        from ctloop.dev.client import http_client

        token = settings.serving_token.get_secret_value() if settings.serving_token else None
        with http_client(url, token) as client:
            r = client.put("/routes", json=changes) if changes else client.get("/model")
        if r.status_code != 200:
            raise ConfigError(f"{url}: {r.status_code} {r.text[:300]}")
        current = r.json()["routes"]
    else:
        try:
            routes_now = read_routes(settings.state_dir, params.serving)
            if changes:
                routes_now = routes_now.changed("ctloop routes", **changes)
                write_routes(settings.state_dir, routes_now)
        except ValueError as e:
            raise ConfigError(str(e)) from e
        current = routes_now.to_dict()
    text = (f"canary: {current['canary_fraction']:.0%} to @{current['canary_alias']}"
            + (f" (stopped {current['stopped']['at']}: {'; '.join(current['stopped']['reasons'])})"
               if current.get("stopped") else "")
            + f"\nshadow: {'@' + current['shadow_alias'] if current['shadow'] else 'off'}"
            + f"\nfile:   {routes_path(settings.state_dir)}")
    emit(current, as_json, text)
