"""Host-wide exclusive locks (``flock`` on a file under ``CTLOOP_HOME/locks``): one DVC operation at a
time, one alias move at a time, one audit append at a time, whichever process (DAG task, CLI, DVC stage)
asks. The lock goes when the process does, so a killed task never leaves a stale lock behind."""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
