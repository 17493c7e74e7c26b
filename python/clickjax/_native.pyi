"""Click-log readers written in Rust: raw Baidu-ULTR and WSCD files to padded Arrow batches.

`BatchReader` parses log files, plain or gzip-compressed (detected by the magic bytes, every member
of a multi-member file read), and yields one `pyarrow.RecordBatch` per `batch_size` sessions. Each
row is one search session padded to P = `positions` result slots:

| column           | shape                 | dtype   | meaning                                 |
|------------------|-----------------------|---------|-----------------------------------------|
| `query_id`       | `[batch]`             | int32   | dense query id                          |
| `doc_id`         | `[batch, positions]`  | int32   | dense document id                       |
| `query_doc_id`   | `[batch, positions]`  | int32   | dense query-document pair id            |
| `query_doc_hash` | `[batch, positions]`  | int32   | non-negative 31-bit hash of the pair    |
| `position`       | `[batch, positions]`  | int32   | rank as displayed, 1-based, 0 = padding |
| `click`          | `[batch, positions]`  | uint8   | 1 = clicked                             |
| `mask`           | `[batch, positions]`  | uint8   | 1 = a real result                       |
| `weight`         | `[batch]`             | float32 | 1.0 for every row                       |

The `[batch, positions]` columns are FixedSizeList arrays without validity bitmaps, in buffers
aligned to 64 bytes, so `column.flatten().to_numpy().reshape(batch, positions)` is a view, not a
copy. Dense ids: 0 = padding, 1 = out of vocabulary, real ids from 2 in order of first appearance
(file order, then line order).

Example:

    from clickjax import _native

    vocabulary = _native.Vocabulary()
    reader = _native.BatchReader("wscd", ["trainSample"], vocabulary, positions=10)
    for batch in reader:
        clicks = batch.column("click").flatten().to_numpy().reshape(batch.num_rows, 10)
    print(reader.stats["sessions_kept"], len(vocabulary))
"""

import os
from collections.abc import Sequence

import pyarrow

class ClickjaxError(Exception):
    """Base class of the errors raised by the clickjax readers."""

class ParseError(ClickjaxError):
    """A malformed line or field in a click log, raised under `on_error="strict"`.

    The message names the file, line, field, offending text and what was expected, and ends with a
    hint to use `on_error="skip"`.

    Attributes:
        path: The file that contains the malformed line.
        lineno: Physical 1-based line number in the decompressed text, blank lines included.
        field: The invalid field: `"line"`, `"pos"`, `"url_md5"` or `"click"` (Baidu), or
            `"query_key"`, `"urls"` or `"clicks"` (WSCD).
        text: The offending text, cut to 80 characters (then followed by "...").
    """

    path: str
    lineno: int
    field: str
    text: str

class CorruptInputError(ClickjaxError):
    """A gzip file that ends early or fails its checksum.

    The reader returns every session completed before the damage first. Under `on_error="skip"`
    the file is counted in `stats["corrupt_inputs"]` instead and reading goes on with the next file.

    Attributes:
        path: The damaged file.
        offset: Compressed bytes that the gzip decoder had consumed when it failed.
        lineno: The last complete physical line read before the damage (0 if none).
    """

    path: str
    offset: int
    lineno: int

class Vocabulary:
    """Dense int32 ids of queries, documents and query-document pairs, shared by readers.

    Keys are 64-bit xxh3 fingerprints that are stable across runs and files. Baidu queries are
    keyed by their token field (never the qid, which repeats) and documents by URL MD5. WSCD
    queries are keyed by the query key (query id and region) and documents by URL id.
    """

    def __init__(self) -> None:
        """Create an empty vocabulary that adds every new key."""

    def freeze(self) -> None:
        """Stop adding keys: from now on unknown keys get id 1 and are counted as out of vocabulary.

        Freeze after reading the training log so that validation and test logs reuse its ids.
        """

    @property
    def frozen(self) -> bool:
        """Whether unknown keys map to the out-of-vocabulary id 1."""

    @property
    def query_table_size(self) -> int:
        """Rows an embedding table over `query_id` needs: real queries plus 2."""

    @property
    def document_table_size(self) -> int:
        """Rows an embedding table over `doc_id` needs: real documents plus 2."""

    @property
    def pair_table_size(self) -> int:
        """Rows an embedding table over `query_doc_id` needs: real pairs plus 2."""

    def __len__(self) -> int:
        """Return the number of real query-document pairs."""

class BatchReader:
    """An iterator of `pyarrow.RecordBatch` over click-log files, read one after another.

    Session rules: results at a position greater than `positions` are dropped and counted. Baidu
    results with missing content (title `21429`) are dropped but keep their position, and
    "people also searched for" pseudo-results are dropped without taking one. WSCD clicks on a
    result count once, and clicks on URLs not in the list are ignored. Sessions left without
    results yield no row.

    Example:

        reader = BatchReader("baidu", ["part-00000.gz"], Vocabulary(), batch_size=4096)
        for batch in reader:
            ...
        print(reader.stats)
    """

    def __init__(
        self,
        format: str,
        paths: Sequence[str | os.PathLike[str]],
        vocabulary: Vocabulary,
        *,
        positions: int = 10,
        batch_size: int = 1024,
        on_error: str = "strict",
        drop_sessions_without_clicks: bool = False,
    ) -> None:
        """Create a reader; files are opened only when their turn comes.

        Args:
            format: Log format, `"baidu"` (Baidu-ULTR raw training sessions) or `"wscd"` (the
                WSCD sample format of PyClick's examples).
            paths: Files to read in this order, plain or gzip-compressed.
            vocabulary: Maps keys to dense ids. An open vocabulary adds new keys; a frozen one
                maps them to 1.
            positions: Result slots per row, P, from 1 to 1000.
            batch_size: Rows per batch, from 1 to 16,777,216. The last batch may have fewer.
            on_error: `"strict"` raises on the first malformed session and on a corrupt gzip
                file. `"skip"` drops and counts both, and after a corrupt file it goes on with
                the next one.
            drop_sessions_without_clicks: Drop sessions whose log records no click at all
                (counted in `sessions_dropped_without_clicks`) instead of keeping them.

        Raises:
            ValueError: `format`, `positions`, `batch_size` or `on_error` is invalid; the
                message names the argument, its value and the allowed values.
            FileNotFoundError: A path does not exist.
        """

    def __iter__(self) -> BatchReader:
        """Return the reader itself."""

    def __next__(self) -> pyarrow.RecordBatch:
        """Parse up to `batch_size` sessions with the GIL released and return them as a batch.

        Returns:
            A RecordBatch with the columns described in the module docstring: `[batch]` and
            `[batch, positions]` columns, batch = `batch_size` except for the last one.

        Raises:
            ParseError: A malformed session under `on_error="strict"`. The rows read before it
                are returned first, and the iteration ends after the error.
            CorruptInputError: A truncated or corrupt gzip file under `on_error="strict"`, after
                the rows of every session completed before the damage.
            OSError: The file cannot be read.
            StopIteration: Every file has been read.
        """

    @property
    def stats(self) -> dict[str, int]:
        """Counters so far, all present from the start.

        Keys: `lines_read`, `sessions_read`, `sessions_kept`, `sessions_skipped` (malformed,
        under `on_error="skip"`), `sessions_without_clicks`, `sessions_dropped_without_clicks`,
        `sessions_without_results`, `results_truncated`, `missing_results`, `pseudo_results`,
        `repeated_clicks`, `clicks_not_shown`, `oov_queries` (rows), `oov_documents` and
        `oov_pairs` (results), `corrupt_inputs`, and `skipped_<field>` for each field a
        malformed session can fail on.

        A session counts as without clicks when its log records no click at all, before any
        result is dropped. So a kept row can still have no click in its slots, for example when
        every click was on a URL not in the list. `sessions_read` equals `sessions_kept +
        sessions_skipped + sessions_without_results + sessions_dropped_without_clicks`.
        """
