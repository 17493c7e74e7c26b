"""Exported pairs carry the query and document keys as the training log wrote them."""

import gzip

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from clickjax import _native
from clickjax.cli import main

# Columns 5 onwards of a Baidu document line after the click: behaviour values the reader skips.
BEHAVIOUR = "\t-" * 26
# Queries by token field (tokens joined by 0x01), each with its results as (URL MD5, title,
# abstract, click).
SESSIONS = [
    ("11\x0112", [("a" * 32, "201", "301\x01302", 1), ("b" * 32, "202", "303", 0)]),
    ("13", [("b" * 32, "202", "303", 1), ("c" * 32, "203\x01204", "305", 0)]),
    ("11\x0112", [("c" * 32, "203\x01204", "305", 0), ("a" * 32, "201", "301\x01302", 1)]),
]


def write_baidu_log(path):
    lines = []
    for qid, (query, results) in enumerate(SESSIONS):
        lines.append(f"{qid}\t{query}\t-")
        for rank, (md5, title, abstract, click) in enumerate(results, start=1):
            lines.append(f"{rank}\t{md5}\t{title}\t{abstract}\t0\t{click}{BEHAVIOUR}")
    with gzip.open(path, "wt", encoding="ascii") as file:
        file.write("\n".join(lines) + "\n")
    return path


def train_and_export(tmp_path, format, train, test, *options):
    run = tmp_path / "run"
    code = main([
        "train", "--model", "pbm", "--format", format, "--train", str(train), "--test", str(test),
        "--epochs", "2", "--output", str(run), "--quiet", *options,
    ])
    assert code == 0
    output = tmp_path / "pairs.parquet"
    assert main(["export", "--model-dir", str(run), "--output", str(output)]) == 0
    return pq.read_table(output)


def assert_keys_match_fingerprints(table):
    """Each exported key hashes to the exported fingerprint, as the readers hash it."""
    for role, key, fingerprint in (("query", "query", "query_fingerprint"), ("document", "document", "doc_fingerprint")):
        hashed = _native.fingerprint(table.column(key).combine_chunks(), role, key)
        assert hashed.equals(table.column(fingerprint).combine_chunks()), key


def test_baidu_export_keys_are_tokens_and_md5(tmp_path):
    log = write_baidu_log(tmp_path / "part-00000.gz")

    table = train_and_export(tmp_path, "baidu", log, log)

    assert table.schema.field("query").type == pa.large_string()
    pairs = set(zip(table.column("query").to_pylist(), table.column("document").to_pylist()))
    assert pairs == {
        ("11\x0112", "a" * 32), ("11\x0112", "b" * 32), ("11\x0112", "c" * 32),
        ("13", "b" * 32), ("13", "c" * 32),
    }
    assert_keys_match_fingerprints(table)
    columns = table.column_names
    assert columns[:7] == ["query_doc_id", "query_id", "doc_id", "query_fingerprint", "doc_fingerprint", "query", "document"]
    impressions = {(row["query"], row["document"]): row["impressions"] for row in table.to_pylist()}
    assert impressions[("11\x0112", "a" * 32)] == 2
    assert impressions[("13", "c" * 32)] == 1


def test_baidu_export_text_keys(tmp_path):
    log = write_baidu_log(tmp_path / "part-00000.gz")

    table = train_and_export(tmp_path, "baidu", log, log, "--document-key", "text")

    documents = set(table.column("document").to_pylist())
    # The title and abstract token fields, joined by a TAB.
    assert documents == {"201\t301\x01302", "202\t303", "203\x01204\t305"}
    by_query = {}
    for row in table.to_pylist():
        by_query.setdefault(row["query"], set()).add(row["document"])
    assert by_query["13"] == {"202\t303", "203\x01204\t305"}


def wscd_sessions(path):
    """Return every session of a WSCD file as (query key, URL ids), by a plain split of the text."""
    sessions = []
    for line in path.read_text().splitlines():
        for piece in line.split(";"):
            if piece.strip():
                query, body = piece.strip().split("\t", 1)
                urls = [url.strip() for url in body.split(":", 1)[0].split(",")]
                sessions.append((query.strip(), urls))
    return sessions


def test_wscd_sample_export_keys(data_dir, tmp_path):
    folder = data_dir / "yandex-wscd-pyclick"
    train = folder / "trainSample"

    table = train_and_export(tmp_path, "wscd", train, folder / "testSample")

    assert table.column("query").null_count == 0
    assert table.column("document").null_count == 0
    assert_keys_match_fingerprints(table)
    rows = {(row["query"], row["document"]): row for row in table.to_pylist()}
    # The file opens with query 98435_1 showing 232429 first and 688835 second.
    first = rows[("98435_1", "232429")]
    assert first["query_id"] == 2
    assert first["doc_id"] == 2
    assert rows[("98435_1", "688835")]["doc_id"] == 3
    # It ends with query 9_0 showing these ten URL ids.
    last_urls = "13,275485,300410,70,377,53885,293,309785,71,21660".split(",")
    exported_9_0 = {document for query, document in rows if query == "9_0"}
    assert set(last_urls) <= exported_9_0
    # The documents of a query are the URL ids in the first ten of any of its sessions.
    sessions = wscd_sessions(train)
    assert exported_9_0 == {url for key, urls in sessions if key == "9_0" for url in urls[:10]}
    assert len(rows) == len({(key, url) for key, urls in sessions for url in urls[:10]})
    # Impressions of a pair are the sessions of its query that show its URL in the first ten.
    for query, document in [("98435_1", "232429"), ("9_0", "53885")]:
        expected = sum(1 for key, urls in sessions if key == query and document in urls[:10])
        assert rows[(query, document)]["impressions"] == expected


def test_export_of_version_1_vocabulary_has_null_keys(tmp_path):
    log = write_baidu_log(tmp_path / "part-00000.gz")
    run = tmp_path / "run"
    assert main(["train", "--model", "pbm", "--format", "baidu", "--train", str(log), "--test", str(log),
                 "--epochs", "1", "--output", str(run), "--quiet"]) == 0
    # Rewrite the vocabulary as version 1, which stored no keys.
    path = run / "model" / "vocabulary.parquet"
    table = pq.read_table(path).drop_columns(["key"])
    metadata = {b"clickjax.vocabulary.format_version": b"1", b"clickjax.vocabulary.frozen": b"true"}
    pq.write_table(table.replace_schema_metadata(metadata), path)
    output = tmp_path / "pairs.parquet"

    assert main(["export", "--model-dir", str(run), "--output", str(output)]) == 0

    exported = pq.read_table(output)
    assert exported.num_rows == 5
    assert exported.column("query").null_count == 5
    assert exported.column("document").null_count == 5
    assert exported.column("query_fingerprint").null_count == 0


@pytest.mark.parametrize("bad", [b"\xff\xfe", b"ok"])
def test_binary_keys_decode_with_replacement(bad, caplog):
    from clickjax.export import _key_strings

    decoded = _key_strings(pa.array([bad, None], pa.large_binary()), "document")

    assert decoded.type == pa.large_string()
    assert decoded.to_pylist() == [bad.decode(errors="replace"), None]
    assert ("not valid UTF-8" in caplog.text) == (bad == b"\xff\xfe")
