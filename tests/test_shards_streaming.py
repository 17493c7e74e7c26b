"""Training and evaluating while streaming Parquet shards, and the reader thread options."""

import json
import threading
from collections import defaultdict

import numpy as np
import pyarrow.parquet as pq
import pytest
from flax import nnx

from clickjax.cli import main
from clickjax.data import ClickLog, Vocabulary, mark_unseen_pairs, read_batches
from clickjax.ingest import ingest
from clickjax.memory import estimate_training_memory, loads_in_memory
from clickjax.models import DynamicBayesianNetwork
from clickjax.serialization import load_training_pairs, training_pairs
from clickjax.shards import ShardedLog, ShardReader
from clickjax.writers import write_log

SESSIONS = 300
POSITIONS = 3
BATCH_SIZE = 32
# Bytes of one decoded row with P = 3: query_id and weight (4 each), doc_id, query_doc_id,
# query_doc_hash and position (4 per slot), click and mask (1 per slot).
ROW_BYTES = 4 + 4 + 4 * 4 * POSITIONS + 2 * POSITIONS


def session_columns(sessions: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Sessions of 40 queries with 2 or 3 of 8 documents each, random clicks."""
    rng = np.random.default_rng(seed)
    query_id = rng.integers(0, 40, sessions)
    mask = np.zeros((sessions, POSITIONS), np.uint8)
    mask[:, :2] = 1
    mask[rng.random(sessions) < 0.5, 2] = 1
    doc_id = np.where(mask == 1, query_id[:, None] * 10 + rng.integers(1, 9, (sessions, POSITIONS)), 0)
    return {
        "query_id": query_id,
        "doc_id": doc_id,
        "position": np.where(mask == 1, np.arange(1, POSITIONS + 1), 0),
        "click": ((rng.random((sessions, POSITIONS)) < 0.4) & (mask == 1)).astype(np.uint8),
        "mask": mask,
    }


@pytest.fixture(scope="module")
def raw_log(tmp_path_factory):
    path = tmp_path_factory.mktemp("raw") / "sessions.txt.gz"
    write_log(path, session_columns(SESSIONS), "wscd")
    return path


@pytest.fixture(scope="module")
def shards(raw_log, tmp_path_factory):
    """The raw log in shards of at most 64 rows: 5 files."""
    folder = tmp_path_factory.mktemp("shards") / "out"
    ingest("wscd", [raw_log], folder, positions=POSITIONS, shard_sessions=64)
    return folder


@pytest.fixture(scope="module")
def split_shards(raw_log, tmp_path_factory):
    """The raw log split into train, validation and test subfolders."""
    folder = tmp_path_factory.mktemp("split") / "out"
    ingest(
        "wscd", [raw_log], folder, positions=POSITIONS, shard_sessions=64,
        splits={"train": 0.7, "validation": 0.15, "test": 0.15},
    )
    return folder


def in_memory(folder) -> ClickLog:
    return ClickLog.read("parquet", [folder], Vocabulary(), positions=POSITIONS)


def model_parameters(model) -> dict:
    return {str(path): np.asarray(value.get_value()) for path, value in nnx.to_flat_state(nnx.state(model, nnx.Param))}


# Training on a ShardedLog


def test_streamed_training_matches_memory_in_same_order(shards, distinct_on):
    from clickjax.training import Trainer

    trainer = Trainer(epochs=1, batch_size=BATCH_SIZE, seed=3)
    streamed = ShardedLog([shards], buffer_sessions=64)
    # The trainer shuffles epoch 1 with seed 3 * 100_003 + 1, the streamed batches with it too.
    shuffle_seed = 3 * 100_003 + 1
    stream_rows = [batch for batch in streamed.batches(BATCH_SIZE, shuffle=True, seed=shuffle_seed)]
    rows = {name: np.concatenate([batch[name] for batch in stream_rows])[:SESSIONS] for name in stream_rows[0]}
    # The in-memory epoch visits row permutation[i] i-th, so that row gets the i-th streamed row.
    permutation = np.random.default_rng(shuffle_seed).permutation(SESSIONS)
    columns = {name: np.empty_like(column) for name, column in rows.items()}
    for name, column in rows.items():
        columns[name][permutation] = column
    same_order = ClickLog(columns=columns, positions=POSITIONS)

    models = [DynamicBayesianNetwork(positions=POSITIONS, query_doc_pairs=1000, rngs=nnx.Rngs(0)) for _ in range(2)]
    trainer.fit(models[0], streamed)
    trainer.fit(models[1], same_order)

    first, second = (model_parameters(model) for model in models)
    assert first.keys() == second.keys()
    for path in first:
        np.testing.assert_array_equal(first[path], second[path], err_msg=path)
    # The shuffle buffer of 64 sessions is smaller than the log, so the streamed order is not the
    # in-memory order of the same seed, and without the rearrangement the parameters would differ.
    assert not np.array_equal(rows["query_id"], in_memory(shards).columns["query_id"][permutation])


def test_streamed_training_is_deterministic(shards):
    from clickjax.training import Trainer

    def train():
        model = DynamicBayesianNetwork(positions=POSITIONS, query_doc_pairs=1000, rngs=nnx.Rngs(0))
        Trainer(epochs=2, batch_size=BATCH_SIZE, seed=1).fit(model, ShardedLog([shards], buffer_sessions=50))
        return model_parameters(model)

    first, second = train(), train()

    for path in first:
        np.testing.assert_array_equal(first[path], second[path], err_msg=path)


def test_trainer_streams_only_step_columns(shards, distinct_on):
    from clickjax.training import Trainer

    requested = []

    class RecordingLog(ShardedLog):
        def batches(self, batch_size, *, shuffle=False, seed=0, columns=None):
            if shuffle:
                requested.append(columns)
            return super().batches(batch_size, shuffle=shuffle, seed=seed, columns=columns)

    model = DynamicBayesianNetwork(positions=POSITIONS, query_doc_pairs=1000, rngs=nnx.Rngs(0))
    Trainer(epochs=2, batch_size=BATCH_SIZE).fit(model, RecordingLog([shards], buffer_sessions=64))

    # DBN's step reads the pair ids and clicks; mask and weight are always read. One request per
    # epoch. With the distinct ids found on the host, the step reads what the worker thread
    # derives from the pair ids, so the worker reads the pair ids.
    assert len(requested) == 2
    for columns in requested:
        assert sorted(columns) == ["click", "mask", "query_doc_id", "weight"]


def test_second_fit_starts_stream_early_with_same_result(shards):
    from clickjax.training import Trainer

    requested = []

    class RecordingLog(ShardedLog):
        """Record the seed of each shuffled stream and the thread that reads its first batch."""

        def batches(self, batch_size, *, shuffle=False, seed=0, columns=None):
            stream = super().batches(batch_size, shuffle=shuffle, seed=seed, columns=columns)
            return self.recorded(stream, seed) if shuffle else stream

        def recorded(self, stream, seed):
            for number, batch in enumerate(stream):
                if number == 0:
                    requested.append((seed, threading.current_thread().name))
                yield batch

    trainer = Trainer(epochs=2, batch_size=BATCH_SIZE, seed=5)
    log = RecordingLog([shards], buffer_sessions=64)
    models = [DynamicBayesianNetwork(positions=POSITIONS, query_doc_pairs=1000, rngs=nnx.Rngs(0)) for _ in range(2)]
    trainer.fit(models[0], log)
    first_fit = list(requested)
    # The second fit has the step's columns from the first, so it starts epoch 1's stream
    # before it sets up the training state, and uses that stream instead of opening another.
    requested.clear()
    trainer.fit(models[1], log)

    # Epoch 2's stream starts on the thread that reads ahead in both fits, epoch 1's only in the second.
    epoch_1, epoch_2 = 5 * 100_003 + 1, 5 * 100_003 + 2
    assert first_fit == [(epoch_1, "clickjax-batches"), (epoch_2, "clickjax-next-epoch")]
    assert requested == [(epoch_1, "clickjax-next-epoch"), (epoch_2, "clickjax-next-epoch")]
    first, second = (model_parameters(model) for model in models)
    for path in first:
        np.testing.assert_array_equal(first[path], second[path], err_msg=path)


# Reading some columns


def test_read_selected_columns_match_full_read(shards):
    full = ShardReader([shards], batch_size=100)
    selected = ShardReader([shards], batch_size=100, columns=["click", "query_doc_id"])
    full_batches, selected_batches = list(full), list(selected)

    assert selected.selected == ["query_doc_id", "click", "mask", "weight"]
    assert len(selected_batches) == len(full_batches) == 5
    for whole, part in zip(full_batches, selected_batches):
        assert part.schema.names == ["query_doc_id", "click", "mask", "weight"]
        for name in part.schema.names:
            assert part.column(name).equals(whole.column(name)), name
    counters = selected.stats
    assert counters["sessions_read"] == full.stats["sessions_read"] == SESSIONS
    assert counters["sessions_without_clicks"] == full.stats["sessions_without_clicks"]


def test_partial_batch_still_needs_mask():
    import pyarrow as pa

    from clickjax.data import batch_to_numpy

    batch = pa.RecordBatch.from_pydict({"weight": pa.array([1.0], pa.float32())})
    with pytest.raises(ValueError, match="no column 'mask'"):
        batch_to_numpy(batch, partial=True)


def test_read_rejects_unknown_column(shards):
    with pytest.raises(ValueError, match="no column label.*Request only columns that the ingest wrote"):
        ShardReader([shards], columns=["click", "label"])


def test_shuffled_selected_columns_keep_order(shards):
    whole = list(ShardedLog([shards], buffer_sessions=50).batches(BATCH_SIZE, shuffle=True, seed=4))
    part = list(ShardedLog([shards], buffer_sessions=50).batches(BATCH_SIZE, shuffle=True, seed=4, columns=["click"]))

    assert len(part) == len(whole)
    for full_batch, batch in zip(whole, part):
        assert list(batch) == ["click", "mask", "weight"]
        for name in batch:
            np.testing.assert_array_equal(batch[name], full_batch[name], err_msg=name)


# What a run needs from the shards without loading them


def test_sharded_log_summary_matches_memory(shards):
    streamed = ShardedLog([shards])
    loaded = in_memory(shards)

    assert streamed.stats == loaded.stats
    assert streamed.total_weight == loaded.total_weight
    assert streamed.results == int(loaded.columns["mask"].sum())
    assert streamed.max_pair_id == int(loaded.columns["query_doc_id"].max())
    assert streamed.column_names == list(loaded.columns)


def test_training_pairs_streamed_match_enumeration(shards):
    loaded = in_memory(shards).columns
    # Brute force: walk every real result.
    impressions, clicks, keys = defaultdict(float), defaultdict(float), {}
    for row in range(SESSIONS):
        for slot in range(POSITIONS):
            pair = int(loaded["query_doc_id"][row, slot])
            if loaded["mask"][row, slot] and pair >= 2:
                impressions[pair] += float(loaded["weight"][row])
                clicks[pair] += float(loaded["weight"][row]) * int(loaded["click"][row, slot])
                keys[pair] = (int(loaded["query_id"][row]), int(loaded["doc_id"][row, slot]))

    pairs = training_pairs(ShardedLog([shards]), batch_size=50)

    assert pairs["query_doc_id"].tolist() == sorted(impressions)
    assert pairs["impressions"].tolist() == [impressions[pair] for pair in sorted(impressions)]
    assert pairs["clicks"].tolist() == [clicks[pair] for pair in sorted(impressions)]
    assert list(zip(pairs["query_id"].tolist(), pairs["doc_id"].tolist())) == [keys[pair] for pair in sorted(impressions)]


def test_mark_unseen_streamed_matches_memory(shards):
    loaded = in_memory(shards)
    seen = np.unique(loaded.columns["query_doc_id"])[::2]
    streamed = ShardedLog([shards])

    marked_in_memory = mark_unseen_pairs(loaded, seen)
    marked_streamed = mark_unseen_pairs(streamed, seen)

    assert marked_streamed == marked_in_memory > 0
    assert streamed.stats["oov_pairs"] == loaded.stats["oov_pairs"]
    # Each shard ends with its own padded batch; padding rows have weight 0.
    ids = np.concatenate([batch["query_doc_id"][batch["weight"] > 0] for batch in streamed.batches(BATCH_SIZE)])
    np.testing.assert_array_equal(ids, loaded.columns["query_doc_id"])


# Memory


def test_row_bytes_and_stream_bytes_closed_form(shards):
    log = ShardedLog([shards], buffer_sessions=64)

    assert log.row_bytes == ROW_BYTES
    assert log.decoded_bytes == SESSIONS * ROW_BYTES
    # Read batch max(32, 1024, 64 / 2) = 1024 rows; buffer and read batch twice, capped at twice
    # the log's 300 rows; plus 5 batches of 32 ahead.
    assert log.stream_bytes(BATCH_SIZE, 5) == (min(2 * (64 + 1024), 2 * SESSIONS) + 5 * BATCH_SIZE) * ROW_BYTES


def test_loads_in_memory_at_a_quarter():
    assert loads_in_memory(100, 400)
    assert not loads_in_memory(101, 400)
    assert loads_in_memory(10**15, None)


def test_estimate_counts_stream_buffers():
    without = estimate_training_memory("pbm", 10, 1000, False)
    streamed = estimate_training_memory("pbm", 10, 1000, False, stream_bytes=12_345)

    assert streamed.total == without.total + 12_345
    assert streamed.stream == 12_345
    assert "streaming buffers 12.1 KiB" in streamed.format()
    assert "streaming" not in without.format()


# Reader threads


def test_parquet_threads_give_same_batches(shards):
    def read(threads):
        batches = read_batches("parquet", [shards], Vocabulary(), positions=POSITIONS, threads=threads)
        return [batch.to_pydict() for batch in batches]

    assert read(1) == read(None) == read(2)


@pytest.mark.parametrize("threads", [0, -1, 1.5, True])
def test_shard_reader_rejects_bad_threads(shards, threads):
    with pytest.raises(ValueError, match=f"threads must be an integer of at least 1 or None, got {threads!r}"):
        ShardReader([shards], threads=threads)


def test_cli_ingest_threads_give_same_shards(raw_log, tmp_path):
    tables = []
    for threads in ("1", "2"):
        output = tmp_path / f"threads-{threads}"
        assert main(["ingest", "--format", "wscd", "--output", str(output), "--positions", str(POSITIONS),
                     "--threads", threads, "--quiet", str(raw_log)]) == 0
        tables.append(pq.read_table(output / "part-00000.parquet"))

    assert tables[0].equals(tables[1])


def test_cli_train_threads_give_same_parameters(raw_log, tmp_path):
    for threads in ("1", "2"):
        assert main(["train", "--model", "pbm", "--format", "wscd", "--train", str(raw_log), "--test", str(raw_log),
                     "--positions", str(POSITIONS), "--epochs", "1", "--batch-size", str(BATCH_SIZE),
                     "--threads", threads, "--quiet", "--output", str(tmp_path / threads)]) == 0

    assert (tmp_path / "1" / "parameters.json").read_text() == (tmp_path / "2" / "parameters.json").read_text()


# Command line


def train_shards(split_shards, output, *options) -> dict:
    code = main([
        "train", "--model", "dbn", "--format", "parquet", "--train", str(split_shards / "train"),
        "--validation", str(split_shards / "validation"), "--test", str(split_shards / "test"),
        "--positions", str(POSITIONS), "--epochs", "2", "--batch-size", str(BATCH_SIZE), "--quiet",
        "--output", str(output), *options,
    ])
    assert code == 0
    return json.loads((output / "metrics.json").read_text())


def test_cli_train_streams_or_loads(split_shards, tmp_path, capsys):
    streamed = train_shards(split_shards, tmp_path / "streamed", "--stream", "--shuffle-buffer", "50", "--threads", "1")
    printed = capsys.readouterr().out
    again = train_shards(split_shards, tmp_path / "again", "--stream", "--shuffle-buffer", "50")
    loaded = train_shards(split_shards, tmp_path / "loaded", "--no-stream")

    assert streamed["streamed"] == ["train", "validation", "test"]
    assert loaded["streamed"] == []
    assert "streaming buffers" in printed
    # The same seed gives the same parameters.
    assert (tmp_path / "streamed" / "parameters.json").read_text() == (tmp_path / "again" / "parameters.json").read_text()
    # Everything that does not depend on the order of the sessions is the same.
    for key in ("reader_stats", "train_sessions", "validation_sessions", "test_sessions", "oov_test_pairs", "steps"):
        assert streamed[key] == loaded[key], key
    streamed_pairs = load_training_pairs(tmp_path / "streamed" / "model")
    loaded_pairs = load_training_pairs(tmp_path / "loaded" / "model")
    for name, values in loaded_pairs.items():
        np.testing.assert_array_equal(streamed_pairs[name], values, err_msg=name)


def test_cli_train_streams_large_shards_by_default(split_shards, tmp_path):
    # The training shards decode to 210 * 62 = 13,020 bytes, more than a quarter of 48K; the
    # validation and test shards to 45 * 62 = 2,790 bytes, less.
    metrics = train_shards(split_shards, tmp_path / "run", "--max-memory", "48K", "--shuffle-buffer", "20", "--batch-size", "8")

    assert metrics["streamed"] == ["train"]


@pytest.mark.parametrize(
    "options, message",
    [
        (["--threads", "0"], "--threads must be at least 1, got 0"),
        (["--shuffle-buffer", "-1"], "--shuffle-buffer must be at least 0, got -1"),
        (["--stream", "--data-parallel"], "--stream is not supported with --data-parallel"),
    ],
)
def test_cli_train_rejects_stream_options(split_shards, tmp_path, options, message, capsys):
    code = main([
        "train", "--model", "pbm", "--format", "parquet", "--train", str(split_shards / "train"), "--test",
        str(split_shards / "test"), "--positions", str(POSITIONS), "--output", str(tmp_path / "run"), *options,
    ])

    assert code == 1
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_cli_stream_rejects_raw_format(raw_log, tmp_path, capsys):
    code = main([
        "train", "--model", "pbm", "--format", "wscd", "--train", str(raw_log), "--test", str(raw_log),
        "--output", str(tmp_path / "run"), "--stream",
    ])

    assert code == 1
    assert "--stream reads Parquet shards; --format wscd is read into memory" in capsys.readouterr().err


def test_cli_evaluate_stream_matches_memory(split_shards, tmp_path):
    train_shards(split_shards, tmp_path / "run", "--no-stream")
    outputs = {}
    for option in ("--stream", "--no-stream"):
        output = tmp_path / f"{option}.json"
        code = main([
            "evaluate", "--model-dir", str(tmp_path / "run"), "--format", "parquet", "--test", str(split_shards / "test"),
            "--threads", "1", option, "--quiet", "--output", str(output),
        ])
        assert code == 0
        outputs[option] = json.loads(output.read_text())

    assert outputs["--stream"] == outputs["--no-stream"]
