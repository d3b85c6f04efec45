"""The prediction-log writer: rows handed over on the request path, written to the lake in batches by one
thread, in the layout ``ctloop_monitor`` reads (``ctloop.monitoring.prediction_log``).

Memory is bounded: beyond ``max_queue_rows`` waiting rows, new rows are dropped and counted (``dropped``,
exported as ``ctloop_serving_log_dropped_rows_total``), so slow storage slows nothing but the log. A write
that fails keeps its rows queued for the next attempt. :meth:`close` writes everything still queued.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger("ctloop.serving.log")

Sink = Callable[["pd.DataFrame", str], Any]  # (rows, unique file stem) -> anything


class LogWriter:
    def __init__(self, sink: Sink, columns: list[str], flush_seconds: float = 1.0, flush_rows: int = 20_000,
                 max_queue_rows: int = 200_000) -> None:
        self.sink = sink
        self.columns = columns
        self.flush_seconds = flush_seconds
        self.flush_rows = flush_rows
        self.max_queue_rows = max_queue_rows
        self._rows: list[dict[str, Any]] = []
        self._cond = threading.Condition()
        self._closing = False
        self._seq = 0
        self._stem = f"serve-{socket.gethostname()}-{os.getpid()}-{int(time.time())}"
        self.written = 0
        self.dropped = 0
        self.write_errors = 0
        self._thread = threading.Thread(target=self._run, name="ctloop-log-writer", daemon=True)
        self._thread.start()

    @property
    def depth(self) -> int:
        return len(self._rows)

    def offer(self, rows: list[dict[str, Any]]) -> bool:
        """Queue rows for writing; False (and counted as dropped) when the queue is full."""
        with self._cond:
            if self._closing or len(self._rows) + len(rows) > self.max_queue_rows:
                self.dropped += len(rows)
                return False
            self._rows.extend(rows)
            if len(self._rows) >= self.flush_rows:
                self._cond.notify()
        return True

    def close(self, timeout: float = 60.0) -> None:
        """Write what is queued and stop the thread."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                if not self._closing and len(self._rows) < self.flush_rows:
                    self._cond.wait(self.flush_seconds)
                rows, self._rows = self._rows, []
                closing = self._closing
            if rows:
                self._write(rows, attempts=3 if closing else 1)
            if closing and not self._rows:
                return

    def _write(self, rows: list[dict[str, Any]], attempts: int) -> None:
        import pandas as pd

        for attempt in range(attempts):
            try:
                self._seq += 1
                self.sink(pd.DataFrame.from_records(rows, columns=self.columns), f"{self._stem}-{self._seq:06d}")
                self.written += len(rows)
                return
            except Exception:  # storage trouble must not kill the writer; the rows stay queued
                self.write_errors += 1
                log.exception("prediction log: writing %d rows failed (attempt %d)", len(rows), attempt + 1)
                time.sleep(min(1.0, self.flush_seconds))
        if attempts > 1:  # closing: nowhere left to keep them
            self.dropped += len(rows)
            log.error("prediction log: %d rows could not be written at shutdown", len(rows))
            return
        with self._cond:  # back to the front of the queue, still bounded
            room = max(0, self.max_queue_rows - len(self._rows))
            self.dropped += max(0, len(rows) - room)
            self._rows[:0] = rows[:room]
