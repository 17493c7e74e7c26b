"""The Python data layer: Arrow batches to numpy without copies, padding, and shuffled batching."""

import gzip

import numpy as np
import pytest

from clickjax.data import BATCH_COLUMNS, ClickLog, Vocabulary, batch_to_numpy, pad_batch, read_batches, to_jax
from simulation import simulate_pbm

WSCD = "5_1\t1,2,3 : 2;5_1\t1,2,3 :;6_1\t4,5 : 5 , 4\n"


def test_batch_to_numpy_shares_arrow_memory(tmp_path):
    path = tmp_path / "log.gz"
    path.write_bytes(gzip.compress(WSCD.encode()))
    batch = next(iter(read_batches("wscd", [path], Vocabulary(), positions=4)))

    arrays = batch_to_numpy(batch)

    for name, (dtype, padded) in BATCH_COLUMNS.items():
        column = batch.column(name)
        values = column.flatten() if padded else column
        address = values.buffers()[1].address + values.offset * dtype.itemsize
        assert arrays[name].__array_interface__["data"][0] == address, name
        assert arrays[name].dtype == dtype
        assert address % 64 == 0, name
    assert arrays["click"].shape == (3, 4)
    np.testing.assert_array_equal(arrays["click"], [[0, 1, 0, 0], [0, 0, 0, 0], [1, 1, 0, 0]])
    np.testing.assert_array_equal(arrays["mask"], [[1, 1, 1, 0], [1, 1, 1, 0], [1, 1, 0, 0]])
    # Placing on the device keeps the values (whether JAX aliases or copies is not promised).
    on_device = to_jax(arrays)
    np.testing.assert_array_equal(np.asarray(on_device["position"]), arrays["position"])


def test_pad_batch_adds_empty_sessions():
    log, _ = simulate_pbm(sessions=3, pairs=10, theta=[0.9, 0.5], seed=0)

    padded = pad_batch(log.columns, 5)

    assert padded["click"].shape == (5, 2)
    np.testing.assert_array_equal(padded["mask"][3:], 0)
    np.testing.assert_array_equal(padded["weight"][3:], 0)
    np.testing.assert_array_equal(padded["query_doc_id"][:3], log.columns["query_doc_id"])


def test_pad_batch_pads_features_with_zeros():
    arrays = {
        "weight": np.ones(2, np.float32),
        "mask": np.ones((2, 3), np.uint8),
        "features": np.arange(12, dtype=np.float32).reshape(2, 3, 2) + 1,
        "frequency_bucket": np.array([4, 9], np.int32),
    }

    padded = pad_batch(arrays, 4)

    assert padded["features"].shape == (4, 3, 2)
    assert padded["features"].dtype == np.float32
    np.testing.assert_array_equal(padded["features"][:2], arrays["features"])
    np.testing.assert_array_equal(padded["features"][2:], 0)
    np.testing.assert_array_equal(padded["frequency_bucket"], [4, 9, 0, 0])


def test_batch_to_numpy_checks_optional_columns(tmp_path):
    import pyarrow as pa

    path = tmp_path / "log"
    path.write_text(WSCD)
    batch = next(iter(read_batches("wscd", [path], Vocabulary(), positions=4)))
    # Three rows of 4 slots with 2 float64 features each.
    values = pa.array(np.zeros(3 * 4 * 2), pa.float64())
    features = pa.FixedSizeListArray.from_arrays(pa.FixedSizeListArray.from_arrays(values, 2), 4)

    with pytest.raises(ValueError, match="column 'features' has dtype float64, expected float32"):
        batch_to_numpy(batch.append_column("features", features))
    bucket = pa.array([[1]] * 3, pa.list_(pa.int32(), 1))
    with pytest.raises(ValueError, match="column 'frequency_bucket' has shape"):
        batch_to_numpy(batch.append_column("frequency_bucket", bucket))


def test_pad_batch_rejects_oversized_batch():
    log, _ = simulate_pbm(sessions=6, pairs=10, theta=[0.9, 0.5], seed=0)

    with pytest.raises(ValueError, match="more than batch_size"):
        pad_batch(log.columns, 4)


def test_batches_fixed_shape_cover_every_session():
    log, _ = simulate_pbm(sessions=10, pairs=30, theta=[0.9, 0.5, 0.3], seed=1)

    batches = list(log.batches(4, shuffle=True, seed=3))

    assert [b["click"].shape for b in batches] == [(4, 3)] * 3
    assert sum(float(b["weight"].sum()) for b in batches) == 10
    seen = np.concatenate([b["query_doc_id"][b["weight"] > 0] for b in batches])
    np.testing.assert_array_equal(np.sort(seen, axis=0), np.sort(log.columns["query_doc_id"], axis=0))


def test_batches_shuffle_depends_on_seed():
    log, _ = simulate_pbm(sessions=50, pairs=100, theta=[0.9, 0.5], seed=2)

    first = next(log.batches(50, shuffle=True, seed=1))["query_doc_id"]
    again = next(log.batches(50, shuffle=True, seed=1))["query_doc_id"]
    other = next(log.batches(50, shuffle=True, seed=2))["query_doc_id"]

    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def test_read_batches_rejects_unknown_format(tmp_path):
    with pytest.raises(ValueError, match="baidu, baidu-annotation, yandex, wscd, clickmodels"):
        read_batches("csv", [tmp_path / "x"], Vocabulary())


def test_click_log_read_empty_file(tmp_path):
    path = tmp_path / "empty.txt"
    path.write_text("")

    log = ClickLog.read("wscd", [path], Vocabulary(), positions=5)

    assert log.num_sessions == 0
    assert log.columns["click"].shape == (0, 5)


def test_read_accepts_one_path(tmp_path):
    log = tmp_path / "log.txt"
    log.write_text("7_1\t11,12,13 : 12\n8_2\t21,22 : 21\n")

    alone = ClickLog.read("wscd", str(log), Vocabulary(), positions=3)
    listed = ClickLog.read("wscd", [log], Vocabulary(), positions=3)

    assert alone.num_sessions == listed.num_sessions == 2
    for name, column in listed.columns.items():
        np.testing.assert_array_equal(alone.columns[name], column, err_msg=name)
