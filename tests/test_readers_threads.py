"""Reading with worker threads: identical batches for any thread count, input-order errors, cleanup."""

import gc
import gzip
import os

import numpy as np
import pytest

from clickjax import _native
from clickjax.data import ClickLog, Vocabulary, batch_to_numpy, build_vocabulary, read_batches
from clickjax.writers import write_log


def wscd_text(file, sessions):
    """Return WSCD text whose query and URL ids depend on the file and the session."""
    lines = []
    for session in range(sessions):
        query = (file * 7 + session) % 50
        urls = [str((query * 3 + rank + file) % 90) for rank in range(5)]
        lines.append(f"{query}_1\t{','.join(urls)} : {urls[session % 5]};\n")
    return "".join(lines)


def write_gzip(path, text):
    with gzip.open(path, "wt", encoding="ascii") as file:
        file.write(text)
    return path


def all_batches(format, paths, threads, **options):
    return list(read_batches(format, paths, Vocabulary(), batch_size=100, threads=threads, **options))


def assert_same_batches(left, right):
    """Compare column by column; numpy counts NaN (missing behaviour values) as equal."""
    assert len(left) == len(right)
    for left_batch, right_batch in zip(left, right):
        assert left_batch.schema == right_batch.schema
        left_arrays, right_arrays = batch_to_numpy(left_batch), batch_to_numpy(right_batch)
        for name, array in left_arrays.items():
            np.testing.assert_array_equal(right_arrays[name], array, err_msg=name)


def thread_ids() -> set[str]:
    """Return the ids of this process's threads."""
    return set(os.listdir("/proc/self/task"))


def started_since(before: set[str]) -> set[str]:
    """Return the threads alive now that were not in `before`.

    Comparing sets rather than counts keeps a thread of an earlier test that ends meanwhile
    (a worker of another test file, for example) from changing the result.
    """
    return thread_ids() - before


def test_many_small_files_same_batches(tmp_path):
    paths = [write_gzip(tmp_path / f"part-{file}.gz", wscd_text(file, 400)) for file in range(10)]
    single = all_batches("wscd", paths, threads=1)
    assert sum(batch.num_rows for batch in single) == 4000
    assert_same_batches(all_batches("wscd", paths, threads=4), single)


def test_one_large_file_same_batches(tmp_path):
    rng = np.random.default_rng(7)
    sessions, shown = 6000, 10
    doc_id = np.stack([rng.choice(3000, size=shown, replace=False) + 2 for _ in range(sessions)]).astype(np.int32)
    columns = {
        "query_id": rng.integers(2, 500, size=sessions).astype(np.int32),
        "doc_id": doc_id,
        "position": np.tile(np.arange(1, shown + 1, dtype=np.int32), (sessions, 1)),
        "click": (rng.random((sessions, shown)) < 0.2).astype(np.uint8),
        "mask": np.ones((sessions, shown), np.uint8),
    }
    path = tmp_path / "part-00000.gz"
    write_log(path, columns, "baidu")
    single = all_batches("baidu", [path], threads=1, behaviour=["dwelling_time"])
    assert sum(batch.num_rows for batch in single) == sessions
    assert_same_batches(all_batches("baidu", [path], threads=4, behaviour=["dwelling_time"]), single)


def test_dropped_iterator_joins_workers(tmp_path):
    paths = [write_gzip(tmp_path / f"part-{file}.gz", wscd_text(file, 20_000)) for file in range(4)]
    gc.collect()
    before = thread_ids()
    reader = read_batches("wscd", paths, Vocabulary(), batch_size=10, threads=4)
    next(reader)
    # Four workers, each decompressing its file inline, blocked on full channels.
    assert len(started_since(before)) == 4
    del reader
    gc.collect()
    assert started_since(before) == set()


@pytest.mark.parametrize(
    ("files", "threads", "started"),
    [
        (1, 1, 1),  # one worker that decompresses inline
        (3, 1, 1),  # one worker, file after file
        (1, 2, 2),  # a worker and the decompression thread of its file
        (1, 5, 2),  # a file has at most one decompression thread
        (2, 2, 2),  # two workers, each decompressing inline
    ],
)
def test_threads_is_the_thread_budget(tmp_path, files, threads, started):
    # About 6 MB of text per file, far more than the channels buffer, so no thread of the first
    # file finishes while the caller is still on its first small batch.
    paths = [write_gzip(tmp_path / f"part-{file}.gz", wscd_text(file, 200_000)) for file in range(files)]
    gc.collect()
    before = thread_ids()
    reader = read_batches("wscd", paths, Vocabulary(), batch_size=10, threads=threads)
    first = next(reader)
    assert first.num_rows == 10
    assert len(started_since(before)) == started
    del reader
    gc.collect()
    assert started_since(before) == set()


def test_exhausted_iterator_joins_workers(tmp_path):
    paths = [write_gzip(tmp_path / f"part-{file}.gz", wscd_text(file, 300)) for file in range(3)]
    gc.collect()
    before = thread_ids()
    reader = read_batches("wscd", paths, Vocabulary(), threads=3)
    rows = sum(batch.num_rows for batch in reader)
    assert rows == 900
    del reader
    gc.collect()
    assert started_since(before) == set()


def test_strict_error_in_third_file_after_earlier_sessions(tmp_path):
    texts = [wscd_text(file, 500) for file in range(5)]
    texts[2] = wscd_text(2, 100) + "7_1\n" + wscd_text(2, 100)
    paths = [write_gzip(tmp_path / f"part-{file}.gz", text) for file, text in enumerate(texts)]
    expected = all_batches("wscd", paths[:2], threads=1)
    reader = read_batches("wscd", paths, Vocabulary(), batch_size=100, threads=4)
    received = []
    with pytest.raises(_native.ParseError) as raised:
        for batch in reader:
            received.append(batch)
    assert raised.value.lineno == 101
    assert os.fspath(raised.value.path).endswith("part-2.gz")
    # Every session of files one and two, then the 100 of file three before the broken line.
    assert sum(batch.num_rows for batch in received) == 1100
    assert_same_batches(received[:10], expected)


def test_threads_option_checked(tmp_path):
    path = tmp_path / "log.txt"
    path.write_text(wscd_text(0, 3))
    for invalid in (0, -2, 257):
        with pytest.raises(ValueError, match=f"invalid threads {invalid}: expected an integer from 1 to 256"):
            read_batches("wscd", [path], Vocabulary(), threads=invalid)


def test_click_log_and_vocabulary_take_threads(tmp_path):
    paths = [write_gzip(tmp_path / f"part-{file}.gz", wscd_text(file, 200)) for file in range(3)]
    single = ClickLog.read("wscd", paths, Vocabulary(), threads=1)
    parallel = ClickLog.read("wscd", paths, Vocabulary(), threads=3)
    for name, column in single.columns.items():
        np.testing.assert_array_equal(parallel.columns[name], column, err_msg=name)
    assert parallel.stats == single.stats
    by_one = build_vocabulary("wscd", paths, threads=1).to_arrow()
    by_three = build_vocabulary("wscd", paths, threads=3).to_arrow()
    assert by_three.equals(by_one)


def test_gzip_decompressed_size(tmp_path):
    text = wscd_text(0, 1000)
    path = write_gzip(tmp_path / "part.gz", text)
    assert _native.gzip_decompressed_size(path) == len(text.encode())
    truncated = tmp_path / "truncated.gz"
    truncated.write_bytes(path.read_bytes()[:200])
    with pytest.raises(_native.CorruptInputError, match="truncated.gz"):
        _native.gzip_decompressed_size(truncated)
    with pytest.raises(FileNotFoundError):
        _native.gzip_decompressed_size(tmp_path / "absent.gz")


def test_lookahead_bytes_same_batches(tmp_path):
    paths = [write_gzip(tmp_path / f"part-{file}.gz", wscd_text(file, 3000)) for file in range(3)]
    single = read_batches("wscd", paths, Vocabulary(), batch_size=100, threads=1)
    expected = list(single)
    # One byte lets the worker of each later file hold a single block of rows ahead.
    tiny = read_batches("wscd", paths, Vocabulary(), batch_size=100, threads=3, lookahead_bytes=1)
    received = list(tiny)
    assert sum(batch.num_rows for batch in received) == 9000
    assert_same_batches(received, expected)
    assert tiny.stats == single.stats


def test_lookahead_bytes_option_checked(tmp_path):
    path = tmp_path / "log.txt"
    path.write_text(wscd_text(0, 3))
    for invalid in (0, -1, 2**40 + 1):
        expected = f"invalid lookahead_bytes {invalid}: expected an integer from 1 to {2**40}"
        with pytest.raises(ValueError, match=expected):
            read_batches("wscd", [path], Vocabulary(), lookahead_bytes=invalid)


def test_keys_first_seen_in_later_files_same_vocabulary(tmp_path):
    # Each file adds queries and URLs of its own to those all files share.
    texts = [
        wscd_text(file, 1500) + "".join(f"f{file}q{n}_1\tf{file}u{n},{n % 90} : {n % 90};\n" for n in range(300))
        for file in range(4)
    ]
    paths = [write_gzip(tmp_path / f"part-{file}.gz", text) for file, text in enumerate(texts)]
    expected_vocabulary = Vocabulary(keys=True)
    expected = list(read_batches("wscd", paths, expected_vocabulary, batch_size=100, threads=1))
    # 50 shared queries and 300 of each file; 90 shared URLs and 300 of each file.
    assert expected_vocabulary.query_table_size == 2 + 50 + 4 * 300
    assert expected_vocabulary.document_table_size == 2 + 90 + 4 * 300
    for threads in (2, 4):
        vocabulary = Vocabulary(keys=True)
        received = list(read_batches("wscd", paths, vocabulary, batch_size=100, threads=threads))
        assert_same_batches(received, expected)
        assert vocabulary.to_arrow().equals(expected_vocabulary.to_arrow())
