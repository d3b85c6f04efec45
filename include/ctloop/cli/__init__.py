"""``ctloop <verb>``: the public face. DAG tasks, ``dvc.yaml`` stages and tests call the same flows.

One module per verb group (``data``, ``training``, ``registry``, ``monitoring``, ``lineage``, ``serving``,
``dev``); :mod:`ctloop.cli.app` holds the app and what every verb shares.
"""

from __future__ import annotations

import sys

import typer
from typer.exceptions import TyperException

from ctloop.cli import data, dev, lineage, monitoring, registry, serving, training  # noqa: F401  (registers the verbs)
from ctloop.cli.app import alert_in_process, app
from ctloop.core.audit import subscribe
from ctloop.core.errors import CtloopError


def main() -> None:
    subscribe(alert_in_process)
    try:
        code = app(standalone_mode=False)
    except CtloopError as e:
        typer.echo(f"ctloop: error: {e}", err=True)
        sys.exit(e.exit_code)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except typer.Abort:
        sys.exit(130)
    except TyperException as e:  # usage errors (bad option values) surface here in non-standalone mode
        show = getattr(e, "show", None)
        if show is not None:
            show()
        sys.exit(2)
    # in non-standalone mode click returns the code of typer.Exit instead of raising it
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
