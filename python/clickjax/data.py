"""Click logs as padded batches: from raw files through Arrow to numpy and JAX.

The Rust readers of `clickjax._native` parse a raw log (see `FORMATS`) into Arrow RecordBatches that
follow the batch contract (P is the page length chosen with `positions`):

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

Optional columns follow (see `OPTIONAL_COLUMNS`):

- Baidu behaviour columns (`behaviour=[...]`, float32, and `multimedia_type`, int32) and the `label`
  of annotation files (int32), `[batch, positions]`. Their padding slots contain NaN or -1.
- `frequency_bucket`, `[batch]` int32: the search-frequency bucket (0-9) of an annotated query.
- `features`, `[batch, positions, features]` float32: dense features per result, selected with
  `features=[...]` (`long` and `hf-baidu` formats). Padding slots contain 0. The Arrow column is a
  FixedSizeList of FixedSizeList of float32 with no validity bitmap at either level.

`batch_to_numpy` turns such a RecordBatch into numpy arrays that share memory with the Arrow buffers.
`ClickLog` keeps a whole log in memory for training with shuffling; a log far larger than memory can
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

import json
import logging
import os
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import jax
import numpy as np
import pyarrow as pa

from clickjax._native import BatchReader
from clickjax._native import Vocabulary
from clickjax._native import read_labels as _read_labels
from clickjax.formats.hf_baidu import read_hf_baidu
from clickjax.formats.long import LongTableBatches, read_long
from clickjax.shards import ShardReader, read_shards
from clickjax.vocabulary import build_vocabulary, load_vocabulary, save_vocabulary

__all__ = [
    "BATCH_COLUMNS",
    "FORMATS",
    "OPTIONAL_COLUMNS",
    "ClickLog",
    "Vocabulary",
    "batch_to_numpy",
    "mark_unseen_pairs",
    "build_vocabulary",
    "load_vocabulary",
    "pad_batch",
    "take_rows",
    "read_batches",
    "read_relevance_labels",
    "save_vocabulary",
    "to_jax",
    "unseen_results",
]

logger = logging.getLogger(__name__)

# Log formats of the Rust readers:
# - "baidu": Baidu-ULTR raw training sessions (part-NNNNN.gz or decompressed);
# - "baidu-annotation": the Baidu-ULTR annotation file and the WSDM Cup test files;
# - "yandex": the Yandex Relevance Prediction Challenge click log;
# - "wscd": the WSCD sample format of PyClick's examples;
# - "clickmodels": the ClickModels TSV, with JSON lists or JSON objects;
# - "hf-baidu": Feather or Parquet exports of Baidu-ULTR by the Hugging Face loading script or its
#   GitHub builder (see `clickjax.formats.hf_baidu`);
# - "long": Parquet, CSV or Feather tables with one row per impression and the columns session,
#   query, document, position and click (see `clickjax.formats.long`);
# - "parquet": canonical Parquet shards that `clickjax ingest` wrote (see `clickjax.shards`).
FORMATS = ("baidu", "baidu-annotation", "yandex", "wscd", "clickmodels", "hf-baidu", "long", "parquet")

# Schema metadata key of the counters of `read_relevance_labels`.
LABEL_STATS_KEY = b"clickjax_stats"

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

# Optional columns with a fixed dtype and rank: name -> (numpy dtype, number of dimensions).
OPTIONAL_COLUMNS: dict[str, tuple[np.dtype, int]] = {
    "features": (np.dtype(np.float32), 3),
    "frequency_bucket": (np.dtype(np.int32), 1),
    "label": (np.dtype(np.int32), 2),
    "multimedia_type": (np.dtype(np.int32), 2),
}

PathLike = str | os.PathLike


def read_batches(
    format: str,
    paths: Sequence[PathLike] | PathLike,
    vocabulary: Vocabulary,
    *,
    positions: int | None = 10,
    batch_size: int = 1024,
    on_error: str = "strict",
    drop_sessions_without_clicks: bool = False,
    min_results: int = 1,
    min_sessions_per_query: int = 1,
    behaviour: Sequence[str] = (),
    document_key: str | None = None,
    query_key: str | None = None,
    features: Sequence[str] = (),
    threads: int | None = None,
    lookahead_bytes: int | None = None,
) -> BatchReader | LongTableBatches | ShardReader:
    """Stream a click log as Arrow RecordBatches.

    Args:
      format: the log format, one of `FORMATS`.
      paths: files read in order, or one path; gzip is detected by its magic bytes, plain text
        works too. For `parquet`, ingest folders or shard files.
      vocabulary: maps queries, documents and pairs to dense ids. While it is not frozen, new keys
        get new ids; once frozen, unknown keys get the out-of-vocabulary id 1 and are counted.
      positions: page length P; results ranked below P are dropped and counted. None pads every
        row to the largest rank in the input, which a first pass over the files finds. Use None
        for annotation files, whose lists run to about 60 results.
      batch_size: sessions per RecordBatch; the last one may be smaller.
      on_error: `"strict"` raises `clickjax.errors.ParseError` on the first malformed line;
        `"skip"` drops the malformed session and counts it in `reader.stats`.
      drop_sessions_without_clicks: drop sessions that have no click (they are kept by default,
        since dropping them biases examination estimates).
      min_results: drop sessions with fewer results than this after truncation to P.
      min_sessions_per_query: drop the sessions of queries with fewer sessions than this that
        pass the other rules. Above 1 the files are read twice, a counting pass first.
      behaviour: Baidu behaviour columns to add, by name (`"dwelling_time"`, `"multimedia_type"`,
        ...; see docs/data.md), as `[batch, positions]` columns in this order (`baidu` and
        `hf-baidu` formats).
      document_key: `"url"` or `"text"` (Baidu: title and abstract tokens, the key annotation
        files use; `hf-baidu`: the `url_md5` or `text_md5` column); None takes the format's
        default.
      query_key: Yandex: `"query_region"` (default) or `"query"`; `hf-baidu`: `"query_md5"`
        (default) or `"query_id"`.
      features: `long` and `hf-baidu` only: columns concatenated into a float32 `features`
        column, `[batch, positions, features]` (see `clickjax.formats.long.feature_matrix`).
      threads: worker threads of the reader, decompression included, 1 to 256; None takes the
        number of cores available. Up to this many files parse at once, and spare threads
        decompress gzip files being parsed. The batches and ids are the same for every value.
        For `parquet`, 1 decodes on the calling thread and any other value on pyarrow's CPU
        thread pool (see `clickjax.shards.read_shards`). `long` and `hf-baidu` ignore it.
      lookahead_bytes: bytes of finished rows that the worker of a file may hold before the
        reader reaches that file, 1 to 2**40; None takes 64 MiB. Memory grows by up to this much
        per worker, and a smaller budget makes workers of later files wait sooner. The batches
        are the same for every value. The columnar formats ignore it.

    Returns:
      An iterator of `pyarrow.RecordBatch` with the batch contract's columns; its `stats` property
      contains the reader's counters, which `clickjax.report.LoadReport.from_stats` explains. The
      `long` and `hf-baidu` formats read every table into memory first and ignore `on_error`,
      because a table has no malformed lines. Its columns are named session, query, document, position and click,
      and `clickjax.formats.long.read_long` can read other names. The `parquet` format returns a
      `clickjax.shards.ShardReader`: the ids come from the shards, so `vocabulary` is not used,
      `on_error` is ignored, and the session rules were applied at ingest (passing one raises).
    """
    if format not in FORMATS:
        raise ValueError(f"unknown log format {format!r}; expected one of {', '.join(FORMATS)}")
    if isinstance(paths, str | os.PathLike):
        # One path on its own: a string would otherwise be read one character at a time.
        paths = [paths]
    if format == "parquet":
        return _read_parquet(
            paths,
            positions=positions,
            batch_size=batch_size,
            drop_sessions_without_clicks=drop_sessions_without_clicks,
            min_results=min_results,
            min_sessions_per_query=min_sessions_per_query,
            behaviour=behaviour,
            document_key=document_key,
            query_key=query_key,
            features=features,
            threads=threads,
        )
    rules = dict(
        positions=positions,
        batch_size=batch_size,
        drop_sessions_without_clicks=drop_sessions_without_clicks,
        min_results=min_results,
        min_sessions_per_query=min_sessions_per_query,
    )
    if format == "long":
        if behaviour or document_key is not None or query_key is not None:
            raise ValueError("behaviour, document_key and query_key do not apply to the long format")
        return read_long([os.fspath(path) for path in paths], vocabulary, features=features, **rules)
    if format == "hf-baidu":
        return read_hf_baidu(
            [os.fspath(path) for path in paths],
            vocabulary,
            behaviour=behaviour,
            features=features,
            document_key=document_key,
            query_key=query_key or "query_md5",
            **rules,
        )
    if features:
        raise ValueError(f"features apply to the long and hf-baidu formats, not to {format}")
    return BatchReader(
        format,
        [os.fspath(path) for path in paths],
        vocabulary,
        positions=positions,
        batch_size=batch_size,
        on_error=on_error,
        drop_sessions_without_clicks=drop_sessions_without_clicks,
        min_results=min_results,
        min_sessions_per_query=min_sessions_per_query,
        behaviour=list(behaviour),
        document_key=document_key,
        query_key=query_key,
        threads=threads,
        lookahead_bytes=lookahead_bytes,
    )


def _read_parquet(
    paths: Sequence[PathLike],
    *,
    positions: int | None,
    batch_size: int,
    drop_sessions_without_clicks: bool,
    min_results: int,
    min_sessions_per_query: int,
    behaviour: Sequence[str],
    document_key: str | None,
    query_key: str | None,
    features: Sequence[str],
    threads: int | None,
) -> ShardReader:
    """Read ingested shards; the reader options were applied at ingest, so passing one raises."""
    applied = {
        "drop_sessions_without_clicks": drop_sessions_without_clicks,
        "min_results": min_results != 1,
        "min_sessions_per_query": min_sessions_per_query != 1,
        "behaviour": bool(behaviour),
        "document_key": document_key is not None,
        "query_key": query_key is not None,
        "features": bool(features),
    }
    given = [name for name, present in applied.items() if present]
    if given:
        raise ValueError(
            f"{', '.join(given)} do not apply to the parquet format: the session rules, keys and columns were "
            "chosen when the shards were ingested; pass them to clickjax ingest instead"
        )
    return read_shards(paths, positions=positions, batch_size=batch_size, threads=threads)


def read_relevance_labels(
    path: PathLike,
    *,
    query_key: str = "query_region",
    vocabulary: Vocabulary | None = None,
    on_error: str = "strict",
) -> pa.Table:
    """Read a Yandex relevance-label file (`QueryID RegionID URLID Label` per line).

    A pair listed more than once keeps its highest label. The fingerprints use the keys of the
    `yandex` reader with the same `query_key`, so labels join the click log's ids.

    Args:
      path: the label file, plain or gzip-compressed.
      query_key: `"query_region"` (default) or `"query"`, as given to the click-log reader.
      vocabulary: if given, the table gets a `query_doc_id` column with the pair's dense id, or 1
        if the vocabulary lacks the pair. The vocabulary is not changed.
      on_error: `"strict"` raises on the first malformed line; `"skip"` drops and counts it.

    Returns:
      One row per query-document pair in order of first appearance: `query`, `region`, `url`
      (int64 raw ids), `query_fingerprint`, `doc_fingerprint` (uint64), `label` (int32) and
      optionally `query_doc_id` (int32). The counters `lines_read`, `labels_read`,
      `labels_skipped`, `duplicate_pairs` and `conflicting_labels` are JSON in the schema metadata
      under `LABEL_STATS_KEY`.
    """
    batch, stats = _read_labels(os.fspath(path), query_key=query_key, on_error=on_error, vocabulary=vocabulary)
    if stats["conflicting_labels"]:
        logger.info("%s: %d lines repeat a pair with another label; kept the highest", path, stats["conflicting_labels"])
    table = pa.Table.from_batches([batch])
    return table.replace_schema_metadata({LABEL_STATS_KEY: json.dumps(stats)})


def batch_to_numpy(batch: pa.RecordBatch, *, partial: bool = False) -> dict[str, np.ndarray]:
    """Return the columns of a RecordBatch as numpy arrays that share memory with it.

    Padded columns become `[batch, positions]` arrays, `features` becomes `[batch, positions,
    features]`, and the others `[batch]`. No data is copied for an unsliced batch from the Rust
    readers (its FixedSizeList columns have no validity bitmap). Columns outside the batch contract
    are passed through the same way.

    Args:
      batch: a RecordBatch of the batch contract.
      partial: accept a batch with only some contract columns, as `clickjax.shards.read_shards`
        reads with `columns`. `mask` and `weight` are still required, and each column present is
        checked.

    Raises:
      ValueError: a contract column is missing or has the wrong type.
    """
    rows = batch.num_rows
    arrays: dict[str, np.ndarray] = {}
    for name in batch.schema.names:
        column = batch.column(name)
        shape = [rows]
        # Each level of FixedSizeList nesting adds a dimension.
        while pa.types.is_fixed_size_list(column.type):
            shape.append(column.type.list_size)
            column = column.flatten()
        arrays[name] = column.to_numpy(zero_copy_only=True).reshape(shape)
    _check_contract(arrays, required=("mask", "weight") if partial else BATCH_COLUMNS)
    return arrays


def to_jax(arrays: Mapping[str, np.ndarray]) -> dict[str, jax.Array]:
    """Place numpy batch columns on the default device.

    On JAX's CPU backend a 64-byte aligned numpy array may be aliased rather than copied; JAX does not
    promise it, so callers must not rely on either behaviour. On an accelerator this is the one
    host-to-device copy.
    """
    return {name: jax.device_put(array) for name, array in arrays.items()}


def take_rows(columns: Mapping[str, np.ndarray], rows: np.ndarray) -> dict[str, np.ndarray]:
    """Copy the rows `rows` (`[batch]` int) of every column, in that order.

    `np.take` along the first axis gives the same arrays as `column[rows]`. It was about 3 times
    faster on batches of 4,096 rows of `[sessions, 10]` columns (numpy 2.4, x86_64), because it
    copies each selected row as one block.
    """
    return {name: np.take(column, rows, axis=0) for name, column in columns.items()}


def pad_batch(arrays: Mapping[str, np.ndarray], batch_size: int) -> dict[str, np.ndarray]:
    """Pad a batch with empty sessions up to `batch_size` rows.

    Padding rows have `mask` 0 and `weight` 0 everywhere, so that losses and metrics ignore them while
    every step gets the same shape and nothing is recompiled. A full batch is returned unchanged.
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
        paths: Sequence[PathLike] | PathLike,
        vocabulary: Vocabulary,
        *,
        positions: int | None = 10,
        read_batch_size: int = 8192,
        on_batch: Callable[[int], None] | None = None,
        **options,
    ) -> ClickLog:
        """Read a whole raw log into memory.

        `positions` and the keyword options (`on_error`, `drop_sessions_without_clicks`,
        `min_results`, `min_sessions_per_query`, `behaviour`, `document_key`, `query_key`,
        `features`, `threads`) are those of `read_batches`. With `positions=None` the log's
        `positions` is the largest rank.
        `on_batch`, if given, receives the number of sessions of each batch as it is read (the
        CLI drives a progress bar with it).
        """
        reader = read_batches(format, paths, vocabulary, positions=positions, batch_size=read_batch_size, **options)
        parts = []
        for batch in reader:
            parts.append(batch_to_numpy(batch))
            if on_batch is not None:
                on_batch(batch.num_rows)
        width = reader.positions
        if parts:
            columns = {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}
        else:
            columns = _empty_columns(width)
        return cls(columns=columns, positions=width, stats=dict(reader.stats))

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
                batch = {name: column[rows] for name, column in self.columns.items()}
            else:
                batch = take_rows(self.columns, order[start : start + batch_size])
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


def _check_contract(arrays: Mapping[str, np.ndarray], required: Collection[str] = BATCH_COLUMNS) -> None:
    for name, (dtype, padded) in BATCH_COLUMNS.items():
        if name not in arrays:
            if name in required:
                raise ValueError(f"batch has no column {name!r}; expected the columns {list(BATCH_COLUMNS)}")
            continue
        _check_column(name, arrays[name], dtype, 2 if padded else 1)
    for name, (dtype, ndim) in OPTIONAL_COLUMNS.items():
        if name in arrays:
            _check_column(name, arrays[name], dtype, ndim)
    rows, positions = arrays["mask"].shape
    for name, array in arrays.items():
        if array.ndim >= 2 and array.shape[:2] != (rows, positions):
            raise ValueError(f"column {name!r} has shape {array.shape}, expected [batch, positions] = [{rows}, {positions}] first")


def _check_column(name: str, array: np.ndarray, dtype: np.dtype, ndim: int) -> None:
    if array.dtype != dtype:
        raise ValueError(f"column {name!r} has dtype {array.dtype}, expected {dtype}")
    if array.ndim != ndim:
        raise ValueError(f"column {name!r} has shape {array.shape}, expected {ndim} dimensions")


def mark_unseen_pairs(log: ClickLog, seen_pairs: np.ndarray) -> int:
    """Give every real result whose pair is not in `seen_pairs` the out-of-vocabulary id 1, in place.

    Logs encoded with one vocabulary built over more than the training log (the splits of one
    ingest, or shards encoded with a vocabulary of several logs) give pairs that training never
    saw real ids, whose parameters were never trained. Marking them makes a model score them with
    its out-of-vocabulary parameter, and the metrics count them as unseen, as for logs encoded
    with a vocabulary frozen after the training log.

    Args:
      log: a validation or test log, in memory or a `clickjax.shards.ShardedLog`; its
        `query_doc_id` column is replaced, and its `oov_pairs` counter grows by the results marked.
      seen_pairs: the pair ids of the training log's real results.

    Returns:
      The number of results marked.
    """
    if not hasattr(log, "columns"):
        # A log on disk (`clickjax.shards.ShardedLog`) marks its batches as they are read.
        return log.mark_unseen_pairs(seen_pairs)
    unseen = unseen_results(log.columns, seen_pairs)
    log.columns["query_doc_id"] = np.where(unseen, np.int32(1), log.columns["query_doc_id"]).astype(np.int32)
    marked = int(unseen.sum())
    # The readers count out-of-vocabulary results as `oov_pairs`; these join them.
    log.stats["oov_pairs"] = log.stats.get("oov_pairs", 0) + marked
    return marked


def unseen_results(columns: Mapping[str, np.ndarray], seen_pairs: np.ndarray) -> np.ndarray:
    """Return the real results whose pair id is a real id (2 or more) missing from `seen_pairs`, `[batch, positions]` bool."""
    pairs = columns["query_doc_id"]
    return (columns["mask"] == 1) & (pairs >= 2) & ~np.isin(pairs, seen_pairs)
