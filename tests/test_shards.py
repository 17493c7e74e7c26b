"""Streaming shards for training: seeded shard order, shuffle buffer and fixed-size batches."""

import numpy as np
import pytest
from flax import nnx

from clickjax.data import ClickLog, Vocabulary
from clickjax.ingest import ingest
from clickjax.models import PositionBasedModel
from clickjax.shards import ShardedLog, ShardReader, _resolve, shuffled_batches
from clickjax.training import Trainer
from clickjax.writers import write_log

SESSIONS = 300
BATCH_SIZE = 32


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """Shards of 300 sessions, each of its own query, in 5 files of at most 64 rows."""
    folder = tmp_path_factory.mktemp("shards")
    rng = np.random.default_rng(0)
    mask = np.zeros((SESSIONS, 3), np.uint8)
    mask[:, :2] = 1
    columns = {
        "query_id": np.arange(SESSIONS),
        "doc_id": np.where(mask == 1, rng.integers(1, 50, (SESSIONS, 3)) * np.array([1, 100, 0]), 0),
        "position": np.where(mask == 1, np.arange(1, 4), 0),
        "click": (rng.random((SESSIONS, 3)) < 0.4).astype(np.uint8) * mask,
        "mask": mask,
    }
    write_log(folder / "log.txt", columns, "wscd")
    ingest("wscd", [folder / "log.txt"], folder / "out", positions=3, shard_sessions=64)
    return folder / "out"


def real_query_ids(batches) -> list[int]:
    ids = []
    for batch in batches:
        ids.extend(batch["query_id"][batch["weight"] > 0].tolist())
    return ids


def test_shuffle_yields_every_session_once(shards):
    batches = list(shuffled_batches([shards], BATCH_SIZE, seed=0, buffer_sessions=50))

    ids = real_query_ids(batches)
    assert sorted(ids) == list(range(2, SESSIONS + 2))
    assert len(batches) == -(-SESSIONS // BATCH_SIZE)
    assert all(len(batch["weight"]) == BATCH_SIZE for batch in batches)
    assert ids != sorted(ids)


def test_shuffle_pads_last_batch(shards):
    last = list(shuffled_batches([shards], BATCH_SIZE, seed=0, buffer_sessions=50))[-1]

    padding = SESSIONS % BATCH_SIZE
    assert np.count_nonzero(last["weight"]) == padding
    assert not last["mask"][padding:].any()


@pytest.mark.parametrize("buffer_sessions", [0, 50, 1000])
def test_shuffle_is_deterministic_per_seed(shards, buffer_sessions):
    def order(seed):
        return real_query_ids(shuffled_batches([shards], BATCH_SIZE, seed=seed, buffer_sessions=buffer_sessions))

    first = order(1)

    assert sorted(first) == list(range(2, SESSIONS + 2))
    assert order(1) == first
    assert order(2) != first


def reference_shuffle(shards, batch_size: int, seed: int, buffer_sessions: int) -> list[int]:
    """The query ids of `shuffled_batches`, by its documented rule, with the buffer as a Python list."""
    rng = np.random.default_rng(seed)
    files = [shard.path for shard in _resolve(shards)]
    order = rng.permutation(len(files))
    read_batch_size = max(batch_size, 1024, buffer_sessions // 2)
    reader = ShardReader([files[i] for i in order], batch_size=read_batch_size)
    buffer, drawn_ids = [], []
    for record_batch in reader:
        buffer.extend(record_batch.column("query_id").to_pylist())
        surplus = (len(buffer) - buffer_sessions) // batch_size * batch_size
        if surplus <= 0:
            continue
        drawn = rng.permutation(len(buffer))[:surplus].tolist()
        drawn_ids.extend(buffer[i] for i in drawn)
        drawn_positions = set(drawn)
        buffer = [query_id for i, query_id in enumerate(buffer) if i not in drawn_positions]
    drawn_ids.extend(buffer[i] for i in rng.permutation(len(buffer)).tolist())
    return drawn_ids


@pytest.mark.parametrize(("batch_size", "buffer_sessions"), [(32, 0), (32, 50), (7, 100), (32, 1000)])
def test_shuffle_matches_list_reference(shards, batch_size, buffer_sessions):
    # Rows drawn from the buffer come out in the draw's order, and the rows left keep theirs.
    batches = shuffled_batches([shards], batch_size, seed=4, buffer_sessions=buffer_sessions)

    assert real_query_ids(batches) == reference_shuffle(shards, batch_size, 4, buffer_sessions)


def test_shuffle_rejects_bad_sizes(shards):
    with pytest.raises(ValueError, match="batch_size must be at least 1, got 0"):
        next(shuffled_batches([shards], 0))
    with pytest.raises(ValueError, match="buffer_sessions must be at least 0, got -1"):
        next(shuffled_batches([shards], 8, buffer_sessions=-1))


def test_sharded_log_batches_in_order(shards):
    log = ShardedLog([shards])
    expected = ClickLog.read("parquet", [shards], Vocabulary(), positions=None)

    ids = real_query_ids(log.batches(BATCH_SIZE))

    assert log.num_sessions == SESSIONS
    assert ids == expected.columns["query_id"].tolist()
    # Shards of 64, 64, 64, 64 and 44 rows give 2 batches each of 32 rows, and 2, 2, 2, 2, 1 of 50.
    assert log.num_batches(BATCH_SIZE) == len(list(log.batches(BATCH_SIZE))) == 10
    assert log.num_batches(50) == len(list(log.batches(50))) == 9
    assert log.num_batches(50, shuffle=True) == len(list(log.batches(50, shuffle=True))) == 6


def test_trainer_fits_sharded_log(shards):
    log = ShardedLog([shards], buffer_sessions=100)
    model = PositionBasedModel(positions=3, query_doc_pairs=1000, rngs=nnx.Rngs(0))

    result = Trainer(epochs=2, batch_size=BATCH_SIZE).fit(model, log)

    assert len(result.history) == 2
    assert np.isfinite(result.history[-1].train_loss)
    assert result.history[-1].train_loss < result.history[0].train_loss
