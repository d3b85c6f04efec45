"""The prediction-log writer: rows handed over on the request path, written to the lake in batches by one
thread, in the layout ``<model>__monitor`` reads (``ctloop.data.predictions``).

Memory is bounded: beyond ``max_queue_rows`` waiting rows (queued or being written), new rows are dropped
and counted (``dropped``, exported as ``ctloop_serving_log_dropped_rows_total``), so slow storage slows
nothing but the log. A write that fails on storage (an ``OSError``: disk full, permissions) keeps its rows
queued for the next attempt. A write that fails on the rows themselves is split until the rows that cannot
be written are found: they go to the dead-letter sink with the reason (``dead_lettered``), and every
other row is written, so one bad row never stops the log. :meth:`close` writes everything still queued.
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
DeadLetter = Callable[[list[dict[str, Any]], str, str], Any]  # (rows, reason, unique stem) -> anything


class LogWriter:
    def __init__(self, sink: Sink, columns: list[str], flush_seconds: float = 1.0, flush_rows: int = 20_000,
                 max_queue_rows: int = 200_000, dead_letter: DeadLetter | None = None) -> None:
        self.sink = sink
        self.dead_letter = dead_letter
        self.columns = columns
        self.flush_seconds = flush_seconds
        self.flush_rows = flush_rows
        self.max_queue_rows = max_queue_rows
        self._rows: list[dict[str, Any]] = []
        self._in_flight = 0
        self._cond = threading.Condition()
        self._closing = False
        self._seq = 0
        self._stem = f"serve-{socket.gethostname()}-{os.getpid()}-{int(time.time())}"
        self.written = 0
        self.dropped = 0
        self.dead_lettered = 0
        self.write_errors = 0
        self._thread = threading.Thread(target=self._run, name="ctloop-log-writer", daemon=True)
        self._thread.start()

    @property
    def depth(self) -> int:
        """Rows not yet written: queued, and taken for the write in progress."""
        return len(self._rows) + self._in_flight

    def offer(self, rows: list[dict[str, Any]]) -> bool:
        """Queue rows for writing; False (and counted as dropped) when the queue is full."""
        with self._cond:
            if self._closing or self.depth + len(rows) > self.max_queue_rows:
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
                self._in_flight = len(rows)
                closing = self._closing
            if rows:
                left = self._write(rows, attempts=3 if closing else 1)
                with self._cond:
                    self._in_flight = 0
                    if left:  # storage trouble: back to the front of the queue, still bounded
                        room = max(0, self.max_queue_rows - len(self._rows))
                        self.dropped += max(0, len(left) - room)
                        self._rows[:0] = left[:room]
            if closing and not self._rows:
                return

    def _next_stem(self) -> str:
        self._seq += 1
        return f"{self._stem}-{self._seq:06d}"

    def _write(self, rows: list[dict[str, Any]], attempts: int) -> list[dict[str, Any]]:
        """Write ``rows``; the rows still to write when storage failed every attempt. A retry writes under
        the same file stem (replacing, never duplicating, what a failed attempt left)."""
        stem = self._next_stem()
        for attempt in range(attempts):
            try:
                self._write_isolating(rows, stem)
                return []
            except OSError:  # storage: the rows are fine, the place is not
                self.write_errors += 1
                log.exception("prediction log: writing %d rows failed (attempt %d)", len(rows), attempt + 1)
                time.sleep(min(1.0, self.flush_seconds))
        if attempts > 1:  # closing: nowhere left to keep them
            self.dropped += len(rows)
            log.error("prediction log: %d rows could not be written at shutdown", len(rows))
            return []
        return rows

    def _write_isolating(self, rows: list[dict[str, Any]], stem: str) -> None:
        """Write the rows; when they cannot be written as they are, halve until the rows at fault are alone,
        and dead-letter those. Storage errors propagate."""
        import pandas as pd

        try:
            self.sink(pd.DataFrame.from_records(rows, columns=self.columns), stem)
            self.written += len(rows)
            return
        except OSError:
            raise
        except Exception as e:
            self.write_errors += 1
            if len(rows) > 1:
                mid = len(rows) // 2
                self._write_isolating(rows[:mid], f"{stem}a")
                self._write_isolating(rows[mid:], f"{stem}b")
                return
            reason = f"{type(e).__name__}: {e}"[:500]
        self.dead_lettered += 1
        log.error("prediction log: row %s cannot be written (%s); kept in the dead-letter file",
                  str(rows[0].get("request_id"))[:80], reason)
        if self.dead_letter is not None:
            self.dead_letter(rows, reason, stem)
