"""Reading user files with errors that name the file and say what was expected.

Parquet is recognised by its magic bytes, not by its name, so a CSV saved as ``.parquet`` is reported
as such instead of surfacing as a cryptic Arrow error.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING

from ctloop.core.errors import DataUnreadable

if TYPE_CHECKING:
    import pandas as pd

    from ctloop.core.params import DatasetSpec

PARQUET_MAGIC = b"PAR1"


def sniff_format(path: Path) -> str:
    """'parquet' or 'csv' from the file's first bytes; DataUnreadable for anything else."""
    if not path.exists():
        raise DataUnreadable(f"{path}: file not found")
    if path.is_dir():
        raise DataUnreadable(f"{path}: is a directory, expected a Parquet or CSV file")
    with path.open("rb") as fh:
        head = fh.read(4096)
    if not head:
        raise DataUnreadable(f"{path}: file is empty (0 bytes), expected a Parquet or CSV file")
    if head.startswith(PARQUET_MAGIC):
        return "parquet"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        raise DataUnreadable(
            f"{path}: not a Parquet file (no PAR1 magic) and not UTF-8 text: the file is corrupt or binary"
        ) from None
    if path.suffix.lower() == ".parquet":
        kind = "CSV text" if "," in text.splitlines()[0] else "text"
        raise DataUnreadable(f"{path}: named .parquet but holds {kind}, expected Parquet (PAR1 magic bytes)")
    return "csv"


def read_batch(path: Path, contract: DatasetSpec | None = None) -> pd.DataFrame:
    """Read one batch as delivered. Values are not coerced: a wrong type must stay visible to validation."""
    import pandas as pd
    import pyarrow as pa

    fmt = sniff_format(path)
    try:
        if fmt == "parquet":
            return pd.read_parquet(path)
        frame = pd.read_csv(path, low_memory=False)
    except (pa.ArrowException, OSError, ValueError, pd.errors.ParserError, UnicodeDecodeError) as e:
        raise DataUnreadable(f"{path}: unreadable {fmt} file: {e}") from e
    if contract is not None and contract.timestamp in frame.columns:
        # CSV has no timestamp type; parse the contract's timestamp column when every value parses,
        # otherwise leave the text as it is so the type expectation names the column.
        with contextlib.suppress(ValueError, TypeError):
            frame[contract.timestamp] = pd.to_datetime(frame[contract.timestamp], utc=True, format="ISO8601")
    return frame


def read_batches(path: Path, contract: DatasetSpec | None = None) -> pd.DataFrame:
    """One file, or every Parquet and CSV file under a directory (sorted, concatenated)."""
    import pandas as pd

    if not path.is_dir():
        return read_batch(path, contract)
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in (".parquet", ".csv"))
    if not files:
        raise DataUnreadable(f"{path}: no Parquet or CSV file under this directory")
    return pd.concat([read_batch(f, contract) for f in files], ignore_index=True)
