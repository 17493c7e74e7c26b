"""Canonical Parquet shards: read the batches that `clickjax ingest` wrote, checked and shuffled.

An ingest folder contains `part-00000.parquet`, `part-00001.parquet`, ... (one row per session, the
batch contract's columns), a `manifest.json` that lists them, and `load_report.json`. With splits,
each split is a subfolder of the same layout (see `clickjax.ingest`). Reading shards skips parsing,
so a log that is trained on many times should be ingested once:

    reader = read_shards(["ingested/train"])
    for batch in reader:
        ...  # pyarrow.RecordBatch with the batch contract's columns
    log = ShardedLog(["ingested/train"])
    for batch in log.batches(1024, shuffle=True, seed=0):
        ...  # dict of numpy arrays, always exactly 1024 rows

`read_batches("parquet", ...)` and `ClickLog.read("parquet", ...)` of `clickjax.data` read shards
through `read_shards`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

__all__ = [
    "DEFAULT_BUFFER_SESSIONS",
    "FORMAT_VERSION",
    "MANIFEST_NAME",
    "SCHEMA_METADATA_KEY",
    "STAGING_FOLDER",
    "ShardError",
    "ShardReader",
    "ShardedLog",
    "contract_schema",
    "is_unfinished_ingest",
    "read_manifest",
    "read_shards",
    "shuffled_batches",
]

PathLike = str | os.PathLike

# Version of the shard layout and manifest; readers reject other versions.
FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
# Folder of an ingest's staging files while it runs; an ingest that stopped leaves it behind.
STAGING_FOLDER = ".staging"
# Parquet schema metadata key of each shard: JSON with `format_version` and `positions`, so that a
# shard file read without its manifest still states how it was padded.
SCHEMA_METADATA_KEY = b"clickjax"
# Rows per RecordBatch when reading shards, unless the caller chooses.
DEFAULT_READ_BATCH_SIZE = 65_536
# Sessions in the shuffle buffer of `shuffled_batches` and `ShardedLog`, unless the caller chooses.
DEFAULT_BUFFER_SESSIONS = 100_000

# Columns every shard has: name -> (Arrow value type, True if padded to [sessions, positions]).
_CONTRACT_TYPES: dict[str, tuple[pa.DataType, bool]] = {
    "query_id": (pa.int32(), False),
    "doc_id": (pa.int32(), True),
    "query_doc_id": (pa.int32(), True),
    "query_doc_hash": (pa.int32(), True),
    "position": (pa.int32(), True),
    "click": (pa.uint8(), True),
    "mask": (pa.uint8(), True),
    "weight": (pa.float32(), False),
}


class ShardError(ValueError):
    """A shard or ingest folder that does not match the batch contract or its manifest.

    Attributes:
      path: the shard file or folder.
      column: the column at fault, or None when the file as a whole is at fault.
    """

    def __init__(self, message: str, path: PathLike, column: str | None = None):
        super().__init__(message)
        self.path = os.fspath(path)
        self.column = column


def contract_schema(positions: int) -> pa.Schema:
    """Return the Arrow schema of the batch contract's eight columns, padded to `positions` slots."""
    fields = []
    for name, (value_type, padded) in _CONTRACT_TYPES.items():
        arrow_type = pa.list_(pa.field("item", value_type, nullable=False), positions) if padded else value_type
        fields.append(pa.field(name, arrow_type, nullable=False))
    return pa.schema(fields)


def is_unfinished_ingest(folder: Path) -> bool:
    """Return whether `folder` contains an ingest that stopped: a staging folder but no manifest.

    An ingest writes its top manifest last, so a staging folder without one is left by an ingest
    that was killed or failed.
    """
    return (folder / STAGING_FOLDER).is_dir() and not (folder / MANIFEST_NAME).is_file()


def read_manifest(folder: PathLike) -> dict:
    """Read and check the `manifest.json` of an ingest folder or split subfolder.

    Raises:
      ShardError: the folder has no manifest, or it is not valid JSON of a known format version.
    """
    path = Path(folder) / MANIFEST_NAME
    if is_unfinished_ingest(Path(folder)):
        raise ShardError(
            f"{folder} has no {MANIFEST_NAME} but a {STAGING_FOLDER} folder: an ingest into it did not finish. "
            "Run clickjax ingest again with --overwrite",
            folder,
        )
    if not path.is_file():
        raise ShardError(
            f"{folder} has no {MANIFEST_NAME}; name a folder that clickjax ingest wrote (its --output "
            "or a split subfolder) or the part-NNNNN.parquet files themselves",
            folder,
        )
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ShardError(f"{path} is not valid JSON ({error}); run clickjax ingest again", path) from error
    version = manifest.get("format_version") if isinstance(manifest, dict) else None
    if version != FORMAT_VERSION:
        raise ShardError(
            f"{path} has format_version {version!r}, but this clickjax reads version {FORMAT_VERSION}; "
            "run clickjax ingest again with this version",
            path,
        )
    return manifest


@dataclass(frozen=True)
class _Shard:
    path: Path
    # Manifest of the folder that lists this shard, or None for a shard file named on its own.
    manifest: dict | None


class ShardReader:
    """An iterator of `pyarrow.RecordBatch` over canonical Parquet shards, read one after another.

    Every shard is opened and checked when the reader is made, so a wrong file fails before any
    batch. Batches come from pyarrow's Parquet decoder in its own 64-byte aligned buffers, so
    `clickjax.data.batch_to_numpy` returns views of them without a copy.

    Attributes:
      paths: the shard files in reading order.
      positions: slots per row, P.
      columns: the column names of every batch, the batch contract's first.
      vocabulary: the `vocabulary` entry of the shards' manifest (table sizes and the id of the
        vocabulary that encoded them), or None for shard files without a manifest.
      threads: decoding threads, as for `read_shards`.
      selected: the columns that batches contain, as `read_shards(columns=...)` chose them, or
        None for every column.

    A reader made with `count=False` leaves its counters (`stats`) at 0, which saves a pass over
    every batch for a caller that does not report them.
    """

    def __init__(
        self,
        paths: Sequence[PathLike],
        *,
        positions: int | None = None,
        batch_size: int = DEFAULT_READ_BATCH_SIZE,
        threads: int | None = None,
        columns: Sequence[str] | None = None,
        count: bool = True,
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if not paths:
            raise ValueError("no shard paths given; name an ingest folder or part-NNNNN.parquet files")
        shards = [shard for path in paths for shard in _resolve(Path(path))]
        self.positions: int | None = positions
        self.columns: list[str] | None = None
        self._files = []
        for shard in shards:
            self._files.append(self._open(shard))
        self.paths = [shard.path for shard in shards]
        if self.positions is None:
            # A split that received no sessions has no shards, but its manifest records P.
            self.positions = next((_read_positions(Path(path)) for path in paths if Path(path).is_dir()), None)
        self.vocabulary = _common_vocabulary(shards)
        self.batch_size = batch_size
        self.threads = _check_threads(threads)
        self.selected = self._select(columns)
        self._counting = count
        self._batches = self._iterate()
        self._counts = {
            "sessions_read": 0,
            "sessions_kept": 0,
            "sessions_without_clicks": 0,
            "oov_queries": 0,
            "oov_documents": 0,
            "oov_pairs": 0,
        }

    def __iter__(self) -> ShardReader:
        return self

    def __next__(self) -> pa.RecordBatch:
        batch = next(self._batches)
        if self._counting:
            self._count(batch)
        return batch

    @property
    def stats(self) -> dict[str, int]:
        """Counters so far, under the keys of the text readers' counters.

        `sessions_read` and `sessions_kept` count rows, and `sessions_without_clicks` the rows
        without a click. The out-of-vocabulary counts are `oov_queries` (rows with query id 1),
        `oov_documents` and `oov_pairs` (real results with document or pair id 1).
        """
        return dict(self._counts)

    @property
    def shard_sessions(self) -> list[int]:
        """Rows in each shard, in reading order, from the Parquet footers."""
        return [file.metadata.num_rows for file in self._files]

    @property
    def num_sessions(self) -> int:
        """Rows in all shards, from the Parquet footers."""
        return sum(self.shard_sessions)

    def _open(self, shard: _Shard) -> pq.ParquetFile:
        try:
            file = pq.ParquetFile(shard.path, pre_buffer=False)
        except FileNotFoundError:
            raise
        except (pa.ArrowInvalid, OSError) as error:
            raise ShardError(
                f"{shard.path} is not a readable Parquet file ({error}). For a raw log, pass its own --format "
                "(baidu, yandex, wscd, clickmodels, ...); Parquet shards are what clickjax ingest writes",
                shard.path,
            ) from error
        positions = _check_schema(shard, file.schema_arrow)
        if self.positions is None:
            self.positions = positions
        elif positions != self.positions:
            raise ShardError(
                f"{shard.path} is padded to {positions} positions, but {self.positions} were requested "
                f"(--positions); ingest the log again with --positions {self.positions}, or read it with "
                f"--positions {positions}",
                shard.path,
            )
        names = file.schema_arrow.names
        if self.columns is None:
            self.columns = names
        elif names != self.columns:
            raise ShardError(
                f"{shard.path} has the columns {names}, but the shards before it have {self.columns}; "
                "read shards of one ingest together",
                shard.path,
            )
        return file

    @property
    def row_bytes(self) -> int:
        """Bytes of one decoded row in numpy, over every column (see `decoded_bytes`)."""
        return sum(_value_bytes(field.type) for field in self._files[0].schema_arrow) if self._files else 0

    @property
    def decoded_bytes(self) -> int:
        """Bytes that the rows of all shards take once decoded into numpy columns, as in a `ClickLog`."""
        return self.num_sessions * self.row_bytes

    def _select(self, columns: Sequence[str] | None) -> list[str] | None:
        """Check the requested columns and return them in the shards' order, `mask` and `weight` included."""
        if columns is None:
            return None
        available = self.columns or []
        missing = [name for name in columns if name not in available]
        if missing:
            raise ValueError(
                f"the shards have no column {', '.join(missing)}; they have {', '.join(available)}. "
                "Request only columns that the ingest wrote"
            )
        # Padding a batch and counting its results need both.
        requested = set(columns) | {"mask", "weight"}
        return [name for name in available if name in requested]

    def _iterate(self) -> Iterator[pa.RecordBatch]:
        # pyarrow decodes the columns of a batch on its CPU thread pool, whose size
        # `pyarrow.set_cpu_count` sets for the whole process. With one thread, the caller decodes.
        use_threads = self.threads != 1
        for file in self._files:
            yield from file.iter_batches(batch_size=self.batch_size, columns=self.selected, use_threads=use_threads)

    def _count(self, batch: pa.RecordBatch) -> None:
        rows = batch.num_rows
        positions = self.positions
        names = set(batch.schema.names)
        mask = _padded(batch, "mask", positions).astype(bool)
        self._counts["sessions_read"] += rows
        self._counts["sessions_kept"] += rows
        if "query_id" in names:
            self._counts["oov_queries"] += int(np.count_nonzero(batch.column("query_id").to_numpy() == 1))
        for name, counter in (("doc_id", "oov_documents"), ("query_doc_id", "oov_pairs")):
            if name in names:
                self._counts[counter] += _count_ones(_padded(batch, name, positions), mask)
        if "click" in names:
            clicked = ((_padded(batch, "click", positions) != 0) & mask).any(axis=1)
            self._counts["sessions_without_clicks"] += int(rows - np.count_nonzero(clicked))


def read_shards(
    paths: Sequence[PathLike],
    *,
    positions: int | None = None,
    batch_size: int = DEFAULT_READ_BATCH_SIZE,
    threads: int | None = None,
    columns: Sequence[str] | None = None,
) -> ShardReader:
    """Stream canonical Parquet shards as Arrow RecordBatches.

    Args:
      paths: ingest folders (or split subfolders) with a `manifest.json`, or shard files, read in
        this order. A folder's shards are read in the manifest's order.
      positions: page length P the caller expects; None accepts the shards' own. Shards are never
        re-padded, so a different P is an error.
      batch_size: maximum rows per RecordBatch; a batch never spans two shards.
      threads: 1 decodes on the calling thread; None or more than 1 decodes on pyarrow's CPU
        thread pool, whose size `pyarrow.set_cpu_count` sets for the whole process (the CLI's
        `--threads` sets it).
      columns: the columns to read, or None for all. `mask` and `weight` are always read. Parquet
        decodes only these: reading the 4 columns of DBN's step took two thirds of the time of
        all 8 in the training benchmark. The reader's counters then count only what these
        columns show: out-of-vocabulary documents, for example, only when `doc_id` is read.

    Returns:
      A `ShardReader` of RecordBatches with the batch contract's columns, `[batch]` and
      `[batch, positions]`, plus any behaviour or label columns the ingest kept (with `columns`,
      only those).

    Raises:
      FileNotFoundError: a path does not exist.
      ShardError: a folder without a manifest, or one that contains splits rather than shards. A
        file that is not Parquet, lacks a contract column, has a column of the wrong type, or was
        padded to another P. The message names the file and the column.
      ValueError: `columns` names a column that the shards do not have.
    """
    return ShardReader(paths, positions=positions, batch_size=batch_size, threads=threads, columns=columns)


def shuffled_batches(
    reader_paths: Sequence[PathLike],
    batch_size: int,
    *,
    seed: int = 0,
    buffer_sessions: int = DEFAULT_BUFFER_SESSIONS,
    positions: int | None = None,
    threads: int | None = None,
    columns: Sequence[str] | None = None,
) -> Iterator[dict[str, np.ndarray]]:
    """Yield shuffled batches of exactly `batch_size` rows from shards, in bounded memory.

    The shard order is a permutation drawn from `seed`. Sessions then pass through a buffer of
    `buffer_sessions` rows: whenever the buffer contains more, the surplus is drawn uniformly at random
    from the whole buffer and yielded. So memory is bounded by `buffer_sessions` plus one read
    batch of max(`batch_size`, 1024, `buffer_sessions` / 2) rows, and the order is a permutation of every session that depends only on `seed`. The
    last batch is padded with empty sessions (`mask` and `weight` 0), as `ClickLog.batches` does.

    Args:
      reader_paths: ingest folders or shard files, as for `read_shards`.
      batch_size: rows per yielded batch.
      seed: seed of the shard order and of the draws from the buffer.
      buffer_sessions: sessions kept in the buffer; a larger buffer mixes sessions from further apart.
      positions: page length P the caller expects; None accepts the shards' own.
      threads: decoding threads, as for `read_shards`.
      columns: the columns to read, as for `read_shards`; the order of the rows does not depend on it.

    Yields:
      Dicts of numpy arrays, `[batch_size]` or `[batch_size, positions]`.
    """
    from clickjax.data import batch_to_numpy, pad_batch, take_rows

    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if buffer_sessions < 0:
        raise ValueError(f"buffer_sessions must be at least 0, got {buffer_sessions}")
    rng = np.random.default_rng(seed)
    files = [shard.path for path in reader_paths for shard in _resolve(Path(path))]
    order = rng.permutation(len(files))
    # Read batches of half the buffer, so that refilling it copies each row only a few times.
    read_batch_size = max(batch_size, 1024, buffer_sessions // 2)
    reader = ShardReader(
        [files[i] for i in order],
        positions=positions,
        batch_size=read_batch_size,
        threads=threads,
        columns=columns,
        count=False,
    )

    buffer: dict[str, np.ndarray] | None = None
    for record_batch in reader:
        arrays = batch_to_numpy(record_batch, partial=reader.selected is not None)
        if buffer is None:
            buffer = {name: array.copy() for name, array in arrays.items()}
        else:
            buffer = {name: np.concatenate([buffer[name], arrays[name]]) for name in buffer}
        rows = len(buffer["weight"])
        surplus = (rows - buffer_sessions) // batch_size * batch_size
        if surplus <= 0:
            continue
        # Draw the surplus rows uniformly from the whole buffer and keep the rest for later.
        permutation = rng.permutation(rows)
        drawn = permutation[:surplus]
        for start in range(0, surplus, batch_size):
            rows_out = drawn[start : start + batch_size]
            yield take_rows(buffer, rows_out)
        # The rows not drawn stay in their order, found in one pass rather than by sorting.
        remaining = np.ones(rows, bool)
        remaining[drawn] = False
        buffer = take_rows(buffer, np.flatnonzero(remaining))

    if buffer is None:
        return
    permutation = rng.permutation(len(buffer["weight"]))
    for start in range(0, len(permutation), batch_size):
        rows_out = permutation[start : start + batch_size]
        yield pad_batch(take_rows(buffer, rows_out), batch_size)


class ShardedLog:
    """A click log kept on disk as shards and streamed for training, in bounded memory.

    It has the interface of `clickjax.data.ClickLog` that `clickjax.training.Trainer`,
    `clickjax.metrics.evaluate` and `clickjax.run` use (`num_sessions`, `batches`, `num_batches`,
    `stats`, `total_weight`), so a log larger than memory can be trained on:
    `Trainer(...).fit(model, ShardedLog(["ingested/train"]))`. Memory stays bounded by the shuffle
    buffer and one read batch, whatever the number of shards.

    `stats`, `total_weight`, `results` and `max_pair_id` read every shard once, the first time
    one of them is asked for, and keep the figures.

    Attributes:
      paths: ingest folders or shard files.
      positions: page length P of the shards.
      buffer_sessions: size of the shuffle buffer, in sessions.
      threads: decoding threads, as for `read_shards`.
      column_names: the columns of every batch.
      row_bytes: bytes of one decoded row (see `ShardReader.row_bytes`).
    """

    def __init__(
        self,
        paths: Sequence[PathLike],
        *,
        positions: int | None = None,
        buffer_sessions: int = DEFAULT_BUFFER_SESSIONS,
        threads: int | None = None,
    ):
        if buffer_sessions < 0:
            raise ValueError(f"buffer_sessions must be at least 0, got {buffer_sessions}")
        reader = ShardReader(paths, positions=positions, threads=threads)
        self.paths = list(paths)
        self.positions = reader.positions
        self.buffer_sessions = buffer_sessions
        self.threads = reader.threads
        self.column_names = list(reader.columns or [])
        self.row_bytes = reader.row_bytes
        self._num_sessions = reader.num_sessions
        self._shard_sessions = reader.shard_sessions
        self._seen_pairs: np.ndarray | None = None
        self._summary: dict | None = None

    @property
    def num_sessions(self) -> int:
        """Number of rows in all shards."""
        return self._num_sessions

    @property
    def decoded_bytes(self) -> int:
        """Bytes the whole log would take in memory as a `ClickLog`."""
        return self._num_sessions * self.row_bytes

    @property
    def stats(self) -> dict[str, int]:
        """The reader counters of all shards (`ShardReader.stats`), unseen pairs counted as `oov_pairs`."""
        return dict(self._summarize()["stats"])

    @property
    def total_weight(self) -> float:
        """Number of sessions the rows stand for, counting `weight`."""
        return self._summarize()["total_weight"]

    @property
    def results(self) -> int:
        """Number of real results (`mask` 1) in all shards."""
        return self._summarize()["results"]

    @property
    def max_pair_id(self) -> int:
        """Largest `query_doc_id` in all shards, 0 for a log without sessions."""
        return self._summarize()["max_pair_id"]

    def stream_bytes(self, batch_size: int, batches_ahead: int) -> int:
        """Estimate the peak bytes of shuffled streaming: the buffer, one read batch and the batches ahead.

        `shuffled_batches` concatenates a read batch of max(`batch_size`, 1024, `buffer_sessions` / 2)
        rows onto the buffer, so the buffer, that batch and their concatenation are alive at once.
        """
        read_batch = max(batch_size, 1024, self.buffer_sessions // 2)
        rows = min(2 * (self.buffer_sessions + read_batch), 2 * self._num_sessions) + batches_ahead * batch_size
        return rows * self.row_bytes

    def mark_unseen_pairs(self, seen_pairs: np.ndarray) -> int:
        """Give every real result whose pair is not in `seen_pairs` the id 1 in every batch from now on.

        This is `clickjax.data.mark_unseen_pairs` for a log on disk: the shards stay as they are,
        and the batches change as they are read. Reads every shard once to count the results marked.

        Returns:
          The number of results marked.
        """
        before = self.stats.get("oov_pairs", 0)
        self._seen_pairs = np.unique(np.asarray(seen_pairs))
        self._summary = None
        return self.stats.get("oov_pairs", 0) - before

    def batches(
        self, batch_size: int, *, shuffle: bool = False, seed: int = 0, columns: Sequence[str] | None = None
    ) -> Iterator[dict[str, np.ndarray]]:
        """Yield batches of exactly `batch_size` rows; the last one is padded with empty sessions.

        Without `shuffle` the rows come in shard order; with it, through `shuffled_batches`.
        `columns` reads only those columns, plus `mask` and `weight` (see `read_shards`). The
        trainer passes the columns its step reads.
        """
        from clickjax.data import batch_to_numpy, pad_batch

        if shuffle:
            stream = shuffled_batches(
                self.paths,
                batch_size,
                seed=seed,
                buffer_sessions=self.buffer_sessions,
                positions=self.positions,
                threads=self.threads,
                columns=columns,
            )
        else:
            reader = ShardReader(
                self.paths,
                positions=self.positions,
                batch_size=batch_size,
                threads=self.threads,
                columns=columns,
                count=False,
            )
            partial = reader.selected is not None
            stream = (pad_batch(batch_to_numpy(batch, partial=partial), batch_size) for batch in reader)
        for batch in stream:
            yield self._marked(batch)

    def num_batches(self, batch_size: int, *, shuffle: bool = False) -> int:
        """Number of batches `batches(batch_size, shuffle=shuffle)` yields.

        Without shuffling a batch never spans two shards, so each shard ends with its own batch.
        """
        if shuffle:
            return -(-self.num_sessions // batch_size)
        return sum(-(-rows // batch_size) for rows in self._shard_sessions)

    def _marked(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self._seen_pairs is None or "query_doc_id" not in batch:
            return batch
        from clickjax.data import unseen_results

        unseen = unseen_results(batch, self._seen_pairs)
        return {**batch, "query_doc_id": np.where(unseen, np.int32(1), batch["query_doc_id"]).astype(np.int32)}

    def _summarize(self) -> dict:
        from clickjax.data import batch_to_numpy

        if self._summary is not None:
            return self._summary
        reader = ShardReader(self.paths, positions=self.positions, threads=self.threads)
        total_weight, results, max_pair_id, marked = 0.0, 0, 0, 0
        for record_batch in reader:
            batch = batch_to_numpy(record_batch)
            marked_batch = self._marked(batch)
            marked += int(np.count_nonzero(marked_batch["query_doc_id"] != batch["query_doc_id"]))
            total_weight += float(batch["weight"].sum(dtype=np.float64))
            results += int(np.count_nonzero(batch["mask"]))
            max_pair_id = max(max_pair_id, int(batch["query_doc_id"].max(initial=0)))
        stats = reader.stats
        stats["oov_pairs"] += marked
        self._summary = {"stats": stats, "total_weight": total_weight, "results": results, "max_pair_id": max_pair_id}
        return self._summary


def _check_threads(threads: int | None) -> int | None:
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ValueError(f"threads must be an integer of at least 1 or None, got {threads!r}")
    return threads


def _value_bytes(value_type: pa.DataType) -> int:
    """Bytes of one value of `value_type` in numpy; a variable-width type counts 0."""
    if pa.types.is_fixed_size_list(value_type):
        return value_type.list_size * _value_bytes(value_type.value_type)
    try:
        # numpy stores a boolean, one bit in Arrow, in a byte.
        return max(value_type.bit_width, 8) // 8
    except ValueError:
        # NOTE: strings and variable-length lists have no fixed width, so they are left out of
        # `decoded_bytes`; shards written by clickjax ingest have none.
        return 0


def _resolve(path: Path) -> list[_Shard]:
    if not path.exists():
        raise FileNotFoundError(2, "No such file or directory", os.fspath(path))
    if path.is_file():
        manifest = None
        if (path.parent / MANIFEST_NAME).is_file():
            manifest = read_manifest(path.parent)
        return [_Shard(path, manifest)]
    manifest = read_manifest(path)
    if manifest.get("splits") and not manifest.get("shards"):
        names = ", ".join(str(path / name) for name in manifest["splits"])
        raise ShardError(f"{path} contains the splits {', '.join(manifest['splits'])}, not shards; name one of {names}", path)
    return [_Shard(path / entry["path"], manifest) for entry in manifest.get("shards", [])]


def _read_positions(folder: Path) -> int:
    return read_manifest(folder)["positions"]


def _check_schema(shard: _Shard, schema: pa.Schema) -> int:
    """Check a shard's schema against the batch contract and its manifest; return its P."""
    path = shard.path
    metadata = json.loads((schema.metadata or {}).get(SCHEMA_METADATA_KEY, b"{}"))
    positions = metadata.get("positions")
    if positions is None:
        raise ShardError(
            f"{path} has no clickjax metadata, so it was not written by clickjax ingest; ingest the raw log",
            path,
        )
    if shard.manifest is not None and shard.manifest["positions"] != positions:
        raise ShardError(
            f"{path} is padded to {positions} positions, but its {MANIFEST_NAME} records "
            f"{shard.manifest['positions']}; the folder mixes two ingests, so ingest the log again",
            path,
        )
    for name, (value_type, padded) in _CONTRACT_TYPES.items():
        if name not in schema.names:
            raise ShardError(
                f"{path} has no column {name!r}; shards need the batch contract's columns "
                f"{', '.join(_CONTRACT_TYPES)}, so ingest the log again",
                path,
                name,
            )
        actual = schema.field(name).type
        expected = pa.list_(value_type, positions) if padded else value_type
        if padded and pa.types.is_fixed_size_list(actual) and actual.list_size != positions:
            raise ShardError(
                f"{path}: column {name!r} has {actual.list_size} slots, but the shard is padded to "
                f"{positions} positions; ingest the log again",
                path,
                name,
            )
        if not _same_type(actual, expected):
            raise ShardError(f"{path}: column {name!r} has type {actual}, expected {expected}", path, name)
    return positions


def _same_type(actual: pa.DataType, expected: pa.DataType) -> bool:
    # Field names and nullability of list items do not matter to readers.
    if pa.types.is_fixed_size_list(expected):
        return (
            pa.types.is_fixed_size_list(actual)
            and actual.list_size == expected.list_size
            and actual.value_type == expected.value_type
        )
    return actual == expected


def _common_vocabulary(shards: list[_Shard]) -> dict | None:
    vocabularies = {json.dumps(shard.manifest["vocabulary"], sort_keys=True) for shard in shards if shard.manifest}
    ids = {json.loads(entry).get("id") for entry in vocabularies}
    if len(ids) > 1:
        raise ShardError(
            f"the shards were encoded with {len(ids)} different vocabularies, so their ids do not match; "
            "ingest every log with --vocabulary set to the training ingest's vocabulary.parquet",
            shards[0].path,
        )
    if not vocabularies:
        return None
    # Split subfolders of one ingest share the vocabulary id; keep the largest table sizes.
    entries = [json.loads(entry) for entry in vocabularies]
    return max(entries, key=lambda entry: entry.get("pair_table_size", 0))


def _count_ones(ids: np.ndarray, mask: np.ndarray) -> int:
    """Count the real results with id 1 (out of vocabulary) in a `[rows, positions]` id column."""
    ones = ids == 1
    # Most batches of a training log have none, and then the mask is not needed.
    if not ones.any():
        return 0
    return int(np.count_nonzero(ones & mask))


def _padded(batch: pa.RecordBatch, name: str, positions: int) -> np.ndarray:
    return batch.column(name).flatten().to_numpy(zero_copy_only=False).reshape(batch.num_rows, positions)
