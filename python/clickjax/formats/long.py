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

`features=[...]` adds a float32 `features` column `[batch, positions, features]`: each named
column is either numeric (one feature) or a list of the same length in every row (such as an
embedding), and the features are concatenated in the order named.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from clickjax import _native

__all__ = ["LongTableBatches", "batch_impressions", "feature_matrix", "read_long", "read_table"]

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


def read_table(source: object) -> pa.Table:
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
    if not name.endswith(_TABLE_SUFFIXES):
        raise ValueError(
            f"cannot tell the table format of {path}: expected a name ending in .parquet, .csv, .csv.gz, "
            ".tsv, .feather or .arrow"
        )
    if not path.exists():
        # pyarrow's own message buries the path, so raise the error the text readers raise.
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), str(path))
    if name.endswith((".parquet", ".parq")):
        import pyarrow.parquet as parquet

        return parquet.read_table(path)
    if name.endswith((".csv", ".csv.gz", ".tsv", ".tsv.gz")):
        import pyarrow.csv as csv

        delimiter = "\t" if ".tsv" in name else ","
        return csv.read_csv(path, parse_options=csv.ParseOptions(delimiter=delimiter))
    import pyarrow.feather as feather

    return feather.read_table(path)


_TABLE_SUFFIXES = (".parquet", ".parq", ".csv", ".csv.gz", ".tsv", ".tsv.gz", ".feather", ".arrow", ".ipc")


def read_long(
    source: object,
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
    features: Sequence[str] = (),
) -> LongTableBatches:
    """Group a table of impressions into padded sessions.

    Sessions come in order of their first row, and each session's results in order of rank, so
    dense ids follow the same order as for a text log with the sessions in that order. A session
    must have one query. Other columns are ignored.

    Args:
      source: the table, in any form `read_table` accepts.
      vocabulary: maps keys to dense ids, as for `clickjax.data.read_batches`.
      session: name of the session column, of any type that Arrow can hash.
      query: name of the query column: strings, binary or integers.
      document: name of the document column: strings, binary or integers.
      position: name of the column with the 1-based rank.
      click: name of the click column, boolean or 0/1.
      positions: as for `clickjax.data.read_batches`.
      batch_size: as for `clickjax.data.read_batches`.
      drop_sessions_without_clicks: as for `clickjax.data.read_batches`.
      min_results: as for `clickjax.data.read_batches`.
      min_sessions_per_query: as for `clickjax.data.read_batches`.
      features: columns to concatenate into the `features` column, `[batch, positions,
        features]` float32; see `feature_matrix`.

    Returns:
      The batches, the counters and the number of slots per row.

    Raises:
      ValueError: a column is missing, has nulls or the wrong type, a click is not 0 or 1, a rank
        is below 1, a feature list has another length than in the first row, or a session has
        rows with different queries.
    """
    table = read_table(source)
    missing = [name for name in (session, query, document, position, click, *features) if name not in table.column_names]
    if missing:
        raise ValueError(f"the table has no column {', '.join(map(repr, missing))}; its columns are {table.column_names}")

    if table.num_rows == 0:
        # Columns of an empty table can have the null type, which no check below accepts.
        table = pa.table({session: pa.array([], pa.int64()), query: pa.array([], pa.string()),
                          document: pa.array([], pa.string()), position: pa.array([], pa.int32()),
                          click: pa.array([], pa.bool_())})

    # Number sessions by first appearance.
    sessions = pc.dictionary_encode(_column(table, session))
    keys = None
    if records_new_keys(vocabulary):
        keys = (_native.key_text(_column(table, query), query), _native.key_text(_column(table, document), document))
    return batch_impressions(
        vocabulary,
        session=sessions.indices.to_numpy(zero_copy_only=False),
        query=_fingerprints(table, query, "query"),
        document=_fingerprints(table, document, "document"),
        position=_integers(table, position, pa.int32()),
        click=_clicks(table, click),
        # An empty table yields no batch, so its feature columns need no check.
        features=feature_matrix(table, features) if features and table.num_rows else None,
        describe_session=lambda code: f"session {sessions.dictionary[code].as_py()!r} has rows with different {query!r} values",
        keys=keys,
        positions=positions,
        batch_size=batch_size,
        drop_sessions_without_clicks=drop_sessions_without_clicks,
        min_results=min_results,
        min_sessions_per_query=min_sessions_per_query,
    )


def batch_impressions(
    vocabulary: _native.Vocabulary,
    *,
    session: np.ndarray,
    query: np.ndarray,
    document: np.ndarray,
    position: np.ndarray,
    click: np.ndarray,
    extra: Sequence[tuple[str, np.ndarray]] = (),
    session_columns: Sequence[tuple[str, np.ndarray]] = (),
    features: np.ndarray | None = None,
    describe_session: Callable[[int], str] = lambda code: f"session {code} has rows with different queries",
    keys: tuple[pa.Array, pa.Array] | None = None,
    **rules: Any,
) -> LongTableBatches:
    """Group impressions by session, order each session by rank and pad them with the Rust batcher.

    Args:
      vocabulary: maps keys to dense ids.
      session: `[rows]` integer session numbers 0, 1, ... in order of first appearance.
      query: `[rows]` uint64 query fingerprints from `_native.fingerprint`.
      document: `[rows]` uint64 document fingerprints.
      position: `[rows]` int32 ranks.
      click: `[rows]` uint8, 0 or 1.
      extra: `[batch, positions]` columns to add, by name (a Baidu behaviour column or `label`),
        each `[rows]` float32 or int32 as the column requires.
      session_columns: int32 `[batch]` columns to add (`frequency_bucket`), each `[rows]`; a
        session takes the value of its first row.
      features: `[rows, features]` float32, or None for no `features` column.
      describe_session: message for a session whose rows have different queries, given its number.
      keys: the query and document key texts, each `[rows]` large_binary from `_native.key_text`,
        for a vocabulary that records keys; None to store no keys.
      **rules: `positions`, `batch_size`, `drop_sessions_without_clicks`, `min_results` and
        `min_sessions_per_query`, as for `clickjax.data.read_batches`.

    Raises:
      ValueError: a session has rows with different queries, or the Rust batcher rejects a column.
    """
    # Order rows by session and rank (a stable sort).
    order = np.lexsort((position, session))
    counts = np.bincount(session, minlength=int(session.max()) + 1 if len(session) else 0)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)

    query_keys = query[order]
    session_queries = query_keys[offsets[:-1]]
    differs = query_keys != np.repeat(session_queries, counts)
    if differs.any():
        raise ValueError(describe_session(int(session[order][np.flatnonzero(differs)[0]])))

    starts = order[offsets[:-1]]
    width = 0 if features is None else features.shape[1]
    batches, stats, positions = _native.batch_columns(
        vocabulary,
        pa.array(session_queries, pa.uint64()),
        pa.array(offsets, pa.int64()),
        pa.array(document[order], pa.uint64()),
        pa.array(position[order], pa.int32()),
        pa.array(click[order], pa.uint8()),
        extra=[(name, pa.array(values[order])) for name, values in extra],
        session_columns=[(name, pa.array(values[starts], pa.int32())) for name, values in session_columns],
        features=None if features is None else pa.array(features[order].reshape(-1), pa.float32()),
        feature_width=width,
        query_keys=None if keys is None else keys[0].take(pa.array(starts, pa.int64())),
        document_keys=None if keys is None else keys[1].take(pa.array(order, pa.int64())),
        **rules,
    )
    return LongTableBatches(batches=batches, stats=stats, positions=positions)


def feature_matrix(
    table: pa.Table, names: Sequence[str], *, where: str = "", row_numbers: np.ndarray | None = None
) -> np.ndarray:
    """Concatenate feature columns into one `[rows, features]` float32 matrix.

    Args:
      table: the table.
      names: columns in order. Each is numeric (integer, float16, float32 or float64: one feature)
        or a list, large list or fixed-size list of numbers with the same length in every row (one
        feature per element, such as a 768-value embedding). Float16 and float64 are converted to
        float32.
      where: prefix of error messages, such as the file name.
      row_numbers: the row number that errors give for each table row, if not its index.

    Raises:
      ValueError: a column is missing, has nulls, is not numeric, or a list has another length
        than in the first row.
    """
    if row_numbers is None:
        row_numbers = np.arange(table.num_rows)
    blocks = [_feature_block(table, name, where, row_numbers) for name in names]
    if not blocks:
        return np.zeros((table.num_rows, 0), np.float32)
    return np.concatenate(blocks, axis=1)


def _feature_block(table: pa.Table, name: str, where: str, row_numbers: np.ndarray) -> np.ndarray:
    if name not in table.column_names:
        raise ValueError(f"{where}missing feature column {name!r}; the columns are {table.column_names}")
    values = _storage(table.column(name).combine_chunks())
    rows = len(values)
    if values.null_count:
        row = int(np.flatnonzero(values.is_null().to_numpy(zero_copy_only=False))[0])
        raise ValueError(f"{where}row {row_numbers[row]}, column {name!r}: null feature value; fill or drop it")
    if _is_number(values.type):
        return _as_float32(values, name, where).reshape(rows, 1)
    if not (pa.types.is_list(values.type) or pa.types.is_large_list(values.type) or pa.types.is_fixed_size_list(values.type)):
        raise ValueError(f"{where}column {name!r}: a feature column must be numeric or a list of numbers, got {values.type}")
    if pa.types.is_fixed_size_list(values.type):
        width = values.type.list_size
    else:
        lengths = pc.list_value_length(values).to_numpy(zero_copy_only=False)
        width = int(lengths[0]) if rows else 0
        bad = np.flatnonzero(lengths != width)
        if len(bad):
            row = int(bad[0])
            raise ValueError(
                f"{where}row {row_numbers[row]}, column {name!r}: {lengths[row]} features, but row "
                f"{row_numbers[0]} has {width}; every row needs the same number"
            )
    flat = _storage(values.flatten())
    if not _is_number(flat.type):
        raise ValueError(f"{where}column {name!r}: a feature list must hold numbers, got {values.type}")
    if flat.null_count:
        row = int(np.flatnonzero(flat.is_null().to_numpy(zero_copy_only=False))[0]) // max(width, 1)
        raise ValueError(f"{where}row {row_numbers[row]}, column {name!r}: null feature value; fill or drop it")
    return _as_float32(flat, name, where).reshape(rows, width)


def _storage(values: pa.Array) -> pa.Array:
    """Return the storage of an extension array (such as a Hugging Face Array2D), or the array."""
    return values.storage if isinstance(values, pa.ExtensionArray) else values


def _is_number(dtype: pa.DataType) -> bool:
    return pa.types.is_integer(dtype) or pa.types.is_floating(dtype)


def _as_float32(values: pa.Array, name: str, where: str) -> np.ndarray:
    array = values.to_numpy(zero_copy_only=False)
    if array.dtype != np.float32 and pa.types.is_integer(values.type) and np.abs(array).max(initial=0) > 2**24:
        raise ValueError(f"{where}column {name!r}: integers above 2**24 lose precision as float32 features")
    return array.astype(np.float32, copy=False)


def _column(table: pa.Table, name: str) -> pa.Array:
    """Return a column as one array, with dictionary (categorical) values decoded."""
    values = table.column(name).combine_chunks()
    if pa.types.is_dictionary(values.type):
        values = values.dictionary_decode()
    if values.null_count:
        raise ValueError(f"invalid column {name}: {values.null_count} null values")
    return values


def records_new_keys(vocabulary: _native.Vocabulary) -> bool:
    """Return whether reading into `vocabulary` stores key texts: it records keys and is open."""
    return vocabulary.records_keys and not vocabulary.frozen


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
