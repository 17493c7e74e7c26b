"""Parsing with and without key texts in the vocabulary, in the same process.

The baseline reads a Baidu-format log into a `Vocabulary()`, which records fingerprints only. The
other benchmark reads it into `Vocabulary(keys=True)`: the readers copy the query token field and
the URL MD5 of every result into the session, and the vocabulary stores the text of each new id. The input is the
demo's Baidu-format log repeated as concatenated gzip members, so most ids are met again and only
the first copy adds keys. The extra info records the heap bytes of the stored keys.

Run: .venv-test/bin/python -m pytest benches/bench_vocabulary_keys.py --benchmark-only
"""

from bench_readers import baidu_log  # noqa: F401 (a fixture)

from clickjax.data import Vocabulary, read_batches


def parse(path, keys):
    vocabulary = Vocabulary(keys=keys)
    sessions = 0
    for batch in read_batches("baidu", [path], vocabulary, batch_size=8192):
        sessions += batch.num_rows
    return sessions, vocabulary


def test_parse_without_keys_baseline(benchmark, baidu_log):
    sessions, vocabulary = benchmark(parse, baidu_log, False)
    benchmark.extra_info["sessions"] = sessions
    assert vocabulary.key_bytes == 0


def test_parse_with_keys(benchmark, baidu_log):
    sessions, vocabulary = benchmark(parse, baidu_log, True)
    benchmark.extra_info["sessions"] = sessions
    benchmark.extra_info["ids"] = vocabulary.query_table_size + vocabulary.document_table_size - 4
    benchmark.extra_info["key_bytes"] = vocabulary.key_bytes
    assert vocabulary.key_bytes > 0
