"""Click logs as padded batches: from raw files through Arrow to numpy and JAX.

The Rust readers of `clickjax._native` parse a raw log into Arrow RecordBatches that follow the batch
contract (P is the page length chosen with `positions`):

| column           | shape              | dtype   |
|------------------|--------------------|---------|
| `query_id`       | `[batch]`          | int32   |
| `doc_id`         | `[batch, positions]` | int32 |
| `query_doc_id`   | `[batch, positions]` | int32 |
| `query_doc_hash` | `[batch, positions]` | int32 |
| `position`       | `[batch, positions]` | int32 |
| `click`          | `[batch, positions]` | uint8 |
| `mask`           | `[batch, positions]` | uint8 |
| `weight`         | `[batch]`          | float32 |

`batch_to_numpy` turns such a RecordBatch into numpy arrays that share memory with the Arrow buffers.
`ClickLog` holds a whole log in memory for training with shuffling; a log far larger than memory can
instead be streamed batch by batch with `read_batches`.

Example:

    vocabulary = Vocabulary()
    train = ClickLog.read("wscd", ["trainSample"], vocabulary)
    vocabulary.freeze()
    test = ClickLog.read("wscd", ["testSample"], vocabulary)
    for batch in train.batches(batch_size=1024):
        ...  # dict of numpy arrays, always exactly 1024 rows
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import jax
import numpy as np
import pyarrow as pa

from clickjax._native import BatchReader
from clickjax._native import Vocabulary

__all__ = [
    "BATCH_COLUMNS",
    "FORMATS",
    "ClickLog",
    "Vocabulary",
    "batch_to_numpy",
    "pad_batch",
    "read_batches",
    "to_jax",
]

FORMATS = ("baidu", "wscd")

# Columns of the batch contract: name -> (numpy dtype, True if padded to [batch, positions]).
BATCH_COLUMNS: dict[str, tuple[np.dtype, bool]] = {
    "query_id": (np.dtype(np.int32), False),
    "doc_id": (np.dtype(np.int32), True),
    "query_doc_id": (np.dtype(np.int32), True),
    "query_doc_hash": (np.dtype(np.int32), True),
    "position": (np.dtype(np.int32), True),
    "click": (np.dtype(np.uint8), True),
    "mask": (np.dtype(np.uint8), True),
    "weight": (np.dtype(np.float32), False),
}

PathLike = str | os.PathLike


def read_batches(
    format: str,
    paths: Sequence[PathLike],
    vocabulary: Vocabulary,
    *,
    positions: int = 10,
    batch_size: int = 1024,
    on_error: str = "strict",
    drop_sessions_without_clicks: bool = False,
) -> BatchReader:
    """Stream a raw click log as Arrow RecordBatches.

    Args:
      format: the log format, one of `FORMATS`.
      paths: files read in order; gzip is detected by its magic bytes, plain text works too.
      vocabulary: maps queries, documents and pairs to dense ids. While it is not frozen, new keys
        get new ids; once frozen, unknown keys get the out-of-vocabulary id 1 and are counted.
      positions: page length P; results ranked below P are dropped and counted.
      batch_size: sessions per RecordBatch; the last one may be smaller.
      on_error: `"strict"` raises `clickjax.errors.ParseError` on the first malformed line;
        `"skip"` drops the malformed session and counts it in `reader.stats`.
      drop_sessions_without_clicks: drop sessions that have no click (they are kept by default,
        since dropping them biases examination estimates).

    Returns:
      An iterator of `pyarrow.RecordBatch` with the batch contract's columns; its `stats` property
      holds the reader's counters (sessions read and kept, results truncated, repeated clicks, ...).
    """
    if format not in FORMATS:
        raise ValueError(f"unknown log format {format!r}; expected one of {', '.join(FORMATS)}")
    return BatchReader(
        format,
        [os.fspath(path) for path in paths],
        vocabulary,
        positions=positions,
        batch_size=batch_size,
        on_error=on_error,
        drop_sessions_without_clicks=drop_sessions_without_clicks,
    )


def batch_to_numpy(batch: pa.RecordBatch) -> dict[str, np.ndarray]:
    """Return the columns of a RecordBatch as numpy arrays that share memory with it.

    Padded columns become `[batch, positions]` arrays, the others `[batch]`. No data is copied for an
    unsliced batch from the Rust readers (its FixedSizeList columns have no validity bitmap). Columns
    outside the batch contract are passed through the same way.

    Raises:
      ValueError: a contract column is missing or has the wrong type.
    """
    rows = batch.num_rows
    arrays: dict[str, np.ndarray] = {}
    for name in batch.schema.names:
        column = batch.column(name)
        if pa.types.is_fixed_size_list(column.type):
            width = column.type.list_size
            values = column.flatten().to_numpy(zero_copy_only=True)
            arrays[name] = values.reshape(rows, width)
        else:
            arrays[name] = column.to_numpy(zero_copy_only=True)
    _check_contract(arrays)
    return arrays


def to_jax(arrays: Mapping[str, np.ndarray]) -> dict[str, jax.Array]:
    """Place numpy batch columns on the default device.

    On JAX's CPU backend a 64-byte aligned numpy array may be aliased rather than copied; JAX does not
    promise it, so callers must not rely on either behaviour. On an accelerator this is the one
    host-to-device copy.
    """
    return {name: jax.device_put(array) for name, array in arrays.items()}


def pad_batch(arrays: Mapping[str, np.ndarray], batch_size: int) -> dict[str, np.ndarray]:
    """Pad a batch with empty sessions up to `batch_size` rows.

    Padding rows have `mask` 0 and `weight` 0 everywhere, so that losses and metrics ignore them while
    every step sees the same shape and nothing is recompiled. A full batch is returned unchanged.
    """
    rows = len(arrays["weight"])
    if rows > batch_size:
        raise ValueError(f"batch has {rows} rows, more than batch_size={batch_size}")
    if rows == batch_size:
        return dict(arrays)
    padded = {}
    for name, array in arrays.items():
        widths = [(0, batch_size - rows)] + [(0, 0)] * (array.ndim - 1)
        padded[name] = np.pad(array, widths)
    return padded


@dataclass
class ClickLog:
    """A click log held in memory as contract columns, ready for shuffled fixed-size batches.

    Attributes:
      columns: the batch contract's columns over all sessions, `[sessions]` or `[sessions, positions]`.
      positions: page length P.
      stats: the reader's counters from parsing (sessions read and kept, truncations, ...).
    """

    columns: dict[str, np.ndarray]
    positions: int
    stats: dict[str, int] = field(default_factory=dict)

    @classmethod
    def read(
        cls,
        format: str,
        paths: Sequence[PathLike],
        vocabulary: Vocabulary,
        *,
        positions: int = 10,
        on_error: str = "strict",
        drop_sessions_without_clicks: bool = False,
        read_batch_size: int = 8192,
    ) -> ClickLog:
        """Read a whole raw log into memory. The arguments are those of `read_batches`."""
        reader = read_batches(
            format,
            paths,
            vocabulary,
            positions=positions,
            batch_size=read_batch_size,
            on_error=on_error,
            drop_sessions_without_clicks=drop_sessions_without_clicks,
        )
        parts = [batch_to_numpy(batch) for batch in reader]
        if parts:
            columns = {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}
        else:
            columns = _empty_columns(positions)
        return cls(columns=columns, positions=positions, stats=dict(reader.stats))

    @property
    def num_sessions(self) -> int:
        """Number of rows (sessions, or groups of identical sessions when aggregated)."""
        return len(self.columns["weight"])

    @property
    def total_weight(self) -> float:
        """Number of sessions the rows stand for, counting `weight`."""
        return float(self.columns["weight"].sum(dtype=np.float64))

    def batches(
        self, batch_size: int, *, shuffle: bool = False, seed: int = 0
    ) -> Iterator[dict[str, np.ndarray]]:
        """Yield batches of exactly `batch_size` rows; the last one is padded with empty sessions.

        Args:
          batch_size: rows per batch.
          shuffle: visit the sessions in a random order drawn from `seed`.
          seed: seed of the permutation; the same seed gives the same order.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        order = None
        if shuffle:
            order = np.random.default_rng(seed).permutation(self.num_sessions)
        for start in range(0, self.num_sessions, batch_size):
            if order is None:
                rows = slice(start, start + batch_size)
            else:
                rows = order[start : start + batch_size]
            batch = {name: column[rows] for name, column in self.columns.items()}
            yield pad_batch(batch, batch_size)

    def num_batches(self, batch_size: int) -> int:
        """Number of batches `batches(batch_size)` yields."""
        return -(-self.num_sessions // batch_size)


def _empty_columns(positions: int) -> dict[str, np.ndarray]:
    columns = {}
    for name, (dtype, padded) in BATCH_COLUMNS.items():
        shape = (0, positions) if padded else (0,)
        columns[name] = np.zeros(shape, dtype)
    return columns


def _check_contract(arrays: Mapping[str, np.ndarray]) -> None:
    for name, (dtype, padded) in BATCH_COLUMNS.items():
        if name not in arrays:
            raise ValueError(f"batch has no column {name!r}; expected the columns {list(BATCH_COLUMNS)}")
        array = arrays[name]
        if array.dtype != dtype:
            raise ValueError(f"column {name!r} has dtype {array.dtype}, expected {dtype}")
        expected_ndim = 2 if padded else 1
        if array.ndim != expected_ndim:
            raise ValueError(
                f"column {name!r} has shape {array.shape}, expected {expected_ndim} dimensions"
            )
