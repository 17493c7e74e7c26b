"""The simulator, the log writers and `clickjax simulate`: round trips through the readers, seeds, truth files, errors."""

from __future__ import annotations

import gzip
import io
import json

import numpy as np
import pytest
from flax import nnx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clickjax.cli import main
from clickjax.data import ClickLog, Vocabulary
from clickjax.models import MODELS
from clickjax.serialization import load_training_pairs, save_model, training_pairs
from clickjax.simulation import (
    Catalogue,
    SimulationConfig,
    draw_random_parameters,
    simulate,
    true_parameters,
    truth_path,
)
from clickjax.writers import (
    baidu_query_tokens,
    baidu_url_md5,
    write_baidu,
    write_log,
    write_wscd,
    wscd_query_key,
    wscd_url_id,
)

POSITIONS = 6


def random_model(name: str, catalogue: Catalogue, seed: int = 0, positions: int = POSITIONS):
    model = MODELS[name](positions=positions, query_doc_pairs=catalogue.pair_table_size, rngs=nnx.Rngs(0))
    draw_random_parameters(model, np.random.default_rng(seed))
    return model


def assert_relabelling(original: np.ndarray, read: np.ndarray, where: np.ndarray) -> None:
    """Assert that the ids in `read` are the ids in `original` under a one-to-one renumbering."""
    pairs = np.unique(np.stack([original[where], read[where]], axis=1), axis=0)
    assert len(np.unique(pairs[:, 0])) == len(pairs), "one original id became several ids"
    assert len(np.unique(pairs[:, 1])) == len(pairs), "several original ids became one id"


def assert_same_sessions(written: dict, read: ClickLog) -> None:
    """Assert that `read` contains the sessions of the columns `written`, up to a renumbering of ids."""
    mask = written["mask"].astype(bool)
    for column in ("position", "click", "mask"):
        np.testing.assert_array_equal(read.columns[column], written[column], err_msg=column)
    assert_relabelling(written["query_id"], read.columns["query_id"], np.ones(len(mask), bool))
    assert_relabelling(written["doc_id"], read.columns["doc_id"], mask)
    assert_relabelling(written["query_doc_id"], read.columns["query_doc_id"], mask)


def take_rows(columns: dict, rows: np.ndarray) -> dict:
    return {name: value[rows] for name, value in columns.items()}


def widen(columns: dict, slots: int) -> dict:
    """Pad the `[sessions, positions]` columns with empty slots up to `slots`."""
    return {
        name: np.pad(value, [(0, 0), (0, slots - value.shape[1])]) if value.ndim == 2 else value
        for name, value in columns.items()
    }


# ---------------------------------------------------------------- writers


@pytest.mark.parametrize("format", ["baidu", "wscd"])
@pytest.mark.parametrize("suffix", [".txt", ".txt.gz"])
@pytest.mark.parametrize("name", ["pbm", "dbn"])
def test_writer_round_trip(tmp_path, format, suffix, name):
    catalogue = Catalogue.random(queries=7, documents_per_query=9)
    simulated = simulate(random_model(name, catalogue), catalogue, sessions=500, seed=1)
    path = tmp_path / f"log{suffix}"

    rows = write_log(path, simulated.log, format)
    read = ClickLog.read(format, [path], Vocabulary(), positions=POSITIONS)

    assert read.num_sessions == 500
    assert sorted(rows.tolist()) == list(range(500))
    assert_same_sessions(take_rows(simulated.log.columns, rows), read)
    assert read.stats["sessions_without_clicks"] == int((simulated.log.columns["click"].sum(axis=1) == 0).sum())


def test_writer_gzip_by_suffix(tmp_path):
    catalogue = Catalogue.random(queries=2, documents_per_query=6)
    log = simulate(random_model("pbm", catalogue), catalogue, sessions=20, seed=0).log

    write_log(tmp_path / "log.gz", log, "baidu")
    write_log(tmp_path / "log.txt", log, "baidu")

    assert (tmp_path / "log.gz").read_bytes()[:2] == b"\x1f\x8b"
    assert gzip.decompress((tmp_path / "log.gz").read_bytes()) == (tmp_path / "log.txt").read_bytes()


def test_writer_gzip_same_bytes(tmp_path):
    catalogue = Catalogue.random(queries=2, documents_per_query=6)
    log = simulate(random_model("pbm", catalogue), catalogue, sessions=20, seed=0).log

    write_log(tmp_path / "first.txt.gz", log, "wscd")
    write_log(tmp_path / "second.txt.gz", log, "wscd")

    assert (tmp_path / "first.txt.gz").read_bytes() == (tmp_path / "second.txt.gz").read_bytes()


def hand_columns() -> dict:
    """Three sessions: one with rank 2 missing, one starting at rank 2, one plain."""
    return {
        "query_id": np.array([2, 3, 2], np.int32),
        "doc_id": np.array([[5, 6, 7], [8, 9, 0], [7, 5, 0]], np.int32),
        "query_doc_id": np.array([[2, 3, 4], [5, 6, 0], [4, 2, 0]], np.int32),
        "position": np.array([[1, 3, 4], [2, 3, 0], [1, 2, 0]], np.int32),
        "click": np.array([[1, 0, 1], [0, 1, 0], [0, 0, 0]], np.uint8),
        "mask": np.array([[1, 1, 1], [1, 1, 0], [1, 1, 0]], np.uint8),
        "weight": np.ones(3, np.float32),
    }


def test_baidu_writer_lines(tmp_path):
    columns = hand_columns()
    path = tmp_path / "log.txt"

    write_log(path, take_rows(columns, np.array([0])), "baidu")

    lines = path.read_text().splitlines()
    assert lines[0] == f"2\t{baidu_query_tokens(2)}\t-"
    assert baidu_query_tokens(2) == "1\x012"
    fields = [line.split("\t") for line in lines[1:]]
    assert [len(line) for line in fields] == [32, 32, 32, 32]
    assert [line[0] for line in fields] == ["1", "2", "3", "4"]
    assert fields[0][1] == baidu_url_md5(5)
    assert fields[0][2:6] == ["2\x015", "3\x015", "-", "1"]
    assert fields[1][2] == "21429"
    assert fields[3][5] == "1"
    assert all(value == "-" for value in fields[0][6:])


def test_baidu_writer_missing_and_pseudo_results(tmp_path):
    columns = hand_columns()
    path = tmp_path / "log.txt"

    write_log(path, columns, "baidu", pseudo_result_after=np.array([1, 0, 2]))
    read = ClickLog.read("baidu", [path], Vocabulary(), positions=4)

    assert read.stats["missing_results"] == 2
    assert read.stats["pseudo_results"] == 2
    assert_same_sessions(widen(columns, 4), read)


def test_writer_repeats_weighted_rows(tmp_path):
    columns = hand_columns()
    columns["weight"] = np.array([1, 3, 0], np.float32)
    path = tmp_path / "log.txt"

    rows = write_log(path, columns, "baidu")
    read = ClickLog.read("baidu", [path], Vocabulary(), positions=4)

    assert rows.tolist() == [0, 1, 1, 1]
    assert_same_sessions(widen(take_rows(columns, rows), 4), read)


def test_wscd_writer_groups_by_query(tmp_path):
    columns = hand_columns()
    columns["position"] = np.array([[1, 2, 3], [1, 2, 0], [1, 2, 0]], np.int32)
    path = tmp_path / "log.txt"

    rows = write_log(path, columns, "wscd")

    assert rows.tolist() == [0, 2, 1]
    lines = path.read_text().splitlines()
    assert lines == [
        f"{wscd_query_key(2)}\t5,6,7 : 5 , 7;{wscd_query_key(2)}\t7,5 :",
        f"{wscd_query_key(3)}\t8,9 : 9",
    ]
    assert wscd_url_id(8) == "8"


def test_wscd_writer_rejects_rank_gap(tmp_path):
    with pytest.raises(ValueError, match="row 0 has rank 3 in slot 2"):
        write_log(tmp_path / "log.txt", hand_columns(), "wscd")


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda c: c.update(position=np.array([[1, 1, 2], [1, 2, 0], [1, 2, 0]], np.int32)), "row 0 has positions"),
        (lambda c: c.update(weight=np.array([1.0, 0.5, 1.0], np.float32)), "whole numbers"),
        (lambda c: c.pop("doc_id"), "no column 'doc_id'"),
        (lambda c: c.update(click=np.zeros((3, 2), np.uint8)), "click has shape"),
        (lambda c: c["mask"].__setitem__(1, 0), "row 1 has no real result"),
    ],
)
def test_writer_rejects_bad_columns(tmp_path, change, message):
    columns = hand_columns()
    change(columns)

    with pytest.raises(ValueError, match=message):
        write_log(tmp_path / "log.txt", columns, "baidu")


def test_writer_rejects_unknown_format(tmp_path):
    with pytest.raises(ValueError, match="baidu, wscd"):
        write_log(tmp_path / "log.txt", hand_columns(), "yandex")


@st.composite
def sessions(draw):
    """Columns of a few sessions with random documents, rank gaps, clicks and pseudo-results."""
    count = draw(st.integers(1, 6))
    slots = 4
    rows = {"query_id": [], "doc_id": [], "position": [], "click": [], "mask": [], "pseudo": []}
    for _ in range(count):
        shown = draw(st.integers(1, slots))
        ranks = sorted(draw(st.lists(st.integers(1, 7), min_size=shown, max_size=shown, unique=True)))
        documents = draw(st.lists(st.integers(2, 12), min_size=shown, max_size=shown, unique=True))
        clicks = draw(st.lists(st.integers(0, 1), min_size=shown, max_size=shown))
        padding = [0] * (slots - shown)
        rows["query_id"].append(draw(st.integers(2, 4)))
        rows["doc_id"].append(documents + padding)
        rows["position"].append(ranks + padding)
        rows["click"].append(clicks + padding)
        rows["mask"].append([1] * shown + padding)
        rows["pseudo"].append(draw(st.integers(0, shown)))
    columns = {
        "query_id": np.array(rows["query_id"], np.int32),
        "doc_id": np.array(rows["doc_id"], np.int32),
        "position": np.array(rows["position"], np.int32),
        "click": np.array(rows["click"], np.uint8),
        "mask": np.array(rows["mask"], np.uint8),
    }
    columns["query_doc_id"] = columns["doc_id"] + 100 * columns["query_id"][:, None] * columns["mask"]
    return columns, np.array(rows["pseudo"])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(generated=sessions())
def test_baidu_writer_round_trip_generated(tmp_path, generated):
    columns, pseudo = generated
    path = tmp_path / "generated.txt"

    write_log(path, columns, "baidu", pseudo_result_after=pseudo)
    read = ClickLog.read("baidu", [path], Vocabulary(), positions=7)

    assert_same_sessions(widen(columns, 7), read)
    assert read.stats["pseudo_results"] == int((pseudo > 0).sum())


def test_writers_write_to_streams():
    columns = hand_columns()
    baidu, wscd = io.StringIO(), io.StringIO()

    write_baidu(baidu, take_rows(columns, np.array([2])))
    columns["position"] = np.array([[1, 2, 3], [1, 2, 0], [1, 2, 0]], np.int32)
    write_wscd(wscd, columns)

    assert baidu.getvalue().count("\n") == 3
    assert wscd.getvalue().count("\n") == 2


# ---------------------------------------------------------------- simulator


def test_catalogue_random_ids():
    catalogue = Catalogue.random(queries=3, documents_per_query=4)

    assert catalogue.query_id.tolist() == [2] * 4 + [3] * 4 + [4] * 4
    assert catalogue.query_doc_id.tolist() == list(range(2, 14))
    assert catalogue.pair_table_size == 14
    assert catalogue.pool_sizes.tolist() == [4, 4, 4]


def test_catalogue_rejects_bad_ids():
    with pytest.raises(ValueError, match="real dense ids start at 2"):
        Catalogue(query_id=np.array([1]), doc_id=np.array([2]), query_doc_id=np.array([2]))
    with pytest.raises(ValueError, match="pair id twice"):
        Catalogue(query_id=np.array([2, 2]), doc_id=np.array([2, 3]), query_doc_id=np.array([5, 5]))
    with pytest.raises(ValueError, match="at least 1"):
        Catalogue.random(queries=0, documents_per_query=3)


def test_shuffled_rankings_cover_every_rank():
    catalogue = Catalogue.random(queries=2, documents_per_query=8)
    log = simulate(random_model("pbm", catalogue), catalogue, sessions=4000, seed=3).log
    columns = log.columns

    # Each pair appears at every rank about equally often: 4000 sessions * 6 slots / 16 pairs.
    counts = np.zeros((catalogue.pair_table_size, POSITIONS + 1))
    np.add.at(counts, (columns["query_doc_id"], columns["position"]), 1)
    shown = counts[2:, 1:]
    expected = 4000 / 2 / 8
    assert np.all(np.abs(shown - expected) < 5 * np.sqrt(expected))
    # A session never shows a document twice, and every document belongs to the session's query.
    assert all(len(set(row)) == POSITIONS for row in columns["query_doc_id"].tolist())
    query_of_pair = dict(zip(catalogue.query_doc_id.tolist(), catalogue.query_id.tolist()))
    for query, row in zip(columns["query_id"].tolist(), columns["query_doc_id"].tolist()):
        assert {query_of_pair[pair] for pair in row} == {query}


def test_fixed_rankings_without_shuffle():
    catalogue = Catalogue.random(queries=3, documents_per_query=8)
    log = simulate(random_model("pbm", catalogue), catalogue, sessions=100, shuffle=False, seed=3).log
    columns = log.columns

    first_pair = (columns["query_id"] - 2) * 8 + 2
    np.testing.assert_array_equal(columns["query_doc_id"], first_pair[:, None] + np.arange(POSITIONS))
    np.testing.assert_array_equal(columns["position"], np.tile(np.arange(1, POSITIONS + 1), (100, 1)))


def test_short_pools_give_short_sessions():
    catalogue = Catalogue(
        query_id=np.array([2, 2, 3, 3, 3, 3, 3, 3, 3]),
        doc_id=np.arange(2, 11),
        query_doc_id=np.arange(2, 11),
    )
    log = simulate(random_model("dbn", catalogue), catalogue, sessions=200, seed=0).log
    columns = log.columns

    lengths = columns["mask"].sum(axis=1)
    np.testing.assert_array_equal(lengths, np.where(columns["query_id"] == 2, 2, POSITIONS))
    assert np.all(columns["query_doc_id"][columns["mask"] == 0] == 0)
    assert np.all(columns["position"][columns["mask"] == 0] == 0)
    assert np.all(columns["click"][columns["mask"] == 0] == 0)


def test_query_weights_set_frequencies():
    catalogue = Catalogue(
        query_id=np.repeat([2, 3], 6),
        doc_id=np.arange(2, 14),
        query_doc_id=np.arange(2, 14),
        query_weight=np.array([3.0, 1.0]),
    )
    log = simulate(random_model("pbm", catalogue), catalogue, sessions=4000, seed=0).log

    share = np.mean(log.columns["query_id"] == 2)
    assert abs(share - 0.75) < 5 * np.sqrt(0.75 * 0.25 / 4000)


def test_simulate_same_seed_same_log():
    catalogue = Catalogue.random(queries=4, documents_per_query=8)
    model = random_model("ubm", catalogue)

    first = simulate(model, catalogue, sessions=300, seed=5)
    second = simulate(model, catalogue, sessions=300, seed=5)
    other = simulate(model, catalogue, sessions=300, seed=6)

    for name, column in first.log.columns.items():
        np.testing.assert_array_equal(column, second.log.columns[name])
    assert not np.array_equal(first.log.columns["click"], other.log.columns["click"])


def test_simulate_pbm_click_rates():
    catalogue = Catalogue.random(queries=2, documents_per_query=6)
    model = random_model("pbm", catalogue, seed=4)
    simulated = simulate(model, catalogue, sessions=20_000, seed=1)
    columns = simulated.log.columns

    # P(c = 1) = theta_r * alpha_qd, so the clicks at a rank average theta_r times the mean alpha.
    theta = 1 / (1 + np.exp(-np.asarray(model.examination.logits[...])))
    alpha = 1 / (1 + np.exp(-np.asarray(model.attraction.logits[...])))
    expected = theta[columns["position"]] * alpha[columns["query_doc_id"]]
    observed = columns["click"].mean(axis=0)
    predicted = expected.mean(axis=0)
    assert np.all(np.abs(observed - predicted) < 5 * np.sqrt(predicted / 20_000))
    # Hidden states agree with the clicks: a click needs examination and attraction.
    hidden = simulated.hidden
    assert set(hidden) == {"examination", "attraction"}
    np.testing.assert_array_equal(columns["click"], hidden["examination"] & hidden["attraction"])


def test_simulate_rejects_bad_arguments():
    catalogue = Catalogue.random(queries=2, documents_per_query=6)
    model = random_model("pbm", catalogue)

    with pytest.raises(ValueError, match="sessions must be at least 1"):
        simulate(model, catalogue, sessions=0)
    with pytest.raises(ValueError, match="positions must be from 1 to the model's page length 6"):
        simulate(model, catalogue, sessions=10, positions=7)
    with pytest.raises(ValueError, match="query_doc_pairs=26"):
        simulate(model, Catalogue.random(queries=4, documents_per_query=6), sessions=10)


def test_random_parameters_follow_roles():
    catalogue = Catalogue.random(queries=5, documents_per_query=10)
    parameters = {
        name: true_parameters(random_model(name, catalogue, seed=2, positions=10), catalogue)
        for name in ("pbm", "ubm", "dcm", "ccm", "dbn")
    }

    theta = np.array(parameters["pbm"]["examination"])
    assert np.all(np.diff(theta) < 0), "examination must fall with the rank"
    assert theta[0] <= 0.99
    assert theta[-1] >= 0.85 * 10**-1.0
    assert len(parameters["pbm"]["attraction"]) == catalogue.num_pairs
    assert [len(row) for row in parameters["ubm"]["examination"]] == list(range(1, 11))
    assert len(parameters["dcm"]["continuation"]) == 10
    assert set(parameters["ccm"]) == {"attraction", "tau1", "tau2", "tau3"}
    assert 0.6 <= parameters["dbn"]["continuation"] <= 0.95
    assert 0.1 <= parameters["ccm"]["tau3"] <= 0.5
    for name, model_parameters in parameters.items():
        for key, values in model_parameters.items():
            rows = values if name == "ubm" and key == "examination" else [values]
            flat = np.concatenate([np.ravel(row) for row in rows])
            assert np.all((flat > 0) & (flat < 1)), f"{name} {key}"


def test_random_parameters_leave_padding_rows():
    catalogue = Catalogue.random(queries=2, documents_per_query=6)
    model = random_model("dbn", catalogue)

    assert np.asarray(model.attraction.logits[...])[:2].tolist() == [0.0, 0.0]
    assert np.asarray(model.satisfaction.logits[...])[:2].tolist() == [0.0, 0.0]


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_model_simulates(name):
    catalogue = Catalogue.random(queries=3, documents_per_query=7)
    simulated = simulate(random_model(name, catalogue), catalogue, sessions=200, seed=0)

    columns = simulated.log.columns
    assert columns["click"].dtype == np.uint8
    assert columns["click"].shape == (200, POSITIONS)
    for state in simulated.hidden.values():
        assert state.shape == (200, POSITIONS)
        assert np.all(state[columns["mask"] == 0] == 0)


# ---------------------------------------------------------------- training pairs


def test_training_pairs_count_impressions():
    columns = hand_columns()
    columns["weight"] = np.array([1.0, 2.0, 1.0], np.float32)
    columns["query_doc_id"][1, 0] = 1  # an out-of-vocabulary result is left out
    log = ClickLog(columns=columns, positions=3)

    pairs = training_pairs(log)

    assert pairs["query_doc_id"].tolist() == [2, 3, 4, 6]
    assert pairs["query_id"].tolist() == [2, 2, 2, 3]
    assert pairs["doc_id"].tolist() == [5, 6, 7, 9]
    assert pairs["impressions"].tolist() == [2.0, 1.0, 2.0, 2.0]


def test_catalogue_from_training_pairs():
    pairs = {
        "query_id": np.array([2, 2, 2, 3, 3, 4]),
        "doc_id": np.array([10, 11, 12, 10, 13, 14]),
        "query_doc_id": np.array([2, 3, 4, 5, 6, 7]),
        "impressions": np.array([5.0, 9.0, 1.0, 30.0, 2.0, 4.0]),
    }

    catalogue = Catalogue.from_training_pairs(pairs)
    trimmed = Catalogue.from_training_pairs(pairs, max_queries=2, max_documents_per_query=1)

    # Pools list the most shown pairs first; queries are weighted by their impressions.
    assert catalogue.query_doc_id.tolist() == [3, 2, 4, 5, 6, 7]
    assert catalogue.query_weight.tolist() == [15.0, 32.0, 4.0]
    assert trimmed.query_doc_id.tolist() == [3, 5]
    assert trimmed.query_weight.tolist() == [15.0, 32.0]


# ---------------------------------------------------------------- command line


def simulate_command(tmp_path, *options, name="log.txt.gz"):
    output = tmp_path / name
    code = main(["simulate", "--output", str(output), *options])
    return code, output


@pytest.mark.parametrize("format", ["baidu", "wscd"])
@pytest.mark.parametrize("name", ["pbm", "ubm", "dcm", "ccm", "dbn"])
def test_cli_simulate_reads_back(tmp_path, name, format, capsys):
    code, output = simulate_command(
        tmp_path, "--model", name, "--sessions", "300", "--format", format,
        "--queries", "4", "--documents-per-query", "8", "--positions", "5",
    )

    assert code == 0
    assert "wrote 300 sessions" in capsys.readouterr().out
    read = ClickLog.read(format, [output], Vocabulary(), positions=5)
    assert read.num_sessions == 300
    assert read.columns["mask"].sum() == 300 * 5
    truth = json.loads(truth_path(output).read_text())
    assert truth["model"] == name
    assert truth["format"] == format
    assert len(truth["pairs"]["query_doc_id"]) == 32


def test_cli_truth_file_content(tmp_path):
    code, output = simulate_command(
        tmp_path, "--model", "dbn", "--sessions", "100", "--format", "baidu", "--queries", "3",
        "--documents-per-query", "6", "--positions", "4", "--seed", "9", name="dbn.txt",
    )

    assert code == 0
    truth = json.loads(truth_path(output).read_text())
    assert truth_path(output).name == "dbn.txt.truth.json"
    assert truth["source"] == "random parameters"
    assert truth["sessions"] == 100
    assert truth["settings"]["seed"] == 9
    assert truth["settings"]["shuffle"] is True
    assert truth["settings"]["queries"] == 3
    assert truth["settings"]["documents_per_query"] == 6
    assert truth["settings"]["positions"] == 4
    assert set(truth["parameters"]) == {"attraction", "satisfaction", "continuation"}
    assert len(truth["parameters"]["attraction"]) == 18
    assert truth["summary"]["continuation"] == pytest.approx(truth["parameters"]["continuation"], rel=1e-6)
    assert 0 < truth["click_rate"] < 1

    # The keys in the truth file are those of the log.
    pairs = truth["pairs"]
    text = output.read_text()
    assert pairs["query_key"][0] == baidu_query_tokens(pairs["query_id"][0])
    assert pairs["document_key"][0] == baidu_url_md5(pairs["doc_id"][0])
    assert all(f"\t{key}\t" in text for key in pairs["query_key"])
    assert all(f"\t{key}\t" in text for key in set(pairs["document_key"]))


def test_cli_same_seed_same_file(tmp_path):
    options = ["--model", "ubm", "--sessions", "200", "--format", "wscd", "--queries", "3"]
    simulate_command(tmp_path, *options, "--seed", "4", name="a.txt.gz")
    simulate_command(tmp_path, *options, "--seed", "4", name="b.txt.gz")
    simulate_command(tmp_path, *options, "--seed", "5", name="c.txt.gz")

    assert (tmp_path / "a.txt.gz").read_bytes() == (tmp_path / "b.txt.gz").read_bytes()
    assert (tmp_path / "a.txt.gz").read_bytes() != (tmp_path / "c.txt.gz").read_bytes()
    first = json.loads(truth_path(tmp_path / "a.txt.gz").read_text())
    second = json.loads(truth_path(tmp_path / "b.txt.gz").read_text())
    assert first["parameters"] == second["parameters"]


def test_cli_no_shuffle_fixed_ranking(tmp_path):
    code, output = simulate_command(
        tmp_path, "--model", "pbm", "--sessions", "50", "--format", "baidu", "--queries", "1",
        "--documents-per-query", "10", "--no-shuffle",
    )

    assert code == 0
    read = ClickLog.read("baidu", [output], Vocabulary())
    assert np.all(read.columns["query_doc_id"] == read.columns["query_doc_id"][0])


def test_cli_simulate_from_trained_model(tmp_path, capsys):
    # Train on a small simulated WSCD log, then simulate a Baidu log from the trained model.
    code, training_log = simulate_command(
        tmp_path, "--model", "pbm", "--sessions", "400", "--format", "wscd", "--queries", "5",
        "--documents-per-query", "6", "--positions", "4", name="train.txt",
    )
    assert code == 0
    run = tmp_path / "run"
    assert main([
        "train", "--model", "pbm", "--format", "wscd", "--train", str(training_log), "--test", str(training_log),
        "--positions", "4", "--epochs", "2", "--output", str(run),
    ]) == 0
    pairs = load_training_pairs(run / "model")
    assert len(pairs["query_doc_id"]) == 30
    assert pairs["impressions"].sum() == 400 * 4

    code, output = simulate_command(tmp_path, "--model-dir", str(run), "--sessions", "200", "--format", "baidu")

    assert code == 0
    assert "trained model" in capsys.readouterr().out
    truth = json.loads(truth_path(output).read_text())
    assert truth["model"] == "pbm"
    assert truth["source"] == f"trained model in {run / 'model'}"
    assert sorted(truth["pairs"]["query_doc_id"]) == sorted(pairs["query_doc_id"].tolist())
    parameters = json.loads((run / "parameters.json").read_text())
    np.testing.assert_allclose(truth["parameters"]["examination"], parameters["examination_by_rank"], rtol=1e-6)
    read = ClickLog.read("baidu", [output], Vocabulary(), positions=4)
    assert read.num_sessions == 200
    assert np.all(read.columns["mask"].sum(axis=1) == 4)


def test_cli_model_dir_subset(tmp_path):
    catalogue = Catalogue.random(queries=4, documents_per_query=5)
    model = random_model("dcm", catalogue, positions=3)
    log = simulate(model, catalogue, sessions=300, seed=0).log
    save_model(model, tmp_path / "model", {"model": "dcm", "positions": 3, "query_doc_pairs": catalogue.pair_table_size}, pairs=training_pairs(log))

    code, output = simulate_command(
        tmp_path, "--model-dir", str(tmp_path / "model"), "--sessions", "50", "--format", "wscd",
        "--queries", "2", "--documents-per-query", "3", "--positions", "2",
    )

    assert code == 0
    truth = json.loads(truth_path(output).read_text())
    assert len(set(truth["pairs"]["query_id"])) == 2
    assert len(truth["pairs"]["query_doc_id"]) == 6
    assert truth["settings"]["positions"] == 2


@pytest.mark.parametrize(
    "options, message",
    [
        (["--model", "xyz", "--sessions", "10", "--format", "baidu"], "unknown model 'xyz' for --model"),
        (["--model", "pbm", "--sessions", "0", "--format", "baidu"], "--sessions must be at least 1, got 0"),
        (["--model", "pbm", "--sessions", "10", "--format", "csv"], "unknown format 'csv' for --format"),
        (["--model", "pbm", "--sessions", "10", "--format", "wscd", "--positions", "0"], "--positions must be at least 1"),
        (["--model", "pbm", "--sessions", "10", "--format", "wscd", "--queries", "-1"], "--queries must be at least 1"),
        (["--model", "pbm", "--sessions", "10", "--format", "wscd", "--documents-per-query", "0"], "--documents-per-query"),
        (["--sessions", "10", "--format", "wscd"], "--model is required unless --model-dir"),
    ],
)
def test_cli_simulate_bad_options(tmp_path, options, message, capsys):
    code, output = simulate_command(tmp_path, *options)

    assert code == 1
    assert message in capsys.readouterr().err
    assert not output.exists()


def test_cli_model_dir_errors(tmp_path, capsys):
    catalogue = Catalogue.random(queries=2, documents_per_query=4)
    model = random_model("pbm", catalogue, positions=3)
    save_model(model, tmp_path / "bare", {"model": "pbm", "positions": 3, "query_doc_pairs": catalogue.pair_table_size})

    assert simulate_command(tmp_path, "--model-dir", str(tmp_path / "missing"), "--sessions", "5", "--format", "wscd")[0] == 1
    assert "not a folder written by save_model" in capsys.readouterr().err
    assert simulate_command(tmp_path, "--model-dir", str(tmp_path / "bare"), "--sessions", "5", "--format", "wscd")[0] == 1
    assert "saved without its training pairs" in capsys.readouterr().err
    options = ["--model-dir", str(tmp_path / "bare"), "--sessions", "5", "--format", "wscd"]
    assert simulate_command(tmp_path, *options, "--model", "dbn")[0] == 1
    assert "is pbm, not dbn" in capsys.readouterr().err
    assert simulate_command(tmp_path, *options, "--positions", "4")[0] == 1
    assert "exceeds the page length 3" in capsys.readouterr().err


def test_simulation_config_checks():
    with pytest.raises(ValueError, match="unknown model"):
        SimulationConfig(output="x", format="baidu", sessions=1, model="nope")
    with pytest.raises(ValueError, match="sessions must be at least 1"):
        SimulationConfig(output="x", format="baidu", sessions=0, model="pbm")


def test_cli_output_under_a_file(tmp_path, capsys):
    # The output's folder would have to be created where a file already is.
    (tmp_path / "taken").write_text("a file\n")

    code, _ = simulate_command(tmp_path, "--model", "pbm", "--sessions", "10", "--format", "wscd", name="taken/log.txt.gz")

    assert code == 1
    error = capsys.readouterr().err
    assert str(tmp_path / "taken") in error
    assert "a file of that name is in the way of a folder" in error
    assert "Traceback" not in error
