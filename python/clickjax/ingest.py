"""Ingest a raw click log once into canonical Parquet shards, optionally split and aggregated.

Parsing raw text is the slow part of reading a log. `ingest` parses it once, streams the reader's
Arrow batches into zstd-compressed Parquet shards of at most `shard_sessions` rows, and writes
beside them what later runs need to trust the shards:

    DIR/part-00000.parquet, part-00001.parquet, ...   one row per session, the batch contract
    DIR/manifest.json       format version, positions, columns, shards with their session counts,
                            vocabulary table sizes, ingest options
    DIR/load_report.json    the reader's counters (`clickjax.report.LoadReport`)
    DIR/vocabulary.parquet  the vocabulary after the ingest (`clickjax.vocabulary`)

With `splits`, the shards go to one subfolder per split (`DIR/train/part-00000.parquet`, ...), each
with its own `manifest.json`; the top manifest lists the splits. `clickjax.shards.read_shards` reads
either layout back, and `aggregate_sessions` merges identical sessions into one weighted row.

    manifest = ingest("wscd", ["trainSample"], "ingested", splits=parse_splits("train=0.9,test=0.1"))
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from clickjax import __version__
from clickjax.data import Vocabulary, read_batches
from clickjax.report import LoadReport
from clickjax.shards import FORMAT_VERSION, MANIFEST_NAME, SCHEMA_METADATA_KEY, STAGING_FOLDER, is_unfinished_ingest
from clickjax.vocabulary import save_vocabulary

__all__ = [
    "DEFAULT_SHARD_SESSIONS",
    "LOAD_REPORT_NAME",
    "VOCABULARY_NAME",
    "SPLIT_BY",
    "aggregate_sessions",
    "ingest",
    "parse_splits",
    "read_load_report",
    "shard_vocabulary_path",
    "vocabulary_id",
]

PathLike = str | os.PathLike

LOAD_REPORT_NAME = "load_report.json"
VOCABULARY_NAME = "vocabulary.parquet"
DEFAULT_SHARD_SESSIONS = 1_000_000
# Ways to assign sessions to splits: contiguous session ranges in input order, or whole queries.
SPLIT_BY = ("session", "query", "random")
# Compression of the staging files (in `STAGING_FOLDER`) between the two passes of a
# session-range split or an aggregation.
_STAGING_COMPRESSION = "lz4"
# Fractions must add up to 1 within this tolerance.
_FRACTION_TOLERANCE = 1e-6
_SPLIT_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


def parse_splits(spec: str) -> dict[str, float]:
    """Parse a split specification such as `"train=0.8,validation=0.1,test=0.1"`.

    Returns:
      Split name -> fraction, in the order given.

    Raises:
      ValueError: a part without `=`, a name that is not a plain folder name or repeats, a fraction
        that is not a number in (0, 1], or fractions that do not add up to 1. The message names
        `--split` and the offending text.
    """
    splits: dict[str, float] = {}
    for part in spec.split(","):
        name, separator, value = part.strip().partition("=")
        if not separator:
            raise ValueError(f"invalid --split {spec!r}: {part!r} is not NAME=FRACTION; write e.g. train=0.8,test=0.2")
        name = name.strip()
        if not _SPLIT_NAME.fullmatch(name):
            raise ValueError(
                f"invalid --split {spec!r}: split name {name!r} must be letters, digits, '_', '-' or '.', "
                "since it names a subfolder"
            )
        if name in splits:
            raise ValueError(f"invalid --split {spec!r}: split {name!r} appears twice")
        try:
            fraction = float(value)
        except ValueError:
            raise ValueError(f"invalid --split {spec!r}: fraction {value!r} of {name!r} is not a number") from None
        if not (0.0 < fraction <= 1.0):
            raise ValueError(f"invalid --split {spec!r}: fraction {value!r} of {name!r} must be in (0, 1]")
        splits[name] = fraction
    total = sum(splits.values())
    if abs(total - 1.0) > _FRACTION_TOLERANCE:
        raise ValueError(f"invalid --split {spec!r}: the fractions add up to {total:g}, expected 1")
    return splits


def aggregate_sessions(batch: pa.RecordBatch | pa.Table) -> pa.RecordBatch:
    """Merge identical sessions into one row whose `weight` is the sum of their weights.

    Two rows are identical when every column but `weight` contains the same bytes: the same query,
    the same documents in the same slots, the same positions, clicks and mask, and the same
    behaviour or label values if the batch has such columns (NaN equals NaN). The work is
    vectorised: each row's bytes are compared as one fixed-width value with `numpy.unique`.

    Returns:
      One row per distinct session, in order of first appearance, with the input's schema.
    """
    if isinstance(batch, pa.Table):
        batch = batch.combine_chunks().to_batches()[0] if batch.num_rows else pa.RecordBatch.from_pylist([], batch.schema)
    if batch.num_rows == 0:
        return batch
    keys = _row_bytes(batch)
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    weights = np.bincount(inverse.ravel(), weights=batch.column("weight").to_numpy().astype(np.float64))

    # Keep the first row of each group, in input order, and give it the group's weight.
    order = np.argsort(first, kind="stable")
    merged = batch.take(pa.array(first[order]))
    weight_index = batch.schema.get_field_index("weight")
    return merged.set_column(weight_index, batch.schema.field(weight_index), pa.array(weights[order].astype(np.float32)))


def read_load_report(folder: PathLike) -> LoadReport:
    """Read the `load_report.json` that `ingest` wrote to an ingest folder."""
    data = json.loads((Path(folder) / LOAD_REPORT_NAME).read_text())
    data.pop("sessions_dropped", None)
    return LoadReport(**data)


def ingest(
    format: str,
    paths: Sequence[PathLike],
    output: PathLike,
    *,
    positions: int | None = 10,
    vocabulary: Vocabulary | None = None,
    shard_sessions: int = DEFAULT_SHARD_SESSIONS,
    splits: Mapping[str, float] | None = None,
    split_by: str = "session",
    seed: int = 0,
    aggregate: bool = False,
    overwrite: bool = False,
    compression: str = "zstd",
    read_batch_size: int = 8192,
    **reader_options: object,
) -> dict:
    """Parse a raw log once and write it as canonical Parquet shards to `output`.

    Memory stays bounded: the log streams batch by batch through the reader into shard writers.
    A session-range split or an aggregation needs a second pass, so the first pass writes
    lz4-compressed staging shards under `output/.staging`, which are deleted at the end.
    Aggregation routes each row by a hash of its bytes into one of ceil(rows / `shard_sessions`)
    bucket files and then merges each bucket in memory. So identical sessions merge across the
    whole split, while memory keeps about `shard_sessions` rows at a time: the rows waiting to be
    routed, or one bucket. The `long` format is the exception, since its reader loads whole tables.

    Args:
      format: the raw log format, one of `clickjax.data.FORMATS`.
      paths: log files, read in order.
      output: the folder to write; it must be missing or empty unless `overwrite` is set.
      positions: page length P; None pads to the longest session, which a first pass over the
        inputs finds (for annotation files).
      vocabulary: the vocabulary to encode with; a frozen one keeps its ids and counts unknown
        keys as out of vocabulary. None starts an empty one. Pass the frozen vocabulary of the
        training ingest (`clickjax.vocabulary.load_vocabulary`) to encode validation and test
        logs with the training ids.
      shard_sessions: maximum rows per shard.
      splits: split name -> fraction (see `parse_splits`); None writes one set of shards.
      split_by: `"session"`: contiguous ranges of sessions in input order, exact to one session.
        `"random"`: each session goes to the split that a seeded hash of its position in the input
        chooses, so the fractions hold for sessions on average, whatever the order of the log.
        `"query"`: every session of a query goes to the split that a seeded hash of its dense
        query id picks, so the fractions hold for queries, not sessions.
      seed: seed of the hash of `split_by="random"` or `"query"`.
      aggregate: merge identical sessions within each split (see `aggregate_sessions`). The rows
        of an aggregated split come in hash-bucket order, not input order.
      overwrite: replace a folder that an earlier ingest wrote (it must contain a manifest.json).
      compression: Parquet compression codec of the shards.
      read_batch_size: sessions per batch from the reader.
      **reader_options: the options of `clickjax.data.read_batches` (`on_error`, `behaviour`,
        `document_key`, `query_key`, `drop_sessions_without_clicks`, `min_results`,
        `min_sessions_per_query`).

    Returns:
      The manifest written to `output/manifest.json`.

    Raises:
      ValueError: an invalid option, a non-empty `output`, or a log without sessions.
      FileNotFoundError: an input file does not exist.
      clickjax.errors.ParseError: a malformed line under `on_error="strict"`.
    """
    if format == "parquet":
        raise ValueError("ingest reads raw logs; --format parquet input is already ingested")
    if shard_sessions < 1:
        raise ValueError(f"--shard-sessions must be at least 1, got {shard_sessions}")
    if positions is not None and positions < 1:
        raise ValueError(f"--positions must be at least 1, got {positions}")
    if split_by not in SPLIT_BY:
        raise ValueError(f"invalid --split-by {split_by!r}; expected one of {', '.join(SPLIT_BY)}")
    for path in paths:
        if not Path(path).exists():
            raise FileNotFoundError(2, "No such file or directory (an input log)", os.fspath(path))
    output = Path(output)
    existed = output.is_dir()
    _prepare_output(output, overwrite)
    if vocabulary is None:
        vocabulary = Vocabulary()
    fractions = dict(splits) if splits else {None: 1.0}
    options = {
        "format": format,
        "inputs": [os.fspath(path) for path in paths],
        "shard_sessions": shard_sessions,
        "compression": compression,
        "aggregate": aggregate,
        "splits": dict(splits) if splits else None,
        "split_by": split_by,
        "seed": seed,
        "reader_options": {key: list(value) if isinstance(value, tuple) else value for key, value in reader_options.items()},
        "clickjax_version": __version__,
    }

    try:
        reader = read_batches(format, paths, vocabulary, positions=positions, batch_size=read_batch_size, **reader_options)
        written, schema = _write_shards(reader, output, fractions, options, read_batch_size)
        save_vocabulary(vocabulary, output / VOCABULARY_NAME)
        report = LoadReport.from_stats(reader.stats, name=", ".join(options["inputs"]), log_format=format)
        _write_json(output / LOAD_REPORT_NAME, report.to_dict())
        if not any(written.values()):
            counts = ", ".join(f"{name} {count}" for name, count in reader.stats.items() if count)
            raise ValueError(
                f"the log has no sessions: {', '.join(options['inputs'])} (reader counts: {counts or 'none'}); "
                f"check the files and --format {format}"
            )
        common = {
            "format_version": FORMAT_VERSION,
            "positions": reader.positions,
            "columns": _describe_columns(schema),
            "vocabulary": _describe_vocabulary(vocabulary),
            "ingest": options,
        }
        return _write_manifests(output, common, fractions, written)
    except BaseException:
        # Leave no half-written ingest behind, so that the same command can run again.
        shutil.rmtree(output, ignore_errors=True)
        if existed:
            output.mkdir(parents=True, exist_ok=True)
        raise
    finally:
        shutil.rmtree(output / STAGING_FOLDER, ignore_errors=True)


def _write_shards(
    reader: Iterable[pa.RecordBatch], output: Path, fractions: dict, options: dict, read_batch_size: int
) -> tuple[dict, pa.Schema | None]:
    """Stream the reader's batches into the shards of each split; return the shards per split and the schema."""
    names = list(fractions)
    cumulative = np.array(list(fractions.values()))
    split_by, seed = options["split_by"], options["seed"]
    shard_sessions, compression, aggregate = options["shard_sessions"], options["compression"], options["aggregate"]
    batches = _SchemaRecorder(reader)

    if not aggregate and not (len(names) > 1 and split_by == "session"):
        # One pass: every row's split is known as soon as it is read.
        sinks = [_make_sink(output, name, 0, shard_sessions, compression, False) for name in names]
        _route(batches, sinks, cumulative, split_by, seed, None)
        return {name: sink.close() for name, sink in zip(names, sinks)}, batches.schema

    # Two passes: stage the rows in input order and count them, then route them.
    staging = _ShardWriter(output / STAGING_FOLDER, shard_sessions, _STAGING_COMPRESSION)
    hashed_counts = np.zeros(len(names), np.int64)
    start = 0
    for batch in batches:
        staging.write(batch)
        if split_by != "session":
            splits = _hashed_splits(batch, start, cumulative, split_by, seed)
            hashed_counts += np.bincount(splits, minlength=len(names))
        start += batch.num_rows
    staged_shards = staging.close()
    total = sum(shard["sessions"] for shard in staged_shards)
    counts = _session_counts(total, cumulative) if split_by == "session" else hashed_counts

    sinks = [_make_sink(output, name, count, shard_sessions, compression, aggregate) for name, count in zip(names, counts)]
    staged = (
        batch
        for shard in staged_shards
        for batch in pq.ParquetFile(output / STAGING_FOLDER / shard["path"]).iter_batches(batch_size=read_batch_size)
    )
    _route(staged, sinks, cumulative, split_by, seed, counts)
    return {name: sink.close() for name, sink in zip(names, sinks)}, batches.schema


def _write_manifests(output: Path, common: dict, fractions: dict, written: dict) -> dict:
    """Write the manifest of each split folder and then the top one, which is returned."""
    if list(written) == [None]:
        manifest = {**common, **_shard_summary(written[None])}
    else:
        manifest = {**common, "splits": {}, "shards": []}
        for name, shards in written.items():
            split_manifest = {**common, "split": name, **_shard_summary(shards)}
            _write_json(output / name / MANIFEST_NAME, split_manifest)
            manifest["splits"][name] = {
                "fraction": fractions[name],
                "path": name,
                "sessions": split_manifest["sessions"],
                "weight": split_manifest["weight"],
            }
        manifest["sessions"] = sum(entry["sessions"] for entry in manifest["splits"].values())
        manifest["weight"] = sum(entry["weight"] for entry in manifest["splits"].values())
    # The top manifest comes last: a folder without it is an ingest that did not finish.
    _write_json(output / MANIFEST_NAME, manifest)
    return manifest


class _ShardWriter:
    """Write batches into part-NNNNN.parquet files of at most `shard_sessions` rows each."""

    def __init__(self, folder: Path, shard_sessions: int, compression: str):
        self.folder = folder
        self.shard_sessions = shard_sessions
        self.compression = compression
        self.shards: list[dict] = []
        self._writer: pq.ParquetWriter | None = None
        self._current: dict | None = None

    def write(self, batch: pa.RecordBatch) -> None:
        start = 0
        while start < batch.num_rows:
            if self._writer is None:
                self._open(batch.schema)
            room = self.shard_sessions - self._current["sessions"]
            piece = batch.slice(start, min(room, batch.num_rows - start))
            self._writer.write_batch(piece)
            self._add_counts(piece)
            start += piece.num_rows
            if self._current["sessions"] == self.shard_sessions:
                self._finish()

    def write_shard(self, batch: pa.RecordBatch) -> None:
        """Write `batch` as one whole shard, whatever its size."""
        self._open(batch.schema)
        self._writer.write_batch(batch)
        self._add_counts(batch)
        self._finish()

    def close(self) -> list[dict]:
        if self._writer is not None:
            self._finish()
        return self.shards

    def _open(self, schema: pa.Schema) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        name = f"part-{len(self.shards):05d}.parquet"
        positions = schema.field("mask").type.list_size
        metadata = {SCHEMA_METADATA_KEY: json.dumps({"format_version": FORMAT_VERSION, "positions": positions})}
        self._writer = pq.ParquetWriter(self.folder / name, schema.with_metadata(metadata), compression=self.compression)
        self._current = {"path": name, "sessions": 0, "weight": 0.0, "results": 0, "clicks": 0}

    def _add_counts(self, piece: pa.RecordBatch) -> None:
        self._current["sessions"] += piece.num_rows
        self._current["weight"] += float(piece.column("weight").to_numpy().sum(dtype=np.float64))
        self._current["results"] += int(piece.column("mask").flatten().to_numpy().sum(dtype=np.int64))
        self._current["clicks"] += int(piece.column("click").flatten().to_numpy().sum(dtype=np.int64))

    def _finish(self) -> None:
        self._writer.close()
        self.shards.append(self._current)
        self._writer = None
        self._current = None


class _AggregatingWriter:
    """Route rows by a hash of their bytes into buckets, then write each bucket aggregated as one shard."""

    def __init__(self, folder: Path, staging: Path, buckets: int, compression: str, flush_rows: int):
        self.buckets = _ShardWriterSet(staging, buckets)
        self.output = _ShardWriter(folder, 0, compression)
        # Rows are routed flush_rows at a time, so that each bucket file gets row groups of about
        # flush_rows / buckets rows rather than a sliver of every reader batch.
        self.flush_rows = flush_rows
        self._pending: list[pa.RecordBatch] = []
        self._pending_rows = 0

    def write(self, batch: pa.RecordBatch) -> None:
        self._pending.append(batch)
        self._pending_rows += batch.num_rows
        if self._pending_rows >= self.flush_rows:
            self._flush()

    def close(self) -> list[dict]:
        self._flush()
        for path in self.buckets.close():
            merged = aggregate_sessions(pq.read_table(path))
            path.unlink()
            # A bucket can contain a few more rows than shard_sessions, since the hash spreads rows only
            # roughly evenly; it stays one shard.
            self.output.write_shard(merged)
        return self.output.shards

    def _flush(self) -> None:
        if not self._pending:
            return
        batch = pa.Table.from_batches(self._pending).combine_chunks().to_batches()[0]
        self._pending, self._pending_rows = [], 0
        self.buckets.write(batch, _hash_rows(_row_bytes(batch)) % np.uint64(self.buckets.count))


class _ShardWriterSet:
    """One staging Parquet file per hash bucket, opened when its first row arrives."""

    def __init__(self, folder: Path, count: int):
        self.folder = folder
        self.count = count
        self._writers: dict[int, pq.ParquetWriter] = {}

    def write(self, batch: pa.RecordBatch, bucket: np.ndarray) -> None:
        order = np.argsort(bucket, kind="stable")
        ends = np.cumsum(np.bincount(bucket.astype(np.int64), minlength=self.count))
        sorted_batch = batch.take(pa.array(order))
        start = 0
        for index in np.flatnonzero(np.diff(ends, prepend=0)):
            end = int(ends[index])
            if int(index) not in self._writers:
                self.folder.mkdir(parents=True, exist_ok=True)
                self._writers[int(index)] = pq.ParquetWriter(self._path(int(index)), batch.schema, compression=_STAGING_COMPRESSION)
            self._writers[int(index)].write_batch(sorted_batch.slice(start, end - start))
            start = end

    def close(self) -> Iterator[Path]:
        for index in sorted(self._writers):
            self._writers[index].close()
            yield self._path(index)

    def _path(self, index: int) -> Path:
        return self.folder / f"bucket-{index:05d}.parquet"


def _make_sink(output: Path, name: str | None, rows: int, shard_sessions: int, compression: str, aggregate: bool):
    folder = output if name is None else output / name
    if aggregate:
        staging = output / STAGING_FOLDER / f"buckets-{name or 'all'}"
        return _AggregatingWriter(folder, staging, max(1, math.ceil(rows / shard_sessions)), compression, shard_sessions)
    return _ShardWriter(folder, shard_sessions, compression)


def _route(batches: Iterable[pa.RecordBatch], sinks: list, fractions: np.ndarray, split_by: str, seed: int, counts) -> None:
    """Send each row to the sink of its split."""
    bounds = None if counts is None or split_by != "session" else np.cumsum(counts)
    start = 0
    for batch in batches:
        if len(sinks) == 1:
            sinks[0].write(batch)
            continue
        if split_by == "session":
            rows = np.arange(start, start + batch.num_rows)
            split = np.searchsorted(bounds, rows, side="right")
        else:
            split = _hashed_splits(batch, start, fractions, split_by, seed)
        start += batch.num_rows
        # Rows of one split stay contiguous in a session-range split, so slices avoid copies there.
        for index, sink in enumerate(sinks):
            chosen = np.flatnonzero(split == index)
            if len(chosen) == 0:
                continue
            if chosen[-1] - chosen[0] + 1 == len(chosen):
                sink.write(batch.slice(int(chosen[0]), len(chosen)))
            else:
                sink.write(batch.take(pa.array(chosen)))


def _session_counts(total: int, fractions: np.ndarray) -> np.ndarray:
    """Sessions per split of a session-range split: cumulative fractions rounded to whole sessions."""
    bounds = np.rint(np.cumsum(fractions) * total).astype(np.int64)
    bounds[-1] = total
    return np.diff(bounds, prepend=0)


def _hashed_splits(batch: pa.RecordBatch, start: int, fractions: np.ndarray, split_by: str, seed: int) -> np.ndarray:
    """Split index of each row: a seeded hash of its key, mapped to [0, 1) and cut at the cumulative fractions.

    The key is the dense query id with `split_by="query"`, and the row's position in the input
    (`start` is that of the batch's first row) with `split_by="random"`.
    """
    if split_by == "query":
        keys = batch.column("query_id").to_numpy().astype(np.uint64)
    else:
        keys = np.arange(start, start + batch.num_rows, dtype=np.uint64)
    unit = (_mix64(keys ^ _mix64(np.full(1, seed, np.uint64))) >> np.uint64(11)).astype(np.float64) / float(1 << 53)
    split = np.searchsorted(np.cumsum(fractions), unit, side="right")
    return np.minimum(split, len(fractions) - 1)


def _mix64(values: np.ndarray) -> np.ndarray:
    """Apply the splitmix64 finaliser elementwise to uint64 values."""
    with np.errstate(over="ignore"):
        values = values + np.uint64(0x9E3779B97F4A7C15)
        values = (values ^ (values >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        values = (values ^ (values >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return values ^ (values >> np.uint64(31))


def _row_bytes(batch: pa.RecordBatch) -> np.ndarray:
    """Return every column but `weight` of each row as one fixed-width byte string, `[rows]` of numpy void."""
    rows = batch.num_rows
    parts = []
    for name in batch.schema.names:
        if name == "weight":
            continue
        column = batch.column(name)
        # `features` nests two levels: [sessions, positions, features].
        while pa.types.is_fixed_size_list(column.type):
            column = column.flatten()
        values = column.to_numpy(zero_copy_only=False)
        parts.append(np.ascontiguousarray(values).view(np.uint8).reshape(rows, -1))
    matrix = np.ascontiguousarray(np.concatenate(parts, axis=1))
    return matrix.view(np.dtype((np.void, matrix.shape[1]))).ravel()


def _hash_rows(keys: np.ndarray) -> np.ndarray:
    """Hash each row's bytes to 64 bits, `[rows]` uint64."""
    width = keys.dtype.itemsize
    padded = np.zeros((len(keys), -(-width // 8) * 8), np.uint8)
    padded[:, :width] = keys.view(np.uint8).reshape(len(keys), width)
    words = padded.view(np.uint64)
    hashes = np.zeros(len(keys), np.uint64)
    with np.errstate(over="ignore"):
        for column in range(words.shape[1]):
            hashes = _mix64(hashes ^ words[:, column])
    return hashes


class _SchemaRecorder:
    """Iterate over a reader and keep the schema of the last batch."""

    def __init__(self, reader: Iterable[pa.RecordBatch]):
        self._reader = iter(reader)
        self.schema: pa.Schema | None = None

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        for batch in self._reader:
            self.schema = batch.schema
            yield batch


def _prepare_output(output: Path, overwrite: bool) -> None:
    if output.exists() and not output.is_dir():
        raise ValueError(f"--output {output} exists and is not a folder; name a new or empty folder")
    if output.is_dir() and any(output.iterdir()):
        unfinished = is_unfinished_ingest(output)
        if not overwrite:
            contents = "an ingest that did not finish" if unfinished else "files"
            raise ValueError(
                f"--output {output} is not empty (it contains {contents}); name a new or empty folder, or pass "
                "--overwrite to replace an earlier ingest"
            )
        if not unfinished and not (output / MANIFEST_NAME).is_file():
            raise ValueError(
                f"--output {output} is not empty and has no {MANIFEST_NAME}, so it is not an earlier ingest; "
                "--overwrite only replaces ingest folders, so name a new or empty folder"
            )
        shutil.rmtree(output)
    output.mkdir(parents=True, exist_ok=True)


def _shard_summary(shards: list[dict]) -> dict:
    return {
        "sessions": sum(shard["sessions"] for shard in shards),
        "weight": sum(shard["weight"] for shard in shards),
        "shards": shards,
    }


def _describe_columns(schema: pa.Schema | None) -> list[dict]:
    columns = []
    for field in schema or []:
        value_type, dimensions = field.type, ["sessions"]
        while pa.types.is_fixed_size_list(value_type):
            dimensions.append("positions" if len(dimensions) == 1 else str(value_type.list_size))
            value_type = value_type.value_type
        columns.append({"name": field.name, "dtype": _dtype_name(value_type), "shape": f"[{', '.join(dimensions)}]"})
    return columns


def _describe_vocabulary(vocabulary: Vocabulary) -> dict:
    return {
        # Relative to the top ingest folder, also in the manifests of split subfolders.
        "file": VOCABULARY_NAME,
        "id": vocabulary_id(vocabulary),
        "frozen": vocabulary.frozen,
        "query_table_size": vocabulary.query_table_size,
        "document_table_size": vocabulary.document_table_size,
        "pair_table_size": vocabulary.pair_table_size,
    }


def vocabulary_id(vocabulary: Vocabulary) -> str:
    """Hash the ids of a vocabulary: equal for vocabularies with the same ids, whatever the counts.

    A vocabulary loaded from the `vocabulary.parquet` of an earlier ingest and kept frozen gets
    the id of that ingest, so readers accept its shards together with the earlier ones.
    """
    table = vocabulary.to_arrow()
    digest = hashlib.sha256()
    sizes = (vocabulary.query_table_size, vocabulary.document_table_size, vocabulary.pair_table_size)
    digest.update(json.dumps(sizes).encode())
    digest.update(table.column("fingerprint").to_numpy().tobytes())
    for name in ("query_id", "doc_id"):
        digest.update(table.column(name).fill_null(0).to_numpy().tobytes())
    return digest.hexdigest()[:32]


def _write_json(path: Path, value: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=2) + "\n")



def _dtype_name(arrow_type: pa.DataType) -> str:
    return np.dtype(arrow_type.to_pandas_dtype()).name


def shard_vocabulary_path(paths: Sequence[PathLike]) -> Path | None:
    """Find the `vocabulary.parquet` of the ingest that wrote the shards `paths`, or None.

    A path is an ingest folder, a split subfolder or a shard file. The vocabulary is in the top
    ingest folder, so the folder of the path and up to two folders above it are searched.
    """
    for path in paths:
        folder = Path(path)
        if not folder.is_dir():
            folder = folder.parent
        for candidate in [folder, *list(folder.parents)[:2]]:
            if (candidate / VOCABULARY_NAME).is_file():
                return candidate / VOCABULARY_NAME
    return None
