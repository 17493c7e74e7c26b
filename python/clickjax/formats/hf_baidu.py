"""Baidu-ULTR as pre-processed for Hugging Face: Feather or Parquet tables of clicks or annotations.

Two layouts exist, and `read_hf_baidu` detects which one a file has from its schema:

- one row per document, as the GitHub builder of the Hugging Face datasets writes them
  (`part-{P}_split-{S}.feather`, `validation.feather`): `query_no` numbers the sessions, and each
  row has `query_id`, `query_md5`, `url_md5`, `text_md5`, `position`, `click`, `media_type`, the
  behaviour columns `displayed_time`, `serp_height` and `slipoff_count_after_click`, the embedding
  `query_document_embedding` (768 float16 values) and lexical features (`bm25`, `bm25_title`,
  ...); validation files add `label` and `frequency_bucket`;
- one row per query, as the Hugging Face loading script returns them and `Dataset.to_parquet`
  saves them: `query_id` and `query_md5` per row, the per-document values as lists of `n`
  entries (`url_md5`, `text_md5`, `click`, `position`, `media_type`, `bm25`, `title_bm25`, ...)
  and `query_document_embedding` as an `(n, 768)` float16 array. The annotation config has no
  `click` or `position`, but `label` lists and a `frequency_bucket` per query.

Rows become the batch contract like a raw `baidu` log: the query key is `query_md5` (or
`query_id` with `query_key="query_id"`, although Baidu qids are not unique), the document key
`url_md5` or `text_md5` (`document_key="url"` or `"text"`), `click` and `position` map to the
contract (without them, no click and ranks 1, 2, ... in row order), `behaviour=[...]` adds
behaviour columns (`multimedia_type` from `media_type`), `label` becomes the int32 `label` column
and `frequency_bucket` the int32 `[batch]` column. `features=[...]` concatenates numeric columns
and the embedding into `features`, `[batch, positions, features]` float32. The builder's and the
loading script's names of the title and abstract BM25 (`bm25_title`, `title_bm25`, ...) both find
the column a file has.

Every file is read into memory; the sessions of all files are then padded by the Rust batcher
of `clickjax.formats.long`, with no Python code per session:

    reader = read_hf_baidu(["part-0_split-0.feather"], vocabulary, features=["bm25", "query_document_embedding"])
    for batch in reader:
        ...  # pyarrow.RecordBatch with the batch contract's columns and `features`
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from clickjax import _native
from clickjax.formats.long import (
    LongTableBatches,
    _storage,
    batch_impressions,
    feature_matrix,
    read_table,
    records_new_keys,
)

__all__ = ["BEHAVIOUR_SOURCES", "FEATURE_ALIASES", "detect_layout", "read_hf_baidu"]

# Behaviour column of the batch -> column of the export, where the names differ.
BEHAVIOUR_SOURCES = {"multimedia_type": "media_type"}

# The GitHub builder and the loading script name two BM25 columns differently.
FEATURE_ALIASES = {
    "bm25_title": "title_bm25",
    "title_bm25": "bm25_title",
    "bm25_abstract": "abstract_bm25",
    "abstract_bm25": "bm25_abstract",
}

# Columns with one value per document, which the per-query layout stores as lists.
_DOCUMENT_COLUMNS = ("url_md5", "text_md5", "click", "position", "label")

_QUERY_KEYS = ("query_md5", "query_id")

_MAX_LABEL = 4
_MAX_FREQUENCY_BUCKET = 9


def detect_layout(schema: pa.Schema) -> str:
    """Return `"query"` if the per-document columns of `schema` are lists, else `"document"`.

    Raises:
      ValueError: the schema has none of `url_md5`, `text_md5`, `click`, `position` and `label`.
    """
    for name in _DOCUMENT_COLUMNS:
        if name in schema.names:
            return "query" if _is_list(_storage_type(schema.field(name).type)) else "document"
    raise ValueError(
        f"no column of a Baidu-ULTR export: expected some of {', '.join(_DOCUMENT_COLUMNS)}, got {schema.names}"
    )


def read_hf_baidu(
    source: object,
    vocabulary: _native.Vocabulary,
    *,
    behaviour: Sequence[str] = (),
    features: Sequence[str] = (),
    document_key: str | None = None,
    query_key: str = "query_md5",
    positions: int | None = 10,
    batch_size: int = 1024,
    drop_sessions_without_clicks: bool = False,
    min_results: int = 1,
    min_sessions_per_query: int = 1,
) -> LongTableBatches:
    """Read Baidu-ULTR exports in either layout into padded batches.

    Args:
      source: a path to a Feather or Parquet file, a list of such paths (read in order, and the
        files may mix layouts), or a pyarrow Table.
      vocabulary: maps keys to dense ids, as for `clickjax.data.read_batches`.
      behaviour: behaviour columns to add as `[batch, positions]` columns, by their `baidu`
        reader names: `multimedia_type` (int32, from `media_type`), `displayed_time`,
        `serp_height`, `slipoff_count_after_click` (float32), or any other behaviour column the
        export has. Nulls become -1 or NaN.
      features: numeric or list columns to concatenate into `features`, float32; the embedding
        `query_document_embedding` adds 768 features.
      document_key: `"url"` (`url_md5`) or `"text"` (`text_md5`, the key of the annotation
        exports); None takes `url` where the file has `url_md5`, else `text`.
      query_key: `"query_md5"` (default) or `"query_id"`.
      positions: as for `clickjax.data.read_batches`.
      batch_size: as for `clickjax.data.read_batches`.
      drop_sessions_without_clicks: as for `clickjax.data.read_batches`.
      min_results: as for `clickjax.data.read_batches`.
      min_sessions_per_query: as for `clickjax.data.read_batches`.

    Returns:
      The batches, the counters (`lines_read` counts documents) and the slots per row.

    Raises:
      ValueError: a column is missing or has the wrong type. Errors in values name the file,
        row, column and value: a rank below 1, a click other than 0 or 1, a label outside 0-4, a
        frequency bucket outside 0-9, or lists of one query row with different lengths.
    """
    if query_key not in _QUERY_KEYS:
        raise ValueError(f"invalid query_key {query_key!r} for hf-baidu: expected query_md5 or query_id")
    if document_key not in (None, "url", "text"):
        raise ValueError(f"invalid document_key {document_key!r} for hf-baidu: expected url or text")
    unknown = [name for name in behaviour if name not in _native.behaviour_columns()]
    if unknown:
        raise ValueError(
            f"unknown behaviour column {unknown[0]!r}; expected some of {', '.join(_native.behaviour_columns())}"
        )
    if isinstance(source, (str, os.PathLike)):
        source = [source]
    tables = [("table", source)] if isinstance(source, pa.Table) else [(os.fspath(path), read_table(Path(path))) for path in source]

    if not tables:
        raise ValueError("no hf-baidu input: pass at least one Feather or Parquet file")
    parts = []
    sessions_before = 0
    for name, table in tables:
        part = _DocumentColumns.from_table(
            table, name, behaviour=behaviour, features=features, document_key=document_key, query_key=query_key,
            keys=records_new_keys(vocabulary),
        )
        part.session += sessions_before
        sessions_before = int(part.session.max()) + 1 if len(part.session) else sessions_before
        if parts and part.columns() != parts[0].columns():
            raise ValueError(
                f"{name}: the optional columns {part.columns()} differ from {parts[0].columns()} in {tables[0][0]}; "
                "read click logs and annotated files separately"
            )
        parts.append(part)
    merged = _DocumentColumns.concatenate(parts)

    return batch_impressions(
        vocabulary,
        session=merged.session,
        query=merged.query,
        document=merged.document,
        position=merged.position,
        click=merged.click,
        extra=list(merged.extra.items()),
        session_columns=list(merged.session_columns.items()),
        features=merged.features if features else None,
        # Each file's sessions were checked to have one query, so this message is a fallback.
        describe_session=lambda code: f"session {code} has rows with different {query_key} values",
        keys=merged.keys,
        positions=positions,
        batch_size=batch_size,
        drop_sessions_without_clicks=drop_sessions_without_clicks,
        min_results=min_results,
        min_sessions_per_query=min_sessions_per_query,
    )


class _DocumentColumns:
    """The columns of one file, one entry per document, as numpy arrays."""

    def __init__(self, session, query, document, position, click, extra, session_columns, features, keys=None):
        self.session = session
        # Query and document key texts, `[documents]` large_binary each, or None.
        self.keys = keys
        self.query = query
        self.document = document
        self.position = position
        self.click = click
        self.extra = extra
        self.session_columns = session_columns
        self.features = features

    @classmethod
    def from_table(cls, table: pa.Table, path: str, *, behaviour, features, document_key, query_key, keys) -> _DocumentColumns:
        where = f"{path}: "
        layout = detect_layout(table.schema)
        if layout == "query":
            table, rows = _explode(table, where)
        else:
            rows = np.arange(table.num_rows)
        return _Converter(table, where, rows, layout).convert(behaviour, features, document_key, query_key, keys)

    def columns(self) -> tuple[list[str], list[str], int]:
        """Return the names of the extra and session columns and the number of features."""
        width = 0 if self.features is None else self.features.shape[1]
        return list(self.extra), list(self.session_columns), width

    @staticmethod
    def concatenate(parts: list[_DocumentColumns]) -> _DocumentColumns:
        def join(arrays, dtype):
            return np.concatenate(arrays) if arrays else np.zeros(0, dtype)

        first = parts[0]
        return _DocumentColumns(
            session=join([p.session for p in parts], np.int64),
            query=join([p.query for p in parts], np.uint64),
            document=join([p.document for p in parts], np.uint64),
            position=join([p.position for p in parts], np.int32),
            click=join([p.click for p in parts], np.uint8),
            extra={name: join([p.extra[name] for p in parts], None) for name in first.extra},
            session_columns={name: join([p.session_columns[name] for p in parts], np.int32) for name in first.session_columns},
            features=join([p.features for p in parts], np.float32) if first.features is not None else None,
            keys=None if first.keys is None else tuple(pa.concat_arrays([p.keys[i] for p in parts]) for i in range(2)),
        )


class _Converter:
    """Converts the per-document table of one file, naming the file and row in every error.

    `rows[i]` is the file row of document `i`: itself in the per-document layout, its query's
    row in the per-query layout.
    """

    def __init__(self, table: pa.Table, where: str, rows: np.ndarray, layout: str):
        self.table = table
        self.where = where
        self.rows = rows
        self.layout = layout

    def convert(self, behaviour, features, document_key, query_key, keys) -> _DocumentColumns:
        table = self.table
        query_column = self._query_column(query_key)
        if document_key is None:
            document_key = "url" if "url_md5" in table.column_names else "text"
        document_column = "url_md5" if document_key == "url" else "text_md5"

        session = self._sessions()
        query = self._fingerprints(query_column, "query")
        self._check_one_query_per_session(session, query, query_column)
        document = self._fingerprints(document_column, "document")
        position = self._positions(session)
        click = self._integers("click", 0, 1).astype(np.uint8) if "click" in table.column_names else np.zeros(table.num_rows, np.uint8)

        extra = {name: self._behaviour(name) for name in behaviour}
        if "label" in table.column_names:
            extra["label"] = self._integers("label", 0, _MAX_LABEL, missing=-1)
        session_columns = {}
        if "frequency_bucket" in table.column_names:
            session_columns["frequency_bucket"] = self._integers("frequency_bucket", 0, _MAX_FREQUENCY_BUCKET)
        matrix = None
        if features:
            names = [self._feature_name(name) for name in features]
            matrix = feature_matrix(table, names, where=self.where, row_numbers=self.rows)
        texts = None
        if keys:
            # The fingerprints above rejected nulls and unsupported types, so these succeed.
            texts = tuple(_native.key_text(self._column(name), name) for name in (query_column, document_column))
        return _DocumentColumns(session, query, document, position, click, extra, session_columns, matrix, texts)

    def _column(self, name: str) -> pa.Array:
        if name not in self.table.column_names:
            raise ValueError(f"{self.where}missing column {name!r}; the columns are {self.table.column_names}")
        return _storage(self.table.column(name).combine_chunks())

    def _error(self, index: int, name: str, value, expected: str) -> ValueError:
        return ValueError(f"{self.where}row {int(self.rows[index])}, column {name!r}: invalid value {value!r}, expected {expected}")

    def _query_column(self, query_key: str) -> str:
        if query_key not in self.table.column_names:
            hint = ""
            if query_key == "query_md5" and "query_id" in self.table.column_names:
                hint = '; pass query_key="query_id" to key queries by query_id (Baidu qids are not unique, so queries that share one merge)'
            raise ValueError(f"{self.where}missing column {query_key!r}{hint}")
        return query_key

    def _sessions(self) -> np.ndarray:
        if self.layout == "query":
            return self.rows.astype(np.int64)
        if "query_no" not in self.table.column_names:
            raise ValueError(f"{self.where}missing column 'query_no', which numbers the sessions of a file with one row per document")
        codes = pc.dictionary_encode(self._column("query_no")).indices
        return codes.to_numpy(zero_copy_only=False).astype(np.int64)

    def _check_one_query_per_session(self, session: np.ndarray, query: np.ndarray, query_column: str) -> None:
        if not len(session):
            return
        _, first_rows = np.unique(session, return_index=True)
        differs = np.flatnonzero(query != query[first_rows[session]])
        if len(differs):
            index = int(differs[0])
            first = int(first_rows[session[index]])
            values = self.table.column(query_column)
            raise self._error(
                index, query_column, values[index].as_py(),
                f"{values[first].as_py()!r} as in row {int(self.rows[first])} of the same query_no",
            )

    def _fingerprints(self, name: str, role: str) -> np.ndarray:
        values = self._column(name)
        if values.null_count:
            index = int(np.flatnonzero(values.is_null().to_numpy(zero_copy_only=False))[0])
            raise self._error(index, name, None, f"a {role} key")
        return _native.fingerprint(values, role, name).to_numpy()

    def _numbers(self, name: str) -> np.ndarray:
        values = self._column(name)
        if not (pa.types.is_integer(values.type) or pa.types.is_floating(values.type)):
            raise ValueError(f"{self.where}column {name!r}: expected numbers, got {values.type}")
        return values.to_numpy(zero_copy_only=False)

    def _integers(self, name: str, low: int, high: int | None, missing: int | None = None) -> np.ndarray:
        """Return an integer column as int32, with nulls as `missing`, checked to be in [low, high]."""
        values = self._column(name)
        if pa.types.is_boolean(values.type):
            values = values.cast(pa.int8())
        if not pa.types.is_integer(values.type):
            raise ValueError(f"{self.where}column {name!r}: expected integers, got {values.type}")
        nulls = values.is_null().to_numpy(zero_copy_only=False)
        if nulls.any() and missing is None:
            raise self._error(int(np.flatnonzero(nulls)[0]), name, None, "an integer")
        array = values.fill_null(low).to_numpy(zero_copy_only=False).astype(np.int64)
        bad = np.flatnonzero((array < low) | ((array > high) if high is not None else False))
        if len(bad):
            expected = f"an integer from {low} to {high}" if high is not None else f"an integer of {low} or more"
            raise self._error(int(bad[0]), name, int(array[bad[0]]), expected)
        if high is None and (array > np.iinfo(np.int32).max).any():
            index = int(np.flatnonzero(array > np.iinfo(np.int32).max)[0])
            raise self._error(index, name, int(array[index]), "an int32")
        array = array.astype(np.int32)
        array[nulls] = missing if missing is not None else 0
        return array

    def _positions(self, session: np.ndarray) -> np.ndarray:
        if "position" in self.table.column_names:
            return self._integers("position", 1, None)
        # Without positions, documents are ranked in row order within their session.
        order = np.argsort(session, kind="stable")
        counts = np.bincount(session) if len(session) else np.zeros(0, np.int64)
        starts = np.repeat(np.cumsum(counts) - counts, counts)
        ranks = np.empty(len(session), np.int32)
        ranks[order] = np.arange(len(session)) - starts + 1
        return ranks

    def _behaviour(self, name: str) -> np.ndarray:
        source = BEHAVIOUR_SOURCES.get(name, name)
        if name == "multimedia_type":
            # -1 is the missing value of the batch column, so an export that stores it passes through.
            return self._integers(source, -1, None, missing=-1)
        values = self._numbers(source)
        return values.astype(np.float32)

    def _feature_name(self, name: str) -> str:
        if name in self.table.column_names:
            return name
        alias = FEATURE_ALIASES.get(name)
        if alias is not None and alias in self.table.column_names:
            return alias
        raise ValueError(f"{self.where}missing feature column {name!r}; the columns are {self.table.column_names}")


def _explode(table: pa.Table, where: str) -> tuple[pa.Table, np.ndarray]:
    """Turn one row per query into one row per document, checking that the lists of a row agree.

    Returns the per-document table and the query row of each document.
    """
    lists = [name for name in table.column_names if _is_list(_storage_type(table.schema.field(name).type))]
    reference = next(name for name in _DOCUMENT_COLUMNS if name in lists)
    reference_values = _storage(table.column(reference).combine_chunks())
    lengths = pc.list_value_length(reference_values).fill_null(0).to_numpy(zero_copy_only=False)

    checks = [(name, _storage(table.column(name).combine_chunks())) for name in lists]
    for name, values in checks:
        if values.null_count:
            row = int(np.flatnonzero(values.is_null().to_numpy(zero_copy_only=False))[0])
            raise ValueError(f"{where}row {row}, column {name!r}: invalid value None, expected a list")
        other = pc.list_value_length(values).to_numpy(zero_copy_only=False)
        bad = np.flatnonzero(other != lengths)
        if len(bad):
            row = int(bad[0])
            raise ValueError(
                f"{where}row {row}, column {name!r}: invalid list of {other[row]} values, expected {lengths[row]} "
                f"like {reference!r}; the lists of a query need one entry per document"
            )
    if "n" in table.column_names:
        counts = table.column("n").combine_chunks().fill_null(-1).to_numpy(zero_copy_only=False)
        bad = np.flatnonzero(counts != lengths)
        if len(bad):
            row = int(bad[0])
            raise ValueError(
                f"{where}row {row}, column 'n': invalid value {int(counts[row])}, expected {lengths[row]}, the length of {reference!r}"
            )

    rows = np.repeat(np.arange(table.num_rows), lengths)
    take = pa.array(rows, pa.int64())
    columns = {}
    for name in table.column_names:
        if name in lists:
            columns[name] = pc.list_flatten(_storage(table.column(name).combine_chunks()))
        else:
            columns[name] = table.column(name).combine_chunks().take(take)
    return pa.table(columns), rows


def _storage_type(dtype: pa.DataType) -> pa.DataType:
    return dtype.storage_type if isinstance(dtype, pa.ExtensionType) else dtype


def _is_list(dtype: pa.DataType) -> bool:
    return pa.types.is_list(dtype) or pa.types.is_large_list(dtype) or pa.types.is_fixed_size_list(dtype)
