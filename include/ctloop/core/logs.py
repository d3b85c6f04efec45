"""Where the libraries' chatter goes: lines a library prints straight to stdout or stderr (MLflow's
"Successfully registered model ...", its "View run ... at: <url>" when a run ends) are turned into log
records, so a CLI verb's stdout holds only its own output (one JSON object under ``--json``) and its
stderr only its own lines."""

from __future__ import annotations

import contextlib
import io
import logging
import sys
import threading
from collections.abc import Iterator


class _LogLines(io.TextIOBase):
    """A stream whose lines become log records. A handler that itself writes to the redirected stream
    (a console handler in a task process) goes to the stream that was there before, not round again."""

    def __init__(self, logger: logging.Logger, fallback: object) -> None:
        self.logger = logger
        self.fallback = fallback
        self._partial = ""
        self._busy = threading.local()

    def write(self, text: str) -> int:
        if getattr(self._busy, "on", False):
            self.fallback.write(text)  # type: ignore[attr-defined]
            return len(text)
        self._partial += text
        *lines, self._partial = self._partial.split("\n")
        for line in lines:
            self._emit(line)
        return len(text)

    def _emit(self, line: str) -> None:
        if not line.strip():
            return
        self._busy.on = True
        try:
            self.logger.info(line)
        finally:
            self._busy.on = False

    def flush(self) -> None:
        partial, self._partial = self._partial, ""
        self._emit(partial)


@contextlib.contextmanager
def stderr_to_log(name: str) -> Iterator[None]:
    """While the block runs, what is printed to stderr becomes INFO records of logger ``name``."""
    sink = _LogLines(logging.getLogger(name), sys.stderr)
    with contextlib.redirect_stderr(sink):
        try:
            yield
        finally:
            sink.flush()
            sys.stderr.flush()


@contextlib.contextmanager
def library_output_to_log(name: str) -> Iterator[None]:
    """Both streams, for a block that runs library code which prints (MLflow runs, registration)."""
    sink = _LogLines(logging.getLogger(name), sys.stdout)
    with contextlib.redirect_stdout(sink), stderr_to_log(name):
        try:
            yield
        finally:
            sink.flush()
