"""Generate the small Baidu-ULTR-format click log that `clickjax demo` trains on.

The sessions are simulated from a position-based model with known parameters, so the demo can show
how closely training recovers them. The simulation and the Baidu text come from the library
(`clickjax.simulation`, `clickjax.writers`): 200 queries with 15 documents each, each session a
random subset of 10 of the query's documents in random order, queries drawn with a power-law
popularity. The log has the layout of the raw Baidu-ULTR training parts: a query line of 3
tab-separated fields, then one line of 32 fields per displayed result, token ids joined by byte 0x01
and `-` for missing values. A few sessions carry the format's quirks: a missing result (title
`21429`, which still takes a rank) and a "people also searched for" pseudo-result (which takes no
rank). The training file is written as two gzip members, as a concatenated download would be.

Usage: python scripts/make_demo_log.py [OUTPUT_DIR]   (default: python/clickjax/demo_data)
"""

from __future__ import annotations

import gzip
import io
import json
import sys
from pathlib import Path

import numpy as np
from flax import nnx

from clickjax.models import PositionBasedModel
from clickjax.simulation import Catalogue, simulate
from clickjax.writers import write_baidu

SEED = 20261204
QUERIES = 200
DOCUMENTS_PER_QUERY = 15
POSITIONS = 10
TRAIN_SESSIONS = 4000
TEST_SESSIONS = 1000
EXAMINATION = [0.98, 0.85, 0.7, 0.58, 0.48, 0.4, 0.34, 0.3, 0.27, 0.25]
ATTRACTION_BETA = (1.2, 2.5)
# Query q (0-based) is drawn with probability proportional to (q + 1)^-POPULARITY_EXPONENT.
POPULARITY_EXPONENT = 0.8
MISSING_RESULT_RATE = 0.01
PSEUDO_RESULT_RATE = 0.02


def logit(probability: np.ndarray) -> np.ndarray:
    return np.log(probability) - np.log1p(-probability)


def demo_model(catalogue: Catalogue, rng: np.random.Generator) -> PositionBasedModel:
    """Build the PBM the demo log is drawn from: fixed examination, attraction ~ Beta(1.2, 2.5)."""
    model = PositionBasedModel(positions=POSITIONS, query_doc_pairs=catalogue.pair_table_size, rngs=nnx.Rngs(0))
    model.examination.logits.set_value(np.concatenate([[0.0], logit(np.array(EXAMINATION))]).astype(np.float32))
    attraction = np.zeros(catalogue.pair_table_size)
    attraction[catalogue.query_doc_id] = logit(rng.beta(*ATTRACTION_BETA, size=catalogue.num_pairs))
    model.attraction.logits.set_value(attraction.astype(np.float32))
    return model


def drop_missing_results(columns: dict, rng: np.random.Generator) -> None:
    """Remove one result from a few sessions, as the reader does for a result with missing content.

    The later results move up one slot and keep their ranks, so the writer fills the gap with a
    missing-result line (title 21429). A click on the removed result is lost with it.
    """
    sessions = len(columns["query_id"])
    rows = np.nonzero(rng.random(sessions) < MISSING_RESULT_RATE)[0]
    slots = rng.integers(0, POSITIONS, size=len(rows))
    for name in ("doc_id", "query_doc_id", "query_doc_hash", "position", "click", "mask"):
        column = columns[name]
        for row, slot in zip(rows, slots):
            column[row, slot:-1] = column[row, slot + 1 :].copy()
            column[row, -1] = 0


def write_members(path: Path, columns: dict, pseudo_result_after: np.ndarray, members: int) -> None:
    """Write sessions as Baidu text in `members` concatenated gzip members."""
    with open(path, "wb") as file:
        for rows in np.array_split(np.arange(len(columns["query_id"])), members):
            with gzip.GzipFile(filename="", mode="wb", fileobj=file, mtime=0) as member:
                with io.TextIOWrapper(member, encoding="ascii", newline="\n") as text:
                    part = {name: column[rows] for name, column in columns.items()}
                    write_baidu(text, part, pseudo_result_after=pseudo_result_after[rows])


def main() -> None:
    output = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parents[1] / "python/clickjax/demo_data"
    output.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(SEED)

    popularity = (np.arange(QUERIES) + 1.0) ** -POPULARITY_EXPONENT
    base = Catalogue.random(QUERIES, DOCUMENTS_PER_QUERY)
    catalogue = Catalogue(base.query_id, base.doc_id, base.query_doc_id, query_weight=popularity)
    model = demo_model(catalogue, rng)
    sessions = TRAIN_SESSIONS + TEST_SESSIONS
    columns = simulate(model, catalogue, sessions, seed=SEED).log.columns

    drop_missing_results(columns, rng)
    real_results = columns["mask"].sum(axis=1)
    pseudo = np.where(rng.random(sessions) < PSEUDO_RESULT_RATE, rng.integers(1, POSITIONS, size=sessions), 0)
    pseudo = np.minimum(pseudo, real_results)

    train = {name: column[:TRAIN_SESSIONS] for name, column in columns.items()}
    test = {name: column[TRAIN_SESSIONS:] for name, column in columns.items()}
    write_members(output / "demo-train.txt.gz", train, pseudo[:TRAIN_SESSIONS], members=2)
    write_members(output / "demo-test.txt.gz", test, pseudo[TRAIN_SESSIONS:], members=1)
    truth = {
        "model": "pbm",
        "seed": SEED,
        "examination_by_rank": EXAMINATION,
        "attraction": f"Beta{ATTRACTION_BETA} per query-document pair",
        "queries": QUERIES,
        "documents_per_query": DOCUMENTS_PER_QUERY,
        "train_sessions": TRAIN_SESSIONS,
        "test_sessions": TEST_SESSIONS,
        "missing_results": int((columns["position"].max(axis=1) > real_results).sum()),
        "pseudo_results": int((pseudo > 0).sum()),
    }
    (output / "demo-truth.json").write_text(json.dumps(truth, indent=2) + "\n")


if __name__ == "__main__":
    main()
