"""Generate the small Baidu-ULTR-format click log that `clickjax demo` trains on.

The sessions are simulated from a position-based model with known parameters, so the demo can show
how closely training recovers them. The log has the layout of the raw Baidu-ULTR training parts: a
query line of 3 tab-separated fields, then one line of 32 fields per displayed result, token ids joined
by byte 0x01 and `-` for missing values. A few sessions carry the format's quirks: a missing result
(title `21429`, which still takes a rank) and a "people also searched for" pseudo-result (which takes
no rank). The training file is written as two gzip members, as a concatenated download would be.

Usage: python scripts/make_demo_log.py [OUTPUT_DIR]   (default: python/clickjax/demo_data)
"""

from __future__ import annotations

import gzip
import hashlib
import json
import sys
from pathlib import Path

import numpy as np

SEED = 20261204
QUERIES = 200
DOCUMENTS_PER_QUERY = 15
POSITIONS = 10
TRAIN_SESSIONS = 4000
TEST_SESSIONS = 1000
EXAMINATION = [0.98, 0.85, 0.7, 0.58, 0.48, 0.4, 0.34, 0.3, 0.27, 0.25]
MISSING_RESULT_RATE = 0.01
PSEUDO_RESULT_RATE = 0.02

MISSING_TITLE = "21429"
PSEUDO_TITLE = "\x01".join(["3742", "11492", "12169", "5061", "16905"])
BEHAVIOUR_FIELDS = 26


def tokens(rng: np.random.Generator, count: int) -> str:
    return "\x01".join(str(token) for token in rng.integers(1, 22000, size=count))


def make_catalogue(rng: np.random.Generator) -> list[dict]:
    """Draw queries, each with a pool of documents and their attraction."""
    catalogue = []
    for query in range(QUERIES):
        documents = []
        for document in range(DOCUMENTS_PER_QUERY):
            url = hashlib.md5(f"demo-url-{query}-{document}".encode()).hexdigest()
            documents.append(
                {
                    "url_md5": url,
                    "title": tokens(rng, 3),
                    "abstract": tokens(rng, 4),
                    "attraction": float(rng.beta(1.2, 2.5)),
                }
            )
        catalogue.append({"tokens": tokens(rng, 2), "documents": documents})
    return catalogue


def document_line(rank: int, url: str, title: str, abstract: str, click: int, rng) -> str:
    media = "-" if rng.random() < 0.3 else str(int(rng.integers(0, 20)))
    behaviour = ["-" if rng.random() < 0.1 else str(int(rng.integers(0, 4))) for _ in range(BEHAVIOUR_FIELDS)]
    return "\t".join([str(rank), url, title, abstract, media, str(click), *behaviour])


def session_lines(session_id: int, query: dict, rng: np.random.Generator) -> list[str]:
    """Simulate one session: a ranking of 10 documents of the query's pool and PBM clicks."""
    lines = [f"{session_id}\t{query['tokens']}\t-"]
    shown = rng.choice(len(query["documents"]), size=POSITIONS, replace=False)
    missing_rank = int(rng.integers(1, POSITIONS + 1)) if rng.random() < MISSING_RESULT_RATE else 0
    pseudo_after = int(rng.integers(1, POSITIONS)) if rng.random() < PSEUDO_RESULT_RATE else 0
    for rank, index in enumerate(shown, start=1):
        document = query["documents"][index]
        if rank == missing_rank:
            lines.append(document_line(rank, document["url_md5"], MISSING_TITLE, "-", 0, rng))
        else:
            probability = EXAMINATION[rank - 1] * document["attraction"]
            click = int(rng.random() < probability)
            lines.append(
                document_line(rank, document["url_md5"], document["title"], document["abstract"], click, rng)
            )
        if rank == pseudo_after:
            pseudo_url = hashlib.md5(b"people-also-searched").hexdigest()
            lines.append(document_line(rank + 1, pseudo_url, PSEUDO_TITLE, "-", 0, rng))
    return lines


def write_log(path: Path, sessions: list[list[str]], members: int) -> None:
    """Write sessions as gzip text split into `members` concatenated gzip members."""
    chunks = np.array_split(np.arange(len(sessions)), members)
    with open(path, "wb") as file:
        for chunk in chunks:
            text = "".join("\n".join(sessions[i]) + "\n" for i in chunk)
            file.write(gzip.compress(text.encode("ascii"), mtime=0))


def main() -> None:
    output = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parents[1] / "python/clickjax/demo_data"
    output.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(SEED)
    catalogue = make_catalogue(rng)
    popularity = rng.zipf(1.6, size=TRAIN_SESSIONS + TEST_SESSIONS) % QUERIES

    sessions = [
        session_lines(session_id, catalogue[query], rng) for session_id, query in enumerate(popularity)
    ]
    write_log(output / "demo-train.txt.gz", sessions[:TRAIN_SESSIONS], members=2)
    write_log(output / "demo-test.txt.gz", sessions[TRAIN_SESSIONS:], members=1)
    truth = {
        "model": "pbm",
        "seed": SEED,
        "examination_by_rank": EXAMINATION,
        "train_sessions": TRAIN_SESSIONS,
        "test_sessions": TEST_SESSIONS,
    }
    (output / "demo-truth.json").write_text(json.dumps(truth, indent=2) + "\n")


if __name__ == "__main__":
    main()
