"""Export of relevance estimates, graded labels and propensities, checked against a simulated DBN log."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from flax import nnx
from scipy.stats import spearmanr

from clickjax.cli import main
from clickjax.export import GradeMapping, assign_grades, examination_propensities, export_pairs
from clickjax.models import DynamicBayesianNetwork
from clickjax.serialization import save_model, training_pairs
from clickjax.simulation import Catalogue, draw_random_parameters, simulate, true_parameters
from clickjax.training import Trainer


@pytest.fixture(scope="module")
def dbn_run(tmp_path_factory):
    """A DBN trained on 30,000 sessions simulated from a DBN, saved as clickjax train saves it."""
    catalogue = Catalogue.random(queries=30, documents_per_query=10)
    truth_model = DynamicBayesianNetwork(positions=5, query_doc_pairs=catalogue.pair_table_size, rngs=nnx.Rngs(0))
    draw_random_parameters(truth_model, np.random.default_rng(7))
    log = simulate(truth_model, catalogue, 30_000, positions=5, seed=1).log
    truth = true_parameters(truth_model, catalogue)

    model = DynamicBayesianNetwork(positions=5, query_doc_pairs=catalogue.pair_table_size, rngs=nnx.Rngs(1))
    Trainer(epochs=30, batch_size=2048).fit(model, log)
    folder = tmp_path_factory.mktemp("dbn-run")
    config = {"model": "dbn", "positions": 5, "query_doc_pairs": catalogue.pair_table_size}
    save_model(model, folder / "model", config, pairs=training_pairs(log))
    (folder / "parameters.json").write_text(json.dumps(model.parameter_summary()))
    relevance = np.asarray(truth["attraction"]) * np.asarray(truth["satisfaction"])
    return folder, dict(zip(catalogue.query_doc_id.tolist(), relevance.tolist()))


def test_export_ranks_true_relevance(dbn_run, tmp_path):
    folder, true_relevance = dbn_run
    output = tmp_path / "relevance.parquet"

    summary = export_pairs(folder, output)

    table = pq.read_table(output)
    assert summary.pairs == table.num_rows == 300
    assert table.column_names == ["query_doc_id", "query_id", "doc_id", "relevance", "impressions", "clicks", "grade"]
    rows = table.to_pylist()
    frequent = [row for row in rows if row["impressions"] >= 200]
    assert len(frequent) >= 250
    correlation = spearmanr([row["relevance"] for row in frequent], [true_relevance[row["query_doc_id"]] for row in frequent])
    print(f"Spearman correlation over {len(frequent)} pairs: {correlation.statistic:.4f}")
    assert correlation.statistic >= 0.9
    # Every session shows 5 of a query's 10 documents: 30,000 * 5 impressions in all.
    assert sum(row["impressions"] for row in rows) == 150_000
    assert all(0 <= row["clicks"] <= row["impressions"] for row in rows)


def test_export_joins_pair_statistics(dbn_run, tmp_path):
    folder, _ = dbn_run
    # A copy of the model folder with a pair-statistics file for two pairs.
    copy = tmp_path / "copy"
    (copy / "model").mkdir(parents=True)
    for path in (folder / "model").iterdir():
        (copy / "model" / path.name).write_bytes(path.read_bytes())
    pq.write_table(
        pa.table({"query_doc_id": pa.array([2, 5], pa.int32()), "impressions": [1.0, 1.0], "clicks": [0.0, 1.0],
                  "relevance": [0.1, 0.2], "relevance_se": [0.01, 0.02]}),
        copy / "model" / "pair-statistics.parquet",
    )

    summary = export_pairs(copy, tmp_path / "out.parquet")

    table = pq.read_table(tmp_path / "out.parquet")
    assert summary.standard_errors
    by_id = {row["query_doc_id"]: row["relevance_se"] for row in table.to_pylist()}
    assert by_id[2] == 0.01
    assert by_id[5] == 0.02
    assert by_id[3] is None


def test_quantile_grades_by_hand():
    relevance = np.array([0.9, 0.1, 0.5, 0.3, 0.7, 0.5, 0.2, 0.8, 0.4, 0.6])
    # Ascending ranks 1..10 with 0.5 tied at ranks 5 and 6 (mean 5.5); grade = floor(5 (r - 0.5) / 10).
    ranks = np.array([10, 1, 5.5, 4, 8, 5.5, 2, 9, 3, 7])
    expected = np.floor(5 * (ranks - 0.5) / 10).astype(int)

    grades = assign_grades(relevance, np.zeros(10, np.int32), GradeMapping.parse("quantile"))

    np.testing.assert_array_equal(grades, expected)
    assert grades.dtype == np.int8


def test_query_quantile_grades_per_query():
    relevance = np.array([0.9, 0.1, 0.05, 0.01])
    query = np.array([3, 3, 4, 4])
    # Within each query: ranks 2 and 1 of 2 give floor(5 * 1.5 / 2) = 3 and floor(5 * 0.5 / 2) = 1.
    grades = assign_grades(relevance, query, GradeMapping.parse("query-quantile"))
    np.testing.assert_array_equal(grades, [3, 1, 3, 1])


def test_threshold_grades():
    mapping = GradeMapping.parse("thresholds=0.1,0.2,0.4,0.6")
    grades = assign_grades(np.array([0.05, 0.1, 0.3, 0.4, 0.59, 0.6, 0.99]), np.zeros(7), mapping)
    np.testing.assert_array_equal(grades, [0, 1, 2, 3, 3, 4, 4])
    assert mapping.describe() == "thresholds=0.1,0.2,0.4,0.6"


@pytest.mark.parametrize("text", ["thresholds=0.3,0.2,0.5,0.6", "thresholds=0.1,0.2", "thresholds=a,b,c,d", "deciles"])
def test_grade_mapping_rejects_bad_text(text):
    with pytest.raises(ValueError, match="grade"):
        GradeMapping.parse(text)


def test_propensities_normalised_to_rank_one():
    table = examination_propensities(
        {"examination_by_rank": [0.8, 0.4, 0.2], "examination_by_rank_standard_error": [0.02, 0.04, None]}
    )
    rows = table.to_pylist()
    assert [row["propensity"] for row in rows] == pytest.approx([1.0, 0.5, 0.25])
    assert [row["weight"] for row in rows] == pytest.approx([1.0, 2.0, 4.0])
    assert rows[1]["propensity_se"] == pytest.approx(0.04 / 0.8)
    assert np.isnan(rows[2]["examination_se"])


def test_propensities_need_examination_by_rank():
    with pytest.raises(ValueError, match="no examination probability by rank"):
        examination_propensities({"continuation": 0.7})


def test_cli_export_and_errors(dbn_run, tmp_path, capsys):
    folder, _ = dbn_run
    output = tmp_path / "pairs.parquet"

    code = main(["export", "--model-dir", str(folder), "--output", str(output), "--grades", "thresholds=0.1,0.2,0.3,0.5"])

    assert code == 0
    assert pq.read_table(output).schema.metadata[b"clickjax_grades"] == b"thresholds=0.1,0.2,0.3,0.5"
    assert "wrote 300 query-document pairs" in capsys.readouterr().out

    code = main(["export", "--model-dir", str(folder), "--output", str(output), "--propensities", str(tmp_path / "p.parquet")])
    assert code == 1
    assert "no examination probability by rank" in capsys.readouterr().err

    code = main(["export", "--model-dir", str(tmp_path / "missing"), "--output", str(output)])
    assert code == 1
    assert "clickjax-model.json not found" in capsys.readouterr().err
