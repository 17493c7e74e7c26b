"""Click-log readers written in Rust: raw Baidu-ULTR, Yandex, WSCD and ClickModels logs to Arrow batches.

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

Extra `[batch, positions]` columns follow: the Baidu behaviour columns chosen with `behaviour` and
the `label` of annotation files (int32). Behaviour columns are float32 with NaN where the log has
`-`, except `multimedia_type`, which is int32 with -1 for `-`. Padding slots of extra columns
contain NaN or -1.

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
        field: The invalid field. It is `"line"` for a line with the wrong field count or out of
            place, and otherwise the field's name. Baidu: `"pos"`, `"url_md5"`, `"click"`,
            `"query"`, `"title"`, `"abstract"` or a behaviour column. Annotation files:
            `"label"`, `"frequency_bucket"`. Yandex: `"session_id"`, `"time_passed"`,
            `"action_type"`, `"query_id"`, `"region_id"`, `"url_id"`. WSCD: `"query_key"`,
            `"urls"`, `"clicks"`. ClickModels: `"query"`, `"region"`, `"intent_weight"`,
            `"urls"`, `"layout"`, `"clicks"`.
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
    keyed by their token field (never the qid, which repeats) and documents by URL MD5, or by
    title and abstract tokens with `document_key="text"` (always for annotation files). Yandex
    queries are keyed by `QUERYID_REGIONID` (or `QUERYID`) and WSCD queries by the query key
    (query id and region), documents by URL id. ClickModels queries are keyed by query text and
    region, documents by URL.

    With `keys=True` the vocabulary also stores, for each query and document id it assigns, the
    key text that was hashed (see "Key texts" in the data guide): the key bytes themselves, or for
    a composite key its parts joined by a TAB (ClickModels query and region, Baidu title and
    abstract).
    """

    def __init__(self, *, keys: bool = False) -> None:
        """Create an empty vocabulary that adds every new key, storing key texts if `keys` is true."""

    @property
    def records_keys(self) -> bool:
        """Whether new query and document ids store the key text they were read from."""

    @property
    def key_bytes(self) -> int:
        """Heap memory of the stored key texts, in bytes; 0 without keys."""

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

    def reindex(self, *, order: str = "frequency", min_count: int = 1) -> Vocabulary:
        """Return a frozen copy with new ids; this vocabulary is unchanged.

        Entries met fewer than `min_count` times are left out (they read as id 1), and so is a pair
        whose query or document is left out. The rest get ids from 2: `order="frequency"` numbers
        them by descending count with ties in order of first appearance, `"appearance"` keeps the
        order of first appearance. Raises ValueError for another order or a negative `min_count`.
        """

    def to_arrow(self) -> pyarrow.RecordBatch:
        """Return every real id as one RecordBatch, the layout `clickjax.vocabulary` saves.

        Columns: `kind` (string: query, document or pair), `id` (int32), `fingerprint` (uint64),
        `count` (int64, how often readers met the key while the vocabulary was open), `query_id`
        and `doc_id` (int32, set for pairs only), and `key`. `key` is large_binary, the key text of
        a query or document, and null for pairs and ids without a stored key. The schema metadata stores the
        frozen flag under `clickjax.vocabulary.frozen`, whether keys are stored under
        `clickjax.vocabulary.keys`, and the layout version (2) under
        `clickjax.vocabulary.format_version`.
        """

    @staticmethod
    def from_arrow(batch: pyarrow.RecordBatch) -> Vocabulary:
        """Rebuild a vocabulary from a RecordBatch in the layout of `to_arrow`.

        Version 1 batches, without the `key` column, give a vocabulary without keys. Rows may come
        in any order. Raises ValueError when a column is missing or has the wrong type, the format
        version is neither 1 nor 2, or the rows do not form a vocabulary (ids of a kind that
        do not run from 2 without gaps, a fingerprint with two ids, a pair joining an unknown id).
        """

    def pairs(self, *, keys: bool = False) -> pyarrow.RecordBatch:
        """Return, for every pair id, the query and document ids it joins.

        Int32 columns `query_doc_id`, `query_id` and `doc_id`, one row per real pair in id order.
        With `keys=True`, large_binary columns `query_key` and `doc_key` follow, null where an id
        has no stored key.
        """

class BatchReader:
    """An iterator of `pyarrow.RecordBatch` over click-log files, returned in file order.

    Session rules: results at a position greater than `positions` are dropped and counted. Baidu
    results with missing content (title `21429`) are dropped but keep their position, and
    "people also searched for" pseudo-results are dropped without taking one. Repeated clicks on
    a result count once, and clicks on URLs not in the list are ignored. Sessions left with fewer
    than `min_results` results, without clicks (if requested) or of a query with fewer than
    `min_sessions_per_query` sessions yield no row. Every decision is counted in `stats`.

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
        positions: int | None = 10,
        batch_size: int = 1024,
        on_error: str = "strict",
        drop_sessions_without_clicks: bool = False,
        min_results: int = 1,
        min_sessions_per_query: int = 1,
        behaviour: Sequence[str] | None = None,
        document_key: str | None = None,
        query_key: str | None = None,
        threads: int | None = None,
        lookahead_bytes: int | None = None,
    ) -> None:
        """Create a reader; files are opened only when their turn comes.

        Args:
            format: Log format: `"baidu"` (Baidu-ULTR raw training sessions),
                `"baidu-annotation"` (Baidu-ULTR annotation and WSDM Cup test files), `"yandex"`
                (Yandex Relevance Prediction Challenge log), `"wscd"` (the WSCD sample format of
                PyClick's examples) or `"clickmodels"` (ClickModels TSV, list or object variant).
            paths: Files to read in this order, plain or gzip-compressed.
            vocabulary: Maps keys to dense ids. An open vocabulary adds new keys; a frozen one
                maps them to 1.
            positions: Result slots per row, P, from 1 to 1000. None pads to the longest session
                of the input, which a first pass over every file measures.
            batch_size: Rows per batch, from 1 to 16,777,216. The last batch may have fewer.
            on_error: `"strict"` raises on the first malformed session and on a corrupt gzip
                file. `"skip"` drops and counts both, and after a corrupt file it goes on with
                the next one.
            drop_sessions_without_clicks: Drop sessions whose log records no click at all
                (counted in `sessions_dropped_without_clicks`) instead of keeping them.
            min_results: Drop sessions with fewer results than this after truncation to P
                (counted in `sessions_dropped_few_results`), from 1 to 1000.
            min_sessions_per_query: Drop the sessions of queries with fewer sessions than this
                among those that pass every other rule (counted in
                `sessions_dropped_rare_query`). Above 1 a first pass counts them.
            behaviour: Baidu behaviour columns to add, by name, in this order. Names are
                `multimedia_type` (int32) and the float32 columns `skip`, `serp_height`,
                `displayed_time`, `displayed_time_middle`, `first_click`, `displayed_count`,
                `serp_max_show_height`, `slipoff_count_after_click`, `dwelling_time`,
                `displayed_time_top`, `serp_to_top`, `displayed_count_top`,
                `displayed_count_bottom`, `slipoff_count`, `final_click`,
                `displayed_time_bottom`, `click_count`, `full_displayed_count`, `last_click`,
                `reverse_display_count`, `displayed_count_middle`.
            document_key: `"url"` (default for every format but annotation files) or `"text"`:
                xxh3 of the title tokens, a 0x00 byte and the abstract tokens, which Baidu click
                logs share with annotation files.
            query_key: Yandex only: `"query_region"` (default) or `"query"`.
            threads: Worker threads of the reader, decompression included, from 1 to 256; None
                (default) takes the number of cores available to the process. Up to this many
                files parse at once, and threads not needed for that decompress gzip files being
                parsed. Batches, ids and counters are the same for every value.
            lookahead_bytes: Bytes of finished rows that the worker of a file may hold before
                the reader reaches that file, from 1 to 2**40; None (default) takes 64 MiB. At
                least one block of 512 rows is always allowed. Batches, ids and counters are the
                same for every value.

        Raises:
            ValueError: An option is invalid or does not apply to the format; the message names
                the argument, its value and the allowed values.
            FileNotFoundError: A path does not exist.
        """

    def __iter__(self) -> BatchReader:
        """Return the reader itself."""

    def __next__(self) -> pyarrow.RecordBatch:
        """Wait for up to `batch_size` sessions with the GIL released and return them as a batch.

        Worker threads build rows ahead of the caller, up to `lookahead_bytes` per file.
        Dropping the reader stops and joins them.

        Returns:
            A RecordBatch with the columns described in the module docstring: `[batch]` and
            `[batch, positions]` columns, batch = `batch_size` except for the last one.

        Raises:
            ParseError: A malformed session under `on_error="strict"`. The rows read before it
                are returned first, and the iteration ends after the error. With a first pass
                (`positions=None` or `min_sessions_per_query` above 1) it comes before any row.
            CorruptInputError: A truncated or corrupt gzip file under `on_error="strict"`, after
                the rows of every session completed before the damage.
            OSError: The file cannot be read.
            StopIteration: Every file has been read.
        """

    @property
    def stats(self) -> dict[str, int]:
        """Counters so far, all present from the start.

        Before the end, every counter but `sessions_kept` and the `oov_` counters may include
        sessions that worker threads read ahead of the last batch returned. Once the reader is
        exhausted, every counter is the same for every `threads` value.

        Keys: `lines_read`, `sessions_read`, `sessions_kept`, `sessions_skipped` (malformed,
        under `on_error="skip"`), `sessions_without_clicks`, `sessions_dropped_without_clicks`,
        `sessions_without_results`, `sessions_dropped_few_results`,
        `sessions_dropped_rare_query`, `results_truncated`, `missing_results`,
        `pseudo_results`, `repeated_clicks`, `clicks_not_shown`, `clicks_before_query`,
        `extra_click_entries`, `invalid_position_keys`, `oov_queries` (rows), `oov_documents`
        and `oov_pairs` (results), `corrupt_inputs`, and `skipped_<field>` for each field a
        malformed session can fail on. `clickjax.report.LoadReport` explains each.

        A session counts as without clicks when its log records no click at all, before any
        result is dropped. So a kept row can still have no click in its slots, for example when
        every click was on a URL not in the list. `sessions_read` equals `sessions_kept +
        sessions_skipped + sessions_without_results + sessions_dropped_few_results +
        sessions_dropped_without_clicks + sessions_dropped_rare_query`. The counters of a
        first pass are not included.
        """

    @property
    def positions(self) -> int | None:
        """Slots per row: the `positions` option, or the longest session once a first pass ran.

        None while `positions=None` and no batch has been requested yet.
        """

def read_labels(
    path: str | os.PathLike[str],
    *,
    query_key: str = "query_region",
    on_error: str = "strict",
    vocabulary: Vocabulary | None = None,
) -> tuple[pyarrow.RecordBatch, dict[str, int]]:
    """Read a Yandex relevance-label file (`QueryID RegionID URLID Label` per line).

    `clickjax.data.read_relevance_labels` wraps this function and returns a pyarrow Table.

    Args:
        path: The label file, plain or gzip-compressed.
        query_key: `"query_region"` or `"query"`, as given to the `yandex` reader.
        on_error: `"strict"` raises on the first malformed line; `"skip"` drops and counts it.
        vocabulary: If given, a `query_doc_id` column contains each pair's dense id (1 if
            unknown).

    Returns:
        A RecordBatch with one row per pair (`query`, `region`, `url` int64; `query_fingerprint`,
        `doc_fingerprint` uint64; `label` int32, the highest seen; `query_doc_id` int32 with a
        vocabulary) and the counters `lines_read`, `labels_read`, `labels_skipped`,
        `duplicate_pairs` and `conflicting_labels`.

    Raises:
        ParseError: A malformed line under `on_error="strict"`.
        ValueError: `query_key` or `on_error` is invalid.
        OSError: The file cannot be read.
    """

def gzip_decompressed_size(path: str | os.PathLike[str]) -> int:
    """Decompress a gzip file on the calling thread, with the GIL released; return the byte count.

    Every member of a multi-member file is read, with the decompressor the readers use. The
    benchmarks use it as the speed limit of parsing. Raises `FileNotFoundError` for a missing
    file and `CorruptInputError` for a truncated or corrupt one.
    """

def fingerprint(array: pyarrow.Array, role: str, column: str) -> pyarrow.UInt64Array:
    """Fingerprint the keys of a column with the functions of the text readers.

    Args:
        array: `[rows]` strings, binary values or integers, without nulls. An integer is keyed by
            its decimal text, so 13 and "13" are the same key.
        role: `"query"` or `"document"`; the two roles hash with different seeds.
        column: The column name, used in error messages.

    Returns:
        `[rows]` uint64 fingerprints.

    Raises:
        ValueError: The array has nulls or another type, or `role` is invalid.
    """

def key_text(array: pyarrow.Array, column: str) -> pyarrow.LargeBinaryArray:
    """Return the key text of every entry of a key column: the bytes that `fingerprint` hashes.

    A string gives its UTF-8 bytes, a binary value its bytes and an integer its decimal text.

    Raises:
        ValueError: The array has nulls or another type; the message names `column`.
    """

def batch_columns(
    vocabulary: Vocabulary,
    query: pyarrow.UInt64Array,
    offsets: pyarrow.Int64Array,
    document: pyarrow.UInt64Array,
    position: pyarrow.Int32Array,
    click: pyarrow.UInt8Array,
    *,
    positions: int | None = 10,
    batch_size: int = 1024,
    drop_sessions_without_clicks: bool = False,
    min_results: int = 1,
    min_sessions_per_query: int = 1,
    extra: list[tuple[str, pyarrow.Array]] = [],
    session_columns: list[tuple[str, pyarrow.Int32Array]] = [],
    features: pyarrow.FloatArray | None = None,
    feature_width: int = 0,
    query_keys: pyarrow.LargeBinaryArray | None = None,
    document_keys: pyarrow.LargeBinaryArray | None = None,
) -> tuple[list[pyarrow.RecordBatch], dict[str, int], int]:
    """Apply the session rules to sessions given as flat columns and pad them into batches.

    `clickjax.formats.long.read_long` groups a table into these columns. Session `s` owns the
    results `offsets[s]` to `offsets[s + 1]`, ordered by rank.

    Args:
        vocabulary: Maps fingerprints to dense ids, as for `BatchReader`.
        query: `[sessions]` query fingerprints.
        offsets: `[sessions + 1]` non-decreasing offsets from 0 to the number of results.
        document: `[results]` document fingerprints.
        position: `[results]` ranks, 1 or more and non-decreasing within a session.
        click: `[results]` 0 or 1.
        positions, batch_size, drop_sessions_without_clicks, min_results,
            min_sessions_per_query: As for `BatchReader`.
        extra: `[batch, positions]` columns to add, by name: `label` or a name of
            `behaviour_columns()`, each a `[results]` float32 array (int32 for `label` and
            `multimedia_type`).
        session_columns: int32 `[batch]` columns to add, each a `[sessions]` array; only
            `frequency_bucket`.
        features: `[results * feature_width]` float32, the features of each result in turn; adds
            the column `features`, `[batch, positions, feature_width]`.
        feature_width: number of features per result, F, when `features` is given.
        query_keys: `[sessions]` key texts of the queries (see `key_text`), without nulls, which a
            vocabulary with `keys=True` stores for new ids. Give both or neither.
        document_keys: `[results]` key texts of the documents.

    Returns:
        The batches, the counters of `BatchReader.stats` (`lines_read` counts results) and the
        slots per row.

    Raises:
        ValueError: A column has the wrong type or length, or invalid values.
    """

def behaviour_columns() -> list[str]:
    """Return the names of the Baidu behaviour columns a reader can add, in the order of a line."""
