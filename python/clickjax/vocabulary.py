"""Save and load a `Vocabulary` as one Parquet file, so that later runs encode logs to the same ids.

The file has one row per real id (queries, then documents, then pairs, each in id order):

| column        | type   | meaning                                                         |
|---------------|--------|-----------------------------------------------------------------|
| `kind`        | string | `query`, `document` or `pair`                                   |
| `id`          | int32  | dense id, from 2                                                |
| `fingerprint` | uint64 | xxh3-64 fingerprint of the key                                  |
| `count`       | int64  | how often readers met the key while the vocabulary was open     |
| `query_id`    | int32  | pairs: the query id the pair joins; null for other kinds        |
| `doc_id`      | int32  | pairs: the document id the pair joins; null for other kinds     |

The schema metadata stores the frozen flag (`clickjax.vocabulary.frozen`, `"true"` or `"false"`)
and the layout version (`clickjax.vocabulary.format_version`, `FORMAT_VERSION`).

Example:

    vocabulary = Vocabulary()
    ClickLog.read("baidu", ["part-00000.gz"], vocabulary)
    vocabulary.freeze()
    save_vocabulary(vocabulary, "vocabulary.parquet")
    ...
    vocabulary = load_vocabulary("vocabulary.parquet")  # the same ids, still frozen
"""

from __future__ import annotations

import os

import pyarrow as pa
import pyarrow.parquet as pq

from clickjax._native import Vocabulary

__all__ = ["FORMAT_VERSION", "VOCABULARY_SCHEMA", "load_vocabulary", "save_vocabulary"]

# Layout version of the files that this version writes and reads.
FORMAT_VERSION = "1"

FORMAT_VERSION_KEY = b"clickjax.vocabulary.format_version"
FROZEN_KEY = b"clickjax.vocabulary.frozen"

# Columns of a saved vocabulary; the metadata is added per file.
VOCABULARY_SCHEMA = pa.schema(
    [
        pa.field("kind", pa.string(), nullable=False),
        pa.field("id", pa.int32(), nullable=False),
        pa.field("fingerprint", pa.uint64(), nullable=False),
        pa.field("count", pa.int64(), nullable=False),
        pa.field("query_id", pa.int32()),
        pa.field("doc_id", pa.int32()),
    ]
)


def save_vocabulary(vocabulary: Vocabulary, path: str | os.PathLike) -> None:
    """Write `vocabulary` to `path` as one Parquet file, replacing any file there.

    The file is written next to `path` first and renamed into place, so an interrupted save
    leaves any previous file whole.
    """
    path = os.fspath(path)
    table = pa.Table.from_batches([vocabulary.to_arrow()])
    partial = f"{path}.partial"
    try:
        pq.write_table(table, partial)
        os.replace(partial, path)
    finally:
        if os.path.exists(partial):
            os.remove(partial)


def load_vocabulary(path: str | os.PathLike) -> Vocabulary:
    """Read a vocabulary that `save_vocabulary` wrote; its ids, counts and frozen flag are restored.

    Raises:
      FileNotFoundError: `path` does not exist.
      ValueError: the file is not Parquet, has another format version, lacks a column or has one
        of the wrong type, or its rows do not form a valid vocabulary (gaps in the ids, repeated
        fingerprints, pairs that join unknown ids). The message names the file.
    """
    path = os.fspath(path)
    try:
        table = pq.read_table(path)
    except pa.ArrowInvalid as error:
        raise ValueError(f"{path}: not a readable Parquet file ({error}); expected a file that save_vocabulary wrote") from error

    metadata = table.schema.metadata or {}
    version = metadata.get(FORMAT_VERSION_KEY)
    if version is None:
        raise ValueError(
            f"{path}: schema metadata has no {FORMAT_VERSION_KEY.decode()}, so this is not a clickjax vocabulary"
        )
    if version.decode(errors="replace") != FORMAT_VERSION:
        raise ValueError(
            f"{path}: vocabulary format version {version.decode(errors='replace')!r} is not supported; this "
            f"clickjax reads version {FORMAT_VERSION}. Save the vocabulary again with this version"
        )
    _check_columns(table.schema, path)

    table = table.select(VOCABULARY_SCHEMA.names).combine_chunks()
    batches = table.to_batches()
    if batches:
        batch = batches[0]
    else:
        batch = pa.RecordBatch.from_pylist([], schema=table.schema)
    batch = batch.replace_schema_metadata(metadata)
    try:
        return Vocabulary.from_arrow(batch)
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from error


def _check_columns(schema: pa.Schema, path: str) -> None:
    for field in VOCABULARY_SCHEMA:
        index = schema.get_field_index(field.name)
        if index < 0:
            raise ValueError(
                f"{path}: column {field.name!r} is missing; a saved vocabulary has the columns "
                f"{', '.join(VOCABULARY_SCHEMA.names)}"
            )
        found = schema.field(index).type
        if found != field.type:
            raise ValueError(f"{path}: column {field.name!r} has type {found}, expected {field.type}")
