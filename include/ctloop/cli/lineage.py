"""``ctloop`` verbs: lineage, reproduction and the audit trail."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from ctloop.cli.app import JsonFlag, app, audit_app, emit, runtime


@app.command()
def lineage(
    version: Annotated[str, typer.Argument(help="model version")],
    as_json: JsonFlag = False,
) -> None:
    """The chain: version <- run <- training set (DVC) <- curated partitions <- raw batches <- trigger.
    Exit 1 when a link no longer holds (a raw batch changed or is gone, a data version left the cache)."""
    from ctloop.flows.lineage import resolve_lineage

    settings, params, lake = runtime()
    chain = resolve_lineage(settings, params, lake, version)
    if as_json:
        emit(chain.to_dict(), True, "")
    else:
        from rich.console import Console

        from ctloop.views import lineage_tree

        Console(width=None if Console().is_terminal else 150).print(lineage_tree(chain))
    if not chain.complete:
        raise typer.Exit(1)


@app.command()
def reproduce(
    version: Annotated[str, typer.Argument(help="model version")],
    tolerance: Annotated[float, typer.Option(help="largest metric difference still counted as reproduced")] = 0.0,
    as_json: JsonFlag = False,
) -> None:
    """Pull VERSION's training set back with DVC, retrain with its recorded params and compare with the
    registered model. Exit 1 (with the reasons) when the metrics differ."""
    from ctloop.core.errors import NotReproduced
    from ctloop.flows.lineage import Reproduction
    from ctloop.flows.lineage import reproduce as reproduce_version

    settings, params, lake = runtime()
    try:
        result = reproduce_version(settings, params, lake, version, tolerance)
    except NotReproduced as e:
        if as_json and isinstance(e.result, Reproduction):
            emit(e.result.to_dict(), True, "")
        raise
    emit(result.to_dict(), as_json,
          f"v{version} reproduced from data version {result.data_version}: metrics identical "
          f"({', '.join(f'{k} {v:.6f}' for k, v in result.reproduced.items())}), max score difference "
          f"{result.max_score_difference:g}")


@audit_app.command("verify")
def audit_verify(as_json: JsonFlag = False) -> None:
    """Check the hash chain; exit 1 and name the first bad line when an entry was edited, removed or reordered."""
    from ctloop.core.audit import audit_log
    from ctloop.core.settings import get_settings

    log = audit_log(get_settings())  # one chain for the deployment
    result = log.verify()
    emit(result.to_dict() | {"log": str(log.path)}, as_json,
          f"{log.path}: {result.entries} entries, chain intact" if result.ok else
          f"{log.path}:{result.bad_line}: {result.problem}")
    if not result.ok:
        raise typer.Exit(1)


@audit_app.command("show")
def audit_show(
    since: Annotated[str | None, typer.Option(help="only entries at or after this time (ISO 8601, UTC if naive)")] = None,
    kind: Annotated[str | None, typer.Option(help="only this kind of decision")] = None,
    as_json: JsonFlag = False,
) -> None:
    """The decisions of every model, oldest first (``--model``: that model's only)."""
    from datetime import datetime

    from ctloop.core.audit import audit_log, entries_since
    from ctloop.core.settings import get_settings

    settings = get_settings()  # one chain for the deployment
    try:
        floor = datetime.fromisoformat(since) if since else None
    except ValueError as e:
        raise typer.BadParameter(f"--since {since!r}: expected an ISO 8601 time such as 2026-01-31T12:00") from e
    entries = [e for e in entries_since(audit_log(settings).entries(), floor) if kind is None or e["kind"] == kind]
    if os.environ.get("CTLOOP_MODEL"):
        entries = [e for e in entries if e.get("model") == os.environ["CTLOOP_MODEL"]]
    if as_json:
        emit({"entries": entries}, True, "")
        return
    for entry in entries:
        reasons = f" - {'; '.join(entry['reasons'])}" if entry["reasons"] else ""
        model = f"{entry['model']}: " if entry.get("model") else ""
        typer.echo(f"#{entry['seq']} {entry['at'][:19]} {entry['kind']:<13} {entry['outcome']:<10} "
                   f"{model}{entry['subject']}{reasons}"[:400])
