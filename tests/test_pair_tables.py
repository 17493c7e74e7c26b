"""Per-pair modules chosen by name, and the priors read from text, as `clickjax train` uses them."""

import json

import numpy as np
import pytest
from flax import nnx

from clickjax.cli import main
from clickjax.compressed import HashedLogits, QuotientRemainderLogits, RobeLogits
from clickjax.models import MODELS
from clickjax.pair_tables import PAIR_ROLES, pair_table_modules, parse_prior
from clickjax.parameters import EmbeddingLogits
from clickjax.priors import BetaPrior, L2Prior


def test_pair_roles_of_every_model():
    assert set(PAIR_ROLES) == set(MODELS)
    for name, roles in PAIR_ROLES.items():
        modules = pair_table_modules(name, "table", pairs=7)
        model = MODELS[name](positions=3, query_doc_pairs=7, rngs=nnx.Rngs(0), **modules)
        for role in roles:
            assert getattr(model, role) is modules[role]


@pytest.mark.parametrize(
    ("kind", "cls", "entries"),
    [("hashed", HashedLogits, 100), ("qr", QuotientRemainderLogits, 100), ("robe", RobeLogits, 100)],
)
def test_compressed_table_entries(kind, cls, entries):
    modules = pair_table_modules("dbn", kind, pairs=1000, compression=10)
    assert set(modules) == {"attraction", "satisfaction"}
    for module in modules.values():
        assert isinstance(module, cls)
        assert module.buckets == entries
    # Each role hashes with its own seed, so two roles do not collide on the same pairs.
    assert modules["attraction"].seed != modules["satisfaction"].seed


def test_full_table_rows_and_prior():
    prior = L2Prior(strength=2.0)
    modules = pair_table_modules("pbm", "table", pairs=12, prior=prior)
    assert isinstance(modules["attraction"], EmbeddingLogits)
    assert modules["attraction"].rows == 12
    assert modules["attraction"].prior is prior


def test_bad_choices_name_the_value():
    with pytest.raises(ValueError, match="'lsh'"):
        pair_table_modules("pbm", "lsh", pairs=10)
    with pytest.raises(ValueError, match="compression must be a number of at least 1, got 0.5"):
        pair_table_modules("pbm", "hashed", pairs=10, compression=0.5)
    with pytest.raises(ValueError, match="needs a compressed pair table"):
        pair_table_modules("pbm", "table", pairs=10, compression=10)
    with pytest.raises(ValueError, match="'xyz'"):
        pair_table_modules("xyz", "table", pairs=10)


def test_priors_from_text():
    assert parse_prior(None) is None
    assert parse_prior("none") is None
    l2 = parse_prior("l2:0.5")
    assert isinstance(l2, L2Prior) and l2.strength == 0.5
    beta = parse_prior("beta:2,8")
    assert isinstance(beta, BetaPrior) and (beta.a, beta.b) == (2.0, 8.0)
    for text in ["l2", "beta:2", "l2:x", "gauss:1", "beta:0.5,2"]:
        with pytest.raises(ValueError, match="invalid prior"):
            parse_prior(text)


def _write_wscd(path, sessions):
    # One line per query: sessions separated by "; ", each "QUERY<TAB>urls : clicks".
    text = "\n".join("; ".join(f"q{query}\t{line}" for line in lines) for query, lines in sessions.items())
    path.write_text(text + "\n")


def test_train_hashed_table_with_prior(tmp_path):
    rng = np.random.default_rng(0)
    sessions = {}
    for query in range(20):
        lines = []
        for _ in range(15):
            urls = [f"u{query}_{doc}" for doc in rng.permutation(6)[:5]]
            clicked = [url for rank, url in enumerate(urls) if rng.random() < 0.5 / (rank + 1)]
            lines.append(f"{','.join(urls)} : {' , '.join(clicked)}")
        sessions[query] = lines
    train, test = tmp_path / "train", tmp_path / "test"
    _write_wscd(train, sessions)
    _write_wscd(test, {query: lines[:3] for query, lines in sessions.items()})
    output = tmp_path / "run"
    code = main([
        "train", "--model", "pbm", "--format", "wscd", "--train", str(train), "--test", str(test),
        "--output", str(output), "--positions", "5", "--epochs", "2", "--quiet",
        "--pair-table", "hashed", "--compression", "4", "--prior", "l2:1",
    ])
    assert code == 0
    saved = json.loads((output / "model" / "clickjax-model.json").read_text())
    attraction = saved["modules"]["attraction"]
    assert attraction["type"] == "HashedLogits"
    assert attraction["config"]["buckets"] == -(-metrics_pairs(output) // 4)
    assert attraction["config"]["prior"] == {"type": "l2", "strength": 1.0, "mean": 0.0}
    metrics = json.loads((output / "metrics.json").read_text())
    assert metrics["config"]["pair_table"] == "hashed"
    assert np.isfinite(metrics["log_likelihood"])


def metrics_pairs(output) -> int:
    """The pair table size the run used: the rows of its vocabulary's pair table."""
    return json.loads((output / "model" / "clickjax-model.json").read_text())["query_doc_pairs"]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--prior", "beta:2"], "invalid --prior 'beta:2'"),
        (["--pair-table", "hashed", "--compression", "0.5"], "--compression must be a number of at least 1, got 0.5"),
    ],
)
def test_train_rejects_invalid_table_options(tmp_path, capsys, options, message):
    # The options are checked before the (missing) logs are read.
    code = main([
        "train", "--model", "pbm", "--format", "wscd", "--train", str(tmp_path / "missing"),
        "--test", str(tmp_path / "missing"), "--output", str(tmp_path / "run"), *options,
    ])
    assert code == 1
    assert message in capsys.readouterr().err


def test_train_with_robe_tables(tmp_path):
    # ROBE tables need a block of entries; the option check before reading must not reject them.
    rng = np.random.default_rng(3)
    sessions = {
        query: [f"u{query}_0,u{query}_1,u{query}_2 : " + ("u%d_0" % query if rng.random() < 0.5 else "") for _ in range(5)]
        for query in range(10)
    }
    train = tmp_path / "train"
    _write_wscd(train, sessions)
    output = tmp_path / "run"
    code = main([
        "train", "--model", "pbm", "--format", "wscd", "--train", str(train), "--test", str(train),
        "--output", str(output), "--positions", "3", "--epochs", "1", "--quiet", "--pair-table", "robe", "--compression", "1",
    ])
    assert code == 0
    saved = json.loads((output / "model" / "clickjax-model.json").read_text())
    assert saved["modules"]["attraction"]["type"] == "RobeLogits"
