"""Every counter of the readers' `stats`, each checked on an input built to move it.

Fixtures use invented ids. Baidu document lines come from `document_line` of test_readers.py: the
abstract is `301\\x01302`, field 4 (multimedia type) is `-` and the behaviour fields are 0.
"""

import gzip

import pytest

from clickjax import _native
from test_readers import MISSING_TITLE, PSEUDO_TITLE, document_line

# Baidu behaviour columns and their 0-based field in a document line, from the dataset README.
BEHAVIOUR_FIELDS = {
    "multimedia_type": 4,
    "skip": 8,
    "serp_height": 9,
    "displayed_time": 10,
    "displayed_time_middle": 11,
    "first_click": 12,
    "displayed_count": 13,
    "serp_max_show_height": 14,
    "slipoff_count_after_click": 15,
    "dwelling_time": 16,
    "displayed_time_top": 17,
    "serp_to_top": 18,
    "displayed_count_top": 19,
    "displayed_count_bottom": 20,
    "slipoff_count": 21,
    "final_click": 23,
    "displayed_time_bottom": 24,
    "click_count": 25,
    "full_displayed_count": 26,
    "last_click": 28,
    "reverse_display_count": 29,
    "displayed_count_middle": 30,
}


def baidu_line_with(index, value, title="201", abstract="301\x01302"):
    """A shown Baidu document line with one field replaced."""
    fields = document_line("1", "aa01", title, "0").rstrip("\n").split("\t")
    fields[3] = abstract
    fields[index] = value
    return "\t".join(fields) + "\n"


def read(tmp_path, format, content, vocabulary=None, **options):
    path = tmp_path / "log"
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    if vocabulary is None:
        vocabulary = _native.Vocabulary()
    reader = _native.BatchReader(format, [path], vocabulary, **options)
    batches = list(reader)
    return batches, reader.stats


def accounted(stats):
    """Sessions read, as the sum of kept and every reason to drop one."""
    return (
        stats["sessions_kept"]
        + stats["sessions_skipped"]
        + stats["sessions_without_results"]
        + stats["sessions_dropped_few_results"]
        + stats["sessions_dropped_without_clicks"]
        + stats["sessions_dropped_rare_query"]
    )


# field -> (format, content, options) with exactly one malformed session failing on that field.
FIELD_CASES = {
    "line": ("baidu", "1\t5\t\n" + document_line("1", "aa01", "201", "0") + "1\t2\t3\t4\t5\t6\t7\n", {}),
    "pos": ("baidu", "1\t5\t\n" + document_line("x", "aa01", "201", "0"), {}),
    "url_md5": ("baidu", "1\t5\t\n" + document_line("1", "-", "201", "0"), {}),
    "click": ("baidu", "1\t5\t\n" + document_line("1", "aa01", "201", "2"), {}),
    "query": ("baidu", "1\t5\u00e9\t\n" + document_line("1", "aa01", "201", "0"), {}),
    "title": ("baidu", "1\t5\t\n" + baidu_line_with(2, "20\u00e9"), {"document_key": "text"}),
    "abstract": ("baidu", "1\t5\t\n" + baidu_line_with(3, "30\x02"), {"document_key": "text"}),
    **{
        name: ("baidu", "1\t5\t\n" + baidu_line_with(index, "x"), {"behaviour": [name]})
        for name, index in BEHAVIOUR_FIELDS.items()
    },
    "label": ("baidu-annotation", "1\t5\t201\t301\t7\t0\n", {}),
    "frequency_bucket": ("baidu-annotation", "1\t5\t201\t301\t1\tx\n", {}),
    "query_key": ("wscd", "1_1 11 : 11\n", {}),
    "urls": ("wscd", "1_1\t11,,12 :\n", {}),
    "clicks": ("wscd", "1_1\t11 : 11 : 12\n", {}),
    "session_id": ("yandex", "x\t0\tQ\t1\t1\t11\n", {}),
    "time_passed": ("yandex", "1\tx\tQ\t1\t1\t11\n", {}),
    "action_type": ("yandex", "1\t0\tZ\t11\n", {}),
    "query_id": ("yandex", "1\t0\tQ\tx\t1\t11\n", {}),
    "region_id": ("yandex", "1\t0\tQ\t1\tx\t11\n", {}),
    "url_id": ("yandex", "1\t0\tQ\t1\t1\t11\tx\n", {}),
    "region": ("clickmodels", '1\tq\tx\t0\t["a"]\t[false]\t[0]\n', {}),
    "intent_weight": ("clickmodels", '1\tq\t1\t2\t["a"]\t[false]\t[0]\n', {}),
    "layout": ("clickmodels", '1\tq\t1\t0\t["a"]\t[1]\t[0]\n', {}),
}


def test_field_cases_cover_every_skipped_counter(tmp_path):
    _, stats = read(tmp_path, "wscd", "")
    fields = {key.removeprefix("skipped_") for key in stats if key.startswith("skipped_")}
    assert fields == set(FIELD_CASES)


@pytest.mark.parametrize("field", sorted(FIELD_CASES))
def test_skipped_counter_of_field(tmp_path, field):
    format, content, options = FIELD_CASES[field]

    _, stats = read(tmp_path, format, content, on_error="skip", **options)

    assert stats[f"skipped_{field}"] == 1
    assert stats["sessions_skipped"] == 1
    assert sum(value for key, value in stats.items() if key.startswith("skipped_")) == 1
    assert stats["sessions_read"] == accounted(stats)


@pytest.mark.parametrize("field", sorted(FIELD_CASES))
def test_strict_error_names_field(tmp_path, field):
    format, content, options = FIELD_CASES[field]

    with pytest.raises(_native.ParseError) as raised:
        read(tmp_path, format, content, **options)

    assert raised.value.field == field
    assert raised.value.lineno >= 1


BAIDU_RULES = "".join(
    [
        "1\t5\t\n",
        document_line("1", "aa01", "201", "0"),
        document_line("2", "aa02", MISSING_TITLE, "1"),
        document_line("3", "aa03", PSEUDO_TITLE, "0"),
        document_line("3", "aa04", "202", "0"),
        document_line("4", "aa05", "203", "0"),
        "\n",
        "2\t6\t\n",
        document_line("1", "aa06", MISSING_TITLE, "0"),
        "3\t7\t\n",
        document_line("1", "aa07", "204", "0"),
    ]
)

# counter -> (format, content, options, expected value)
COUNTER_CASES = {
    "lines_read": ("baidu", BAIDU_RULES, {}, 11),
    "sessions_read": ("baidu", BAIDU_RULES, {}, 3),
    "sessions_kept": ("baidu", BAIDU_RULES, {}, 2),
    "missing_results": ("baidu", BAIDU_RULES, {}, 2),
    "pseudo_results": ("baidu", BAIDU_RULES, {}, 1),
    "results_truncated": ("baidu", BAIDU_RULES, {"positions": 2}, 2),
    "sessions_without_results": ("baidu", BAIDU_RULES, {}, 1),
    "sessions_without_clicks": ("baidu", BAIDU_RULES, {}, 1),
    "sessions_dropped_without_clicks": ("baidu", BAIDU_RULES, {"drop_sessions_without_clicks": True}, 1),
    "sessions_dropped_few_results": ("baidu", BAIDU_RULES, {"min_results": 2}, 1),
    "sessions_dropped_rare_query": ("wscd", "1_1\t11 :;1_1\t12 :;2_1\t21 :\n", {"min_sessions_per_query": 2}, 1),
    "repeated_clicks": ("yandex", "1\t0\tQ\t1\t1\t11\t12\n1\t1\tC\t12\n1\t2\tC\t12\n1\t3\tC\t12\n", {}, 2),
    "clicks_not_shown": ("yandex", "1\t0\tQ\t1\t1\t11\t12\n1\t1\tC\t13\n1\t2\tC\t12\n", {}, 1),
    "clicks_before_query": ("yandex", "1\t0\tC\t11\n2\t0\tQ\t1\t1\t11\n2\t1\tC\t11\n", {}, 1),
    "extra_click_entries": ("clickmodels", '1\tq\t1\t0\t["a"]\t[false]\t[0, 0, 1]\n', {}, 2),
    "invalid_position_keys": ("clickmodels", '1\tq\t1\t0\t{"0": "a", "2": "c"}\t{"x": true}\t{"5": 1}\n', {}, 3),
    "sessions_skipped": ("wscd", "1_1\t11 :;1_1 x;1_1\t11,,12 :\n", {"on_error": "skip"}, 2),
}


@pytest.mark.parametrize("counter", sorted(COUNTER_CASES))
def test_counter_value(tmp_path, counter):
    format, content, options, expected = COUNTER_CASES[counter]

    _, stats = read(tmp_path, format, content, **options)

    assert stats[counter] == expected
    assert stats["sessions_read"] == accounted(stats)


def test_clickmodels_repeated_clicks_from_counts(tmp_path):
    _, stats = read(tmp_path, "clickmodels", '1\tq\t1\t0\t["a", "b"]\t[false, false]\t[3, 2]\n')
    assert stats["repeated_clicks"] == (3 - 1) + (2 - 1)


def test_wscd_repeated_and_unshown_clicks(tmp_path):
    _, stats = read(tmp_path, "wscd", "1_1\t11,12 : 12 , 12 , 12 , 99 , 98\n")
    assert stats["repeated_clicks"] == 2
    assert stats["clicks_not_shown"] == 2


def test_out_of_vocabulary_counters(tmp_path):
    vocabulary = _native.Vocabulary()
    read(tmp_path, "yandex", "1\t0\tQ\t1\t1\t11\t12\n", vocabulary)
    vocabulary.freeze()

    _, stats = read(tmp_path, "yandex", "2\t0\tQ\t1\t1\t12\t13\n3\t0\tQ\t2\t1\t11\n", vocabulary)

    assert stats["oov_queries"] == 1
    assert stats["oov_documents"] == 1
    # Unknown pairs: (1_1, 13), (2_1, 11).
    assert stats["oov_pairs"] == 2


def test_corrupt_inputs_counter(tmp_path):
    text = "".join(f"{i}\t0\tQ\t{i}\t1\t11\t12\n{i}\t1\tC\t12\n" for i in range(3000)).encode()
    compressed = gzip.compress(text)

    _, stats = read(tmp_path, "yandex", compressed[: len(compressed) // 2], on_error="skip")

    assert stats["corrupt_inputs"] == 1
    assert 0 < stats["sessions_kept"] < 3000
    assert stats["sessions_read"] == accounted(stats)
