"""Large Baidu-format gzip logs for the ingest benchmarks, made by repeating a simulated log.

One simulated log of about 20 MB of text is written with `clickjax.writers.write_log`, compressed
once, and its gzip member is repeated until the file contains the requested amount of text. The file
is a valid multi-member gzip file, as a concatenated download is. Repeating the sessions keeps the
vocabulary at the size of one copy, so memory measured on such a file shows what reading costs
apart from the vocabulary.
"""

from __future__ import annotations

import gzip
import os
import tempfile
from pathlib import Path

import numpy as np

from clickjax.writers import write_log

SESSIONS = 20_000
POSITIONS = 10
QUERIES = 2_000
DOCUMENTS_PER_QUERY = 30
# Query q (0-based) is drawn with probability proportional to (q + 1)^-POPULARITY_EXPONENT.
POPULARITY_EXPONENT = 0.8


def simulated_columns(seed: int = 0) -> dict[str, np.ndarray]:
    """Return random sessions in the batch contract: power-law queries, 10 results each."""
    rng = np.random.default_rng(seed)
    popularity = (np.arange(QUERIES) + 1.0) ** -POPULARITY_EXPONENT
    query = rng.choice(QUERIES, size=SESSIONS, p=popularity / popularity.sum())
    doc_id = np.empty((SESSIONS, POSITIONS), np.int32)
    for row, query_index in enumerate(query):
        pool = query_index * DOCUMENTS_PER_QUERY + 2
        doc_id[row] = rng.choice(DOCUMENTS_PER_QUERY, size=POSITIONS, replace=False) + pool
    examination = 0.9 / np.arange(1, POSITIONS + 1)
    return {
        "query_id": (query + 2).astype(np.int32),
        "doc_id": doc_id,
        "position": np.tile(np.arange(1, POSITIONS + 1, dtype=np.int32), (SESSIONS, 1)),
        "click": (rng.random((SESSIONS, POSITIONS)) < examination * 0.5).astype(np.uint8),
        "mask": np.ones((SESSIONS, POSITIONS), np.uint8),
    }


def gzip_member(seed: int = 0) -> tuple[bytes, int]:
    """Return one gzip member of a simulated Baidu log and the length of its text in bytes."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "copy.txt"
        write_log(path, simulated_columns(seed), "baidu")
        text = path.read_bytes()
    return gzip.compress(text, compresslevel=6, mtime=0), len(text)


def write_repeated_log(path: str | os.PathLike, text_bytes: int, seed: int = 0) -> int:
    """Write a gzip file of at least `text_bytes` bytes of text; return the exact text size."""
    member, member_text = gzip_member(seed)
    copies = -(-text_bytes // member_text)
    with open(path, "wb") as output:
        for _ in range(copies):
            output.write(member)
    return copies * member_text
