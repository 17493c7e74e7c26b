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
| `key`         | large_binary | queries and documents: the key text as read from the log; null for pairs and ids without a key |

The schema metadata stores the frozen flag (`clickjax.vocabulary.frozen`, `"true"` or `"false"`),
whether the vocabulary records keys (`clickjax.vocabulary.keys`), and the layout version
(`clickjax.vocabulary.format_version`, `FORMAT_VERSION`). Files of the previous version 1 have no
`key` column and still load, as a vocabulary without keys.

Example:

    vocabulary = Vocabulary()
    ClickLog.read("baidu", ["part-00000.gz"], vocabulary)
    vocabulary.freeze()
    save_vocabulary(vocabulary, "vocabulary.parquet")
    ...
    vocabulary = load_vocabulary("vocabulary.parquet")  # the same ids, still frozen
"""

from __future__ import annotations

import errno
import os
from collections.abc import Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from clickjax._native import Vocabulary

__all__ = ["FORMAT_VERSION", "ID_ORDERS", "VOCABULARY_SCHEMA", "build_vocabulary", "load_vocabulary", "save_vocabulary"]

# Orders of `build_vocabulary`: by descending count, or by first appearance as readers assign ids.
ID_ORDERS = ("frequency", "appearance")

# Layout version of the files that this version writes; it also reads PREVIOUS_FORMAT_VERSION.
FORMAT_VERSION = "2"
PREVIOUS_FORMAT_VERSION = "1"

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
        pa.field("key", pa.large_binary()),
    ]
)

# Columns of a version 1 file, which had no keys.
_PREVIOUS_SCHEMA = pa.schema(list(VOCABULARY_SCHEMA)[:-1])


def build_vocabulary(
    format: str,
    paths: Sequence[str | os.PathLike],
    *,
    order: str = "frequency",
    min_count: int = 1,
    keys: bool = False,
    **options: object,
) -> Vocabulary:
    """Build a frozen vocabulary from a counting pass over a click log.

    The files are read once with `clickjax.data.read_batches` and the same reader options, so
    the counts cover the sessions that pass the reader's rules and the results within
    `positions`. Queries, documents and pairs met fewer than `min_count` times are left out and
    read as out of vocabulary (id 1), and so is a pair whose query or document is left out. The
    others get ids from 2 by `order`. `"frequency"` numbers them by descending count, ties in
    order of first appearance, so the same input always gives the same ids. `"appearance"` keeps
    the order in which readers meet them.

    Args:
      format: the log format, one of `clickjax.data.FORMATS`.
      paths: files read in order.
      order: `"frequency"` or `"appearance"`.
      min_count: entries met fewer times than this are left out; 1 keeps every entry.
      keys: store the key text of each query and document (see `Vocabulary(keys=True)`).
      **options: reader options of `read_batches` (`positions`, `on_error`, `document_key`, ...).

    Returns:
      A frozen `Vocabulary`; its `count` column (see `save_vocabulary`) contains the counts.

    Raises:
      ValueError: `order` or `min_count` is invalid, or a reader option is.
    """
    from clickjax.data import read_batches

    if order not in ID_ORDERS:
        raise ValueError(f"invalid order {order!r}: expected one of {', '.join(map(repr, ID_ORDERS))}")
    if isinstance(min_count, bool) or not isinstance(min_count, int) or min_count < 1:
        raise ValueError(f"invalid min_count {min_count!r}: expected an integer of at least 1")
    counting = Vocabulary(keys=keys)
    for _ in read_batches(format, paths, counting, **options):
        pass
    return counting.reindex(order=order, min_count=min_count)


def save_vocabulary(vocabulary: Vocabulary, path: str | os.PathLike) -> None:
    """Write `vocabulary` to `path` as one Parquet file, replacing any file there.

    The file is written next to `path` first and renamed into place, so an interrupted save
    leaves any previous file whole.

    Raises:
      FileNotFoundError: the folder of `path` does not exist.
    """
    path = os.fspath(path)
    folder = os.path.dirname(path) or "."
    if not os.path.isdir(folder):
        raise FileNotFoundError(errno.ENOENT, f"folder {folder!r} of the vocabulary file does not exist", path)
    table = pa.Table.from_batches([vocabulary.to_arrow()])
    partial = f"{path}.partial"
    try:
        pq.write_table(table, partial)
        os.replace(partial, path)
    finally:
        if os.path.exists(partial):
            os.remove(partial)


def load_vocabulary(path: str | os.PathLike) -> Vocabulary:
    """Read a vocabulary that `save_vocabulary` wrote; its ids, counts, keys and frozen flag are restored.

    A file of the previous format version 1 loads as a vocabulary without keys.

    Raises:
      FileNotFoundError: `path` does not exist.
      ValueError: `path` is a folder, or the file is not Parquet, has another format version,
        lacks a column or has one of the wrong type, or its rows do not form a valid vocabulary
        (gaps in the ids, repeated fingerprints, pairs that join unknown ids). The message names
        the file.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        raise ValueError(f"{path} is a folder; expected the Parquet file that save_vocabulary wrote")
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
    version = version.decode(errors="replace")
    if version not in (FORMAT_VERSION, PREVIOUS_FORMAT_VERSION):
        raise ValueError(
            f"{path}: vocabulary format version {version!r} is not supported; this clickjax reads versions "
            f"{PREVIOUS_FORMAT_VERSION} and {FORMAT_VERSION}. Save the vocabulary again with this version"
        )
    schema = VOCABULARY_SCHEMA if version == FORMAT_VERSION else _PREVIOUS_SCHEMA
    _check_columns(table.schema, schema, path)

    table = table.select(schema.names)
    if version == FORMAT_VERSION and table.schema.field("key").type != pa.large_binary():
        # A key column rewritten by other tools as binary or string is cast to large_binary.
        table = table.set_column(table.schema.get_field_index("key"), "key", table.column("key").cast(pa.large_binary()))
    table = table.combine_chunks()
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


# Types that a `key` column may have in a file; it is cast to large_binary when loaded.
_KEY_TYPES = (pa.large_binary(), pa.binary(), pa.string(), pa.large_string())


def _check_columns(schema: pa.Schema, expected: pa.Schema, path: str) -> None:
    for field in expected:
        index = schema.get_field_index(field.name)
        if index < 0:
            raise ValueError(
                f"{path}: column {field.name!r} is missing; a saved vocabulary of this version has the columns "
                f"{', '.join(expected.names)}"
            )
        found = schema.field(index).type
        if field.name == "key":
            if found not in _KEY_TYPES:
                raise ValueError(f"{path}: column 'key' has type {found}, expected large_binary")
        elif found != field.type:
            raise ValueError(f"{path}: column {field.name!r} has type {found}, expected {field.type}")
