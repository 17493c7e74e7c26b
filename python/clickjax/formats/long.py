"""Click logs as long tables: one row per impression, grouped into padded sessions.

Most teams keep their own logs as a table with one row per shown result: a session id, the query,
the document, its rank and whether it was clicked. `read_long` turns such a table into the same
batches as the text readers. Rows are grouped and ordered with Arrow and numpy kernels, and the Rust
batch builder applies the session rules, so no Python code runs per session:

    from clickjax.formats.long import read_long

    reader = read_long("impressions.parquet", vocabulary, session="sid", document="url")
    for batch in reader:
        ...  # pyarrow.RecordBatch with the batch contract's columns
    print(reader.stats["sessions_kept"])

Keys are fingerprinted like those of the text readers: a string by its UTF-8 bytes and an integer
by its decimal text. So a table with the Baidu query token field as `query` and the URL MD5 as
`document` gets the same ids as the `baidu` reader. An integer URL id 13 is the same document as
the text `13` in a Yandex log.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from clickjax import _native

__all__ = ["LongTableBatches", "read_long", "read_table"]

PathLike = str | os.PathLike


@dataclass
class LongTableBatches:
    """Batches made from a long table, with the counters of the session rules.

    Attributes:
      batches: RecordBatches with the batch contract's columns, `[batch]` and `[batch, positions]`.
      stats: the counters of the text readers; `lines_read` counts table rows.
      positions: slots per row, P.
    """

    batches: list[pa.RecordBatch]
    stats: dict[str, int] = field(default_factory=dict)
    positions: int = 0

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        return iter(self.batches)


def read_table(source) -> pa.Table:
    """Return `source` as a pyarrow Table.

    Args:
      source: one of
        - a pyarrow Table or RecordBatch;
        - a pandas or polars DataFrame, or any object with the Arrow stream interface
          (`__arrow_c_stream__`);
        - a path to a Parquet (`.parquet`), CSV (`.csv`, `.csv.gz`), TSV (`.tsv`) or Feather/Arrow
          IPC (`.feather`, `.arrow`) file;
        - a list of such paths, whose tables are concatenated.

    Raises:
      ValueError: a path with another suffix.
    """
    if isinstance(source, pa.Table):
        return source
    if isinstance(source, pa.RecordBatch):
        return pa.Table.from_batches([source])
    if isinstance(source, (str, os.PathLike)):
        return _read_file(Path(source))
    if isinstance(source, Sequence):
        return pa.concat_tables([_read_file(Path(path)) for path in source])
    return pa.table(source)


def _read_file(path: Path) -> pa.Table:
    name = path.name.lower()
    if name.endswith((".parquet", ".parq")):
        import pyarrow.parquet as parquet

        return parquet.read_table(path)
    if name.endswith((".csv", ".csv.gz", ".tsv", ".tsv.gz")):
        import pyarrow.csv as csv

        delimiter = "\t" if ".tsv" in name else ","
        return csv.read_csv(path, parse_options=csv.ParseOptions(delimiter=delimiter))
    if name.endswith((".feather", ".arrow", ".ipc")):
        import pyarrow.feather as feather

        return feather.read_table(path)
    raise ValueError(
        f"cannot tell the table format of {path}: expected a name ending in .parquet, .csv, .csv.gz, "
        ".tsv, .feather or .arrow"
    )


def read_long(
    source,
    vocabulary: _native.Vocabulary,
    *,
    session: str = "session",
    query: str = "query",
    document: str = "document",
    position: str = "position",
    click: str = "click",
    positions: int | None = 10,
    batch_size: int = 1024,
    drop_sessions_without_clicks: bool = False,
    min_results: int = 1,
    min_sessions_per_query: int = 1,
) -> LongTableBatches:
    """Group a table of impressions into padded sessions.

    Sessions come in order of their first row, and each session's results in order of rank, so
    dense ids follow the same order as for a text log with the sessions in that order. A session
    must have one query. Other columns are ignored.

    Args:
      source: the table, in any form `read_table` accepts.
      vocabulary: maps keys to dense ids, as for `clickjax.data.read_batches`.
      session, query, document, position, click: column names. `session` may have any type that
        Arrow can hash. `query` and `document` must be strings, binary or integers. `position` is
        the 1-based rank, and `click` is boolean or 0/1.
      positions, batch_size, drop_sessions_without_clicks, min_results, min_sessions_per_query:
        as for `clickjax.data.read_batches`.

    Returns:
      The batches, the counters and the number of slots per row.

    Raises:
      ValueError: a column is missing, has nulls or the wrong type, a click is not 0 or 1, a rank
        is below 1, or a session has rows with different queries.
    """
    table = read_table(source)
    missing = [name for name in (session, query, document, position, click) if name not in table.column_names]
    if missing:
        raise ValueError(f"the table has no column {', '.join(map(repr, missing))}; its columns are {table.column_names}")

    if table.num_rows == 0:
        # Columns of an empty table can have the null type, which no check below accepts.
        table = pa.table({session: pa.array([], pa.int64()), query: pa.array([], pa.string()),
                          document: pa.array([], pa.string()), position: pa.array([], pa.int32()),
                          click: pa.array([], pa.bool_())})

    # Number sessions by first appearance, then order rows by session and rank (a stable sort).
    sessions = pc.dictionary_encode(_column(table, session))
    codes = sessions.indices.to_numpy(zero_copy_only=False)
    ranks = _integers(table, position, pa.int32())
    order = np.lexsort((ranks, codes))
    counts = np.bincount(codes, minlength=len(sessions.dictionary))
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)

    query_keys = _fingerprints(table, query, "query")[order]
    session_queries = query_keys[offsets[:-1]]
    if (query_keys != np.repeat(session_queries, counts)).any():
        first = int(codes[order][np.flatnonzero(query_keys != np.repeat(session_queries, counts))[0]])
        raise ValueError(f"session {sessions.dictionary[first].as_py()!r} has rows with different {query!r} values")

    batches, stats, width = _native.batch_columns(
        vocabulary,
        pa.array(session_queries, pa.uint64()),
        pa.array(offsets, pa.int64()),
        pa.array(_fingerprints(table, document, "document")[order], pa.uint64()),
        pa.array(ranks[order], pa.int32()),
        pa.array(_clicks(table, click)[order], pa.uint8()),
        positions=positions,
        batch_size=batch_size,
        drop_sessions_without_clicks=drop_sessions_without_clicks,
        min_results=min_results,
        min_sessions_per_query=min_sessions_per_query,
    )
    return LongTableBatches(batches=batches, stats=stats, positions=width)


def _column(table: pa.Table, name: str) -> pa.Array:
    """Return a column as one array, with dictionary (categorical) values decoded."""
    values = table.column(name).combine_chunks()
    if pa.types.is_dictionary(values.type):
        values = values.dictionary_decode()
    if values.null_count:
        raise ValueError(f"invalid column {name}: {values.null_count} null values")
    return values


def _fingerprints(table: pa.Table, name: str, role: str) -> np.ndarray:
    return _native.fingerprint(_column(table, name), role, name).to_numpy()


def _integers(table: pa.Table, name: str, dtype: pa.DataType) -> np.ndarray:
    values = _column(table, name)
    if not pa.types.is_integer(values.type):
        raise ValueError(f"invalid column {name}: expected integers, got {values.type}")
    # A safe cast raises on values that do not fit.
    return pc.cast(values, dtype).to_numpy(zero_copy_only=False)


def _clicks(table: pa.Table, name: str) -> np.ndarray:
    values = _column(table, name).to_numpy(zero_copy_only=False)
    if values.dtype != np.bool_ and not np.isin(values, (0, 1)).all():
        raise ValueError(f"invalid column {name}: expected booleans or 0 and 1, got {values.dtype} values")
    return values.astype(np.uint8)
