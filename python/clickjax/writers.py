"""Writers of raw click-log text: sessions in the batch contract rendered as Baidu-ULTR or WSCD files.

A writer turns the columns of a click log (`query_id`, `doc_id`, `position`, `click`, `mask` and
`weight`, see `clickjax.data`) into the text that the Rust readers parse. Reading a written file
with `clickjax.data.ClickLog.read` and a fresh vocabulary gives back the same sessions, with the
dense ids renumbered in order of first appearance. A row of weight w is written as w identical
sessions, so the weights must be whole numbers.

The columns hold dense ids only, so the writers derive synthetic keys from them, the same in
every file and run:

| format | query key                                    | document key                                        |
|--------|----------------------------------------------|-----------------------------------------------------|
| baidu  | query tokens `1` and `<query_id>`            | URL MD5: hex MD5 of `clickjax-document-<doc_id>`    |
| wscd   | query key `<query_id>_0`                     | URL id `<doc_id>`                                   |

Baidu documents also get a title (tokens `2`, `<doc_id>`) and an abstract (tokens `3`,
`<doc_id>`), so `document_key="text"` finds the same documents. The multimedia type and the 26
behaviour fields are written as `-`, the format's missing value. A rank that a row skips (a
`position` gap, as the reader produces for a missing result) is written as a missing result,
title `21429`. WSCD has no way to express a skipped rank and rejects such rows.

A path ending in `.gz` is written gzip-compressed, with a zero timestamp and no file name in the
header, so the same sessions always give the same bytes.

Example:

    simulated = simulate(model, Catalogue.random(queries=20, documents_per_query=10), sessions=1000)
    write_log("sessions.txt.gz", simulated.log, "baidu")
    again = ClickLog.read("baidu", ["sessions.txt.gz"], Vocabulary())
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TextIO

import numpy as np

from clickjax.data import ClickLog

__all__ = [
    "WRITE_FORMATS",
    "baidu_query_tokens",
    "baidu_url_md5",
    "document_keys",
    "open_log_for_writing",
    "query_keys",
    "wscd_query_key",
    "wscd_url_id",
    "write_baidu",
    "write_log",
    "write_wscd",
]

WRITE_FORMATS = ("baidu", "wscd")

TOKEN_SEPARATOR = "\x01"
MISSING_TITLE = "21429"
PSEUDO_TITLE = TOKEN_SEPARATOR.join(["3742", "11492", "12169", "5061", "16905"])
BEHAVIOUR_FIELDS = 26
# The largest `pos` the Baidu reader accepts.
MAX_BAIDU_RANK = 1000

# Token ids put before the dense id, so that query, title and abstract token lists never
# coincide and a title is never the single token 21429 or the pseudo-result's five tokens.
_QUERY_TOKEN = "1"
_TITLE_TOKEN = "2"
_ABSTRACT_TOKEN = "3"

# Multimedia type, click, then 26 behaviour fields make up the end of a 32-field document line.
_DASHES = "\t-" * BEHAVIOUR_FIELDS
_MISSING_URL_MD5 = hashlib.md5(b"clickjax-missing-result").hexdigest()
_PSEUDO_URL_MD5 = hashlib.md5(b"clickjax-people-also-searched").hexdigest()

# Sessions rendered to text at a time, which bounds the memory a writer uses.
_ROWS_PER_WRITE = 8192

PathLike = str | os.PathLike


def baidu_query_tokens(query_id: int) -> str:
    """Return the query token list that keys a dense query id in a written Baidu log."""
    return f"{_QUERY_TOKEN}{TOKEN_SEPARATOR}{int(query_id)}"


def baidu_url_md5(doc_id: int) -> str:
    """Return the URL MD5 that keys a dense document id in a written Baidu log."""
    return hashlib.md5(f"clickjax-document-{int(doc_id)}".encode("ascii")).hexdigest()


def wscd_query_key(query_id: int) -> str:
    """Return the query key (query id and region 0) of a dense query id in a written WSCD log."""
    return f"{int(query_id)}_0"


def wscd_url_id(doc_id: int) -> str:
    """Return the URL id of a dense document id in a written WSCD log."""
    return str(int(doc_id))


def query_keys(format: str, query_ids: np.ndarray) -> list[str]:
    """Return the key that a writer of `format` gives each dense query id."""
    key = {"baidu": baidu_query_tokens, "wscd": wscd_query_key}[_check_format(format)]
    return [key(query_id) for query_id in np.asarray(query_ids).tolist()]


def document_keys(format: str, doc_ids: np.ndarray) -> list[str]:
    """Return the key that a writer of `format` gives each dense document id."""
    key = {"baidu": baidu_url_md5, "wscd": wscd_url_id}[_check_format(format)]
    return [key(doc_id) for doc_id in np.asarray(doc_ids).tolist()]


@contextlib.contextmanager
def open_log_for_writing(path: PathLike) -> Iterator[TextIO]:
    """Open `path` for writing ASCII log text, gzip-compressed when the name ends in `.gz`.

    The gzip header has a zero timestamp and no file name, so equal text gives equal bytes.
    """
    path = Path(path)
    if path.suffix != ".gz":
        with open(path, "w", encoding="ascii", newline="\n") as file:
            yield file
        return
    with open(path, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as compressed:
        with io.TextIOWrapper(compressed, encoding="ascii", newline="\n") as file:
            yield file


def write_log(path: PathLike, log: ClickLog | Mapping[str, np.ndarray], format: str, **options) -> np.ndarray:
    """Write the sessions of a click log to `path` as raw `format` text, gzip for a `.gz` name.

    Args:
      path: the output file; its parent folder must exist.
      log: a `ClickLog` or its columns: `query_id` `[sessions]` int, `doc_id`, `position`,
        `click` and `mask` `[sessions, positions]`, and optionally `weight` `[sessions]` with
        whole-number values (1 when missing).
      format: `"baidu"` or `"wscd"`.
      **options: passed to `write_baidu` (`pseudo_result_after`).

    Returns:
      `[written sessions]` int64: the row of `log` behind each written session, in file order.

    Raises:
      ValueError: the format is unknown, a column is missing or malformed, a row has no real
        result, or a session cannot be expressed in the format.
    """
    writer = {"baidu": write_baidu, "wscd": write_wscd}[_check_format(format)]
    columns = log.columns if isinstance(log, ClickLog) else log
    with open_log_for_writing(path) as file:
        return writer(file, columns, **options)


def write_baidu(
    file: TextIO, columns: Mapping[str, np.ndarray], *, pseudo_result_after: np.ndarray | None = None
) -> np.ndarray:
    """Write sessions as Baidu-ULTR raw training text: a query line, then one line per result.

    The query line has 3 fields: qid (the dense query id), query tokens, and `-` for the
    reformulation. Each result line has 32 fields, with the rank, URL MD5, title, abstract and
    click filled in and `-` elsewhere. A gap in a row's positions becomes missing-result lines
    (title `21429`), which take a rank and no slot, as the reader treats them.

    Args:
      file: a text stream open for writing.
      columns: the columns described in `write_log`.
      pseudo_result_after: optional `[sessions]` int: insert a "people also searched for"
        pseudo-result line after that many real results of the row (0 = none). The reader
        drops it without giving it a rank.

    Returns:
      `[written sessions]` int64: the row behind each written session, in file order.

    Raises:
      ValueError: a column is missing or malformed, a row has no real result, its positions do
        not increase, or a rank is above 1000.
    """
    session = _SessionColumns.of(columns)
    if session.position.max() > MAX_BAIDU_RANK:
        raise ValueError(
            f"a row has rank {session.position.max()}, but Baidu readers accept ranks up to {MAX_BAIDU_RANK}; "
            "truncate the sessions"
        )
    if pseudo_result_after is not None:
        pseudo_result_after = np.asarray(pseudo_result_after)
        if pseudo_result_after.shape != session.query_id.shape:
            raise ValueError(
                f"pseudo_result_after has shape {pseudo_result_after.shape}, expected "
                f"{session.query_id.shape} (one count per session)"
            )
    rows = session.written_rows()
    document_fields: dict[int, str] = {}
    for start in range(0, len(rows), _ROWS_PER_WRITE):
        chunk = rows[start : start + _ROWS_PER_WRITE]
        pseudo = None if pseudo_result_after is None else pseudo_result_after[chunk]
        file.write(_baidu_text(session, chunk, pseudo, document_fields))
    return rows


def _baidu_text(
    session: _SessionColumns, rows: np.ndarray, pseudo_result_after: np.ndarray | None, document_fields: dict
) -> str:
    """Render the sessions of `rows` as Baidu text.

    Every row becomes a row of text cells: the query line, then one cell per real slot. A cell
    can hold several lines: the missing results of a rank gap go before the slot's line and a
    pseudo-result after it. Lines are built once per distinct (document, rank, click).
    """
    mask = session.mask[rows]
    position = session.position[rows]
    doc_id = session.doc_id[rows].astype(np.int64)
    click = (session.click[rows] != 0).astype(np.int64)
    query_id = session.query_id[rows]
    slots = mask.shape[1]

    cells = np.empty((len(rows), 1 + slots), dtype=object)
    queries, query_index = np.unique(query_id, return_inverse=True)
    query_lines = [f"{query}\t{baidu_query_tokens(query)}\t-" for query in queries.tolist()]
    cells[:, 0] = np.array(query_lines, dtype=object)[query_index]

    # One code per (document, rank, click). Ranks are at most MAX_BAIDU_RANK and document ids
    # below 2^31, so the code fits in int64.
    codes = (doc_id[mask] * (MAX_BAIDU_RANK + 1) + position[mask]) * 2 + click[mask]
    unique_codes, code_index = np.unique(codes, return_inverse=True)
    lines = []
    for code in unique_codes.tolist():
        rest, clicked = divmod(code, 2)
        document, rank = divmod(rest, MAX_BAIDU_RANK + 1)
        fields = document_fields.get(document)
        if fields is None:
            fields = document_fields[document] = _baidu_document_fields(document)
        lines.append(f"{rank}\t{fields}\t-\t{clicked}{_DASHES}")
    slot_cells = cells[:, 1:]
    slot_cells[mask] = np.array(lines, dtype=object)[code_index.reshape(-1)]

    # Missing results fill the ranks skipped between a real slot and the one above it.
    highest_rank = np.maximum.accumulate(position, axis=1)
    highest_above = np.concatenate([np.zeros((len(rows), 1), position.dtype), highest_rank[:, :-1]], axis=1)
    for row, slot in zip(*np.nonzero(mask & (position > highest_above + 1))):
        missing = [
            f"{rank}\t{_MISSING_URL_MD5}\t{MISSING_TITLE}\t-\t-\t0{_DASHES}"
            for rank in range(int(highest_above[row, slot]) + 1, int(position[row, slot]))
        ]
        slot_cells[row, slot] = "\n".join([*missing, slot_cells[row, slot]])

    if pseudo_result_after is not None:
        real_count = np.cumsum(mask, axis=1)
        for row in np.nonzero(pseudo_result_after > 0)[0]:
            after = np.nonzero(mask[row] & (real_count[row] == pseudo_result_after[row]))[0]
            if len(after):
                rank = min(int(position[row, after[0]]) + 1, MAX_BAIDU_RANK)
                pseudo = f"{rank}\t{_PSEUDO_URL_MD5}\t{PSEUDO_TITLE}\t-\t-\t0{_DASHES}"
                slot_cells[row, after[0]] = f"{slot_cells[row, after[0]]}\n{pseudo}"

    present = np.concatenate([np.ones((len(rows), 1), bool), mask], axis=1)
    return "\n".join(cells[present].tolist()) + "\n" if len(rows) else ""


def write_wscd(file: TextIO, columns: Mapping[str, np.ndarray]) -> np.ndarray:
    """Write sessions in the WSCD sample format: one line per query, its sessions separated by `;`.

    A session reads `QUERYKEY<TAB>url1,...,urlN : click , click`, its clicked URL ids in rank
    order (the format allows any order, and top-down is the order a cascade user clicks in).
    Queries appear in order of their first session, and the sessions of a query keep their order.

    Args:
      file: a text stream open for writing.
      columns: the columns described in `write_log`.

    Returns:
      `[written sessions]` int64: the row behind each written session, in file order.

    Raises:
      ValueError: a column is missing or malformed, or a row skips a rank (WSCD ranks are the
        places in the URL list, so a gap cannot be written).
    """
    session = _SessionColumns.of(columns)
    rows = session.written_rows()

    # Group the rows by query, queries in order of first appearance, rows in order within each.
    _, first_row, query_index = np.unique(session.query_id[rows], return_index=True, return_inverse=True)
    query_rank = np.argsort(np.argsort(first_row, kind="stable"), kind="stable")
    rows = rows[np.argsort(query_rank[query_index], kind="stable")]

    current_query = None
    pieces: list[str] = []
    for row in rows.tolist():
        query_id = int(session.query_id[row])
        results = session.results(row)
        for slot, (_, rank, _) in enumerate(results, start=1):
            if rank != slot:
                raise ValueError(
                    f"row {row} has rank {rank} in slot {slot}; the wscd format has no missing "
                    "ranks, so write this log as baidu or drop the gap"
                )
        urls = ",".join(wscd_url_id(doc_id) for doc_id, _, _ in results)
        clicks = " , ".join(wscd_url_id(doc_id) for doc_id, _, click in results if click)
        if query_id != current_query:
            if pieces:
                file.write(";".join(pieces))
                file.write("\n")
            pieces = []
            current_query = query_id
        key = wscd_query_key(query_id)
        pieces.append(f"{key}\t{urls} : {clicks}" if clicks else f"{key}\t{urls} :")
    if pieces:
        file.write(";".join(pieces))
        file.write("\n")
    return rows


def _baidu_document_fields(doc_id: int) -> str:
    """Return the URL MD5, title and abstract fields of a document, joined by tabs."""
    title = f"{_TITLE_TOKEN}{TOKEN_SEPARATOR}{doc_id}"
    abstract = f"{_ABSTRACT_TOKEN}{TOKEN_SEPARATOR}{doc_id}"
    return f"{baidu_url_md5(doc_id)}\t{title}\t{abstract}"


def _check_format(format: str) -> str:
    if format not in WRITE_FORMATS:
        raise ValueError(f"unknown log format {format!r} to write; expected one of {', '.join(WRITE_FORMATS)}")
    return format


class _SessionColumns:
    """The columns a writer reads, checked, with each row's results as Python tuples."""

    def __init__(self, query_id, doc_id, position, click, mask, weight):
        self.query_id = query_id
        self.doc_id = doc_id
        self.position = position
        self.click = click
        self.mask = mask
        self.weight = weight

    @classmethod
    def of(cls, columns: Mapping[str, np.ndarray]) -> _SessionColumns:
        for name in ("query_id", "doc_id", "position", "click", "mask"):
            if name not in columns:
                raise ValueError(f"the log has no column {name!r}, which the writers need")
        query_id = np.asarray(columns["query_id"])
        mask = np.asarray(columns["mask"]).astype(bool)
        if query_id.ndim != 1 or mask.ndim != 2 or mask.shape[0] != query_id.shape[0]:
            raise ValueError(
                f"query_id has shape {query_id.shape} and mask {mask.shape}, expected [sessions] "
                "and [sessions, positions]"
            )
        padded = {}
        for name in ("doc_id", "position", "click"):
            padded[name] = np.asarray(columns[name])
            if padded[name].shape != mask.shape:
                raise ValueError(f"{name} has shape {padded[name].shape}, expected {mask.shape} (the shape of mask)")
        weight = np.asarray(columns.get("weight", np.ones(len(query_id))), np.float64)
        if weight.shape != query_id.shape or not np.all((weight >= 0) & (weight == np.round(weight))):
            raise ValueError(
                "weight must be [sessions] whole numbers >= 0, since a row of weight w is written "
                "as w sessions"
            )

        empty = ~mask.any(axis=1)
        if empty.any():
            raise ValueError(
                f"row {int(np.argmax(empty))} has no real result (mask is 0 in every slot); the readers "
                "drop such sessions, so remove the row before writing"
            )

        # The ranks of a row's real results must increase, since a file lists them top-down.
        position = np.where(mask, padded["position"], 0)
        highest_above = np.maximum.accumulate(position, axis=1)[:, :-1]
        not_increasing = np.any(mask[:, 1:] & (position[:, 1:] <= highest_above), axis=1)
        invalid = not_increasing | np.any(mask & (position < 1), axis=1)
        if invalid.any():
            bad_row = int(np.argmax(invalid))
            raise ValueError(
                f"row {bad_row} has positions {position[bad_row][mask[bad_row]].tolist()}; the "
                "positions of a row's real results must be 1 or more and increase from slot to slot"
            )
        return cls(query_id, padded["doc_id"], position, padded["click"], mask, weight)

    def written_rows(self) -> np.ndarray:
        """Return each row index repeated by its weight, in row order."""
        return np.repeat(np.arange(len(self.query_id)), self.weight.astype(np.int64))

    def results(self, row: int) -> list[tuple[int, int, int]]:
        """Return (doc_id, rank, click) for each real result of a row, in slot order."""
        real = self.mask[row]
        return list(
            zip(
                self.doc_id[row][real].tolist(),
                self.position[row][real].tolist(),
                (self.click[row][real] != 0).astype(int).tolist(),
            )
        )
