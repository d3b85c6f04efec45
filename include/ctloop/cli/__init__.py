"""``ctloop <verb>``: the public face. DAG tasks, ``dvc.yaml`` stages and tests call the same flows.

One module per verb group (``data``, ``deployment``, ``training``, ``registry``, ``monitoring``, ``lineage``, ``serving``,
``dev``); :mod:`ctloop.cli.app` holds the app and what every verb shares.
"""

from __future__ import annotations

import contextlib
import os
import sys

import typer
from typer.exceptions import TyperException

from ctloop.cli import data, deployment, dev, lineage, monitoring, prompts, registry, serving, training  # noqa: F401  (registers the verbs)
from ctloop.cli.app import alert_in_process, app, quiet_libraries
from ctloop.core.audit import subscribe
from ctloop.core.errors import CtloopError


def hoist_model_option(argv: list[str]) -> list[str]:
    """``--model NAME`` (or ``-m``) given after the verb moves before it, where the app's option reads it:
    every verb takes it in either place. Nothing after ``--`` moves."""
    end = argv.index("--") if "--" in argv else len(argv)
    head, tail = argv[:end], argv[end:]
    moved: list[str] = []
    i = 0
    while i < len(head):
        arg = head[i]
        if arg in ("--model", "-m") and i + 1 < len(head) and i > 0:
            moved += [arg, head[i + 1]]
            del head[i:i + 2]
            continue
        if arg.startswith("--model=") and i > 0:
            moved.append(head.pop(i))
            continue
        i += 1
    return moved + head + tail


def main() -> None:
    quiet_libraries()
    subscribe(alert_in_process)
    try:
        code = app(args=hoist_model_option(sys.argv[1:]), standalone_mode=False)
    except CtloopError as e:
        typer.echo(f"ctloop: error: {e}", err=True)
        sys.exit(e.exit_code)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except typer.Abort:
        sys.exit(130)
    except TyperException as e:  # usage errors (bad option values): one line; no arguments: the help
        if type(e).__name__ == "NoArgsIsHelpError":
            getattr(e, "show", lambda: None)()
            sys.exit(2)
        format_message = getattr(e, "format_message", None)
        message = format_message() if format_message is not None else str(e)
        typer.echo(f"ctloop: error: {' '.join(message.split())}", err=True)
        sys.exit(2)
    except OSError as e:  # the machine, not the input: a full disk, a permission, a vanished file
        where = f" ({e.filename})" if getattr(e, "filename", None) else ""
        typer.echo(f"ctloop: error: {e.strerror or e}{where}", err=True)
        sys.exit(2 if isinstance(e, (FileNotFoundError, PermissionError, IsADirectoryError)) else 1)
    except Exception as e:  # a dependency that failed deep inside a library, or a bug: one line either way
        if os.environ.get("CTLOOP_DEBUG"):
            raise
        text = " ".join(str(e).split())[:400]
        if type(e).__module__.split(".")[0] in ("mlflow", "requests", "urllib3"):
            from ctloop.core.settings import get_settings

            typer.echo(f"ctloop: error: MLflow at {get_settings().tracking_uri}: {text}", err=True)
            sys.exit(2)
        typer.echo(f"ctloop: error: unexpected {type(e).__name__}: {text} (CTLOOP_DEBUG=1 shows the traceback)",
                   err=True)
        sys.exit(1)
    # in non-standalone mode click returns the code of typer.Exit instead of raising it
    sys.exit(code if isinstance(code, int) else 0)


def console() -> None:
    """The ``ctloop`` console script: :func:`main`, then a hard exit once the output is flushed. Native
    thread pools (Arrow's, after a Parquet read) can abort the interpreter's teardown with
    ``terminate called without an active exception`` (apache/arrow#34314) after the verb has done its
    work; the exit code must be the verb's, not SIGABRT's."""
    import logging

    try:
        main()
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe: nothing more to say
            stream.flush()
    logging.shutdown()
    os._exit(code)


if __name__ == "__main__":
    console()
