"""The ClickModels TSV in its list and object (extended) variants, on the real samples and generated logs."""

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clickjax import _native
from clickjax.data import read_batches
from test_readers import column, expected_columns, read, write

CLICKMODELS = 'q1\tcheap flights\t213\t0\t["u1", "u2", "u3"]\t[false, false, false]\t[0, 2, 0]\n'
CLICKMODELS_EXT = 'q1\tcheap flights\t213\t0\t{"0": "u1", "1": "u2", "2": "u3"}\t{}\t{"1": 2, "x": 1}\n'


def test_variants_give_same_rows(tmp_path):
    lists, list_reader = read("clickmodels", [write(tmp_path, "list", CLICKMODELS)], positions=3)
    objects, object_reader = read("clickmodels", [write(tmp_path, "objects", CLICKMODELS_EXT)], positions=3)

    for name in ["query_id", "doc_id", "position", "click", "mask"]:
        np.testing.assert_array_equal(column(lists, name), column(objects, name), err_msg=name)
    np.testing.assert_array_equal(column(lists, "click"), [[0, 1, 0]])
    assert list_reader.stats["repeated_clicks"] == 1
    assert object_reader.stats["repeated_clicks"] == 1
    assert object_reader.stats["invalid_position_keys"] == 1
    assert list_reader.stats["invalid_position_keys"] == 0


def test_variant_detected_per_line(tmp_path):
    batches, reader = read("clickmodels", [write(tmp_path, "mixed", CLICKMODELS + CLICKMODELS_EXT)], positions=3)
    np.testing.assert_array_equal(column(batches, "query_id"), [2, 2])
    assert reader.stats["sessions_kept"] == 2


def test_query_text_utf8_required(tmp_path):
    path = write(tmp_path, "log", b'1\tcaf\xe9\t1\t0\t["a"]\t[false]\t[0]\n')
    with pytest.raises(_native.ParseError) as raised:
        read("clickmodels", [path])
    assert (raised.value.field, raised.value.text) == ("query", "caf\ufffd")

    text = '1\tcafé au lait\t1\t0\t["é"]\t[false]\t[1]\n1\tcafé au lait\t2\t0\t["é"]\t[false]\t[1]\n'
    batches, _ = read("clickmodels", [write(tmp_path, "utf8", text)])
    np.testing.assert_array_equal(column(batches, "query_id"), [2, 3])
    np.testing.assert_array_equal(column(batches, "doc_id")[:, 0], [2, 2])


@pytest.mark.parametrize("weight", ["1.01", "-0.5", "nan", "inf", "x", ""])
def test_intent_weight_outside_unit_interval(tmp_path, weight):
    path = write(tmp_path, "log", f'1\tq\t1\t{weight}\t["a"]\t[false]\t[0]\n')
    with pytest.raises(_native.ParseError) as raised:
        read("clickmodels", [path])
    assert raised.value.field == "intent_weight"
    assert raised.value.text == weight


def test_real_samples(data_dir):
    folder = data_dir / "clickmodels"
    vocabulary = _native.Vocabulary()
    lists, list_reader = read("clickmodels", [folder / "click_log_sample.tsv"], vocabulary)
    objects, object_reader = read("clickmodels", [folder / "click_log_sample_extended_format.tsv"], vocabulary)

    # Three sessions of 10 URLs: QUERY1 clicks ranks 3 and 4, QUERY2 ranks 2 and 3, QUERY3 none.
    expected_clicks = np.zeros((3, 10), np.uint8)
    expected_clicks[0, [2, 3]] = 1
    expected_clicks[1, [1, 2]] = 1
    for batches, reader in [(lists, list_reader), (objects, object_reader)]:
        np.testing.assert_array_equal(column(batches, "click"), expected_clicks)
        np.testing.assert_array_equal(column(batches, "mask"), np.ones((3, 10)))
        np.testing.assert_array_equal(column(batches, "query_id"), [2, 3, 4])
        assert reader.stats["sessions_kept"] == 3
        assert reader.stats["sessions_without_clicks"] == 1
        assert reader.stats["invalid_position_keys"] == 0
    np.testing.assert_array_equal(column(lists, "query_doc_id"), column(objects, "query_doc_id"))
    # Each click list of the list sample has 11 entries for 10 URLs.
    assert list_reader.stats["extra_click_entries"] == 3
    assert object_reader.stats["extra_click_entries"] == 0


# A generated session: query text, region, intent weight, URLs, layout, click counts, extra
# click entries beyond the URLs, and extended-format keys that are not positions.
query_text = st.text(st.characters(codec="utf-8", exclude_characters="\t\n\r"), max_size=8)
generated_session = st.tuples(
    query_text,
    st.integers(-3, 300),
    st.floats(0, 1),
    st.lists(st.text(max_size=5), max_size=12),
    st.lists(st.integers(0, 3), max_size=12),
    st.lists(st.integers(0, 2), max_size=2),
    st.lists(st.sampled_from(["x", "-1", "1.0", "99"]), max_size=2, unique=True),
    st.booleans(),
)


def render_session(session, variant, line_end):
    query, region, weight, urls, counts, extra, bad_keys, first_layout = session
    counts = (counts + [0] * len(urls))[: len(urls)]
    layout = [first_layout] + [False] * (len(urls) - 1) if urls else []
    if variant == "list":
        fields = [json.dumps(urls), json.dumps(layout[: len(urls)]), json.dumps(counts + extra)]
    else:
        clicks = {str(i): count for i, count in enumerate(counts) if count}
        clicks |= {key: 1 for key in bad_keys}
        layout_object = {str(i): value for i, value in enumerate(layout) if value}
        fields = [json.dumps(dict(enumerate(urls))), json.dumps(layout_object), json.dumps(clicks)]
    return "\t".join(["id", query, str(region), repr(weight), *fields]) + line_end


def expected_session(session, variant, positions, counts_out):
    query, region, _, urls, counts, extra, bad_keys, _ = session
    counts = (counts + [0] * len(urls))[: len(urls)]
    counts_out["repeated_clicks"] += sum(max(count - 1, 0) for count in counts)
    counts_out["results_truncated"] += max(0, len(urls) - positions)
    if variant == "list":
        counts_out["extra_click_entries"] += len(extra)
        logged = any(counts) or any(extra)
    else:
        counts_out["invalid_position_keys"] += len(bad_keys)
        logged = any(counts) or bool(bad_keys)
    if not urls:
        return None
    counts_out["sessions_without_clicks"] += not logged
    kept = [(url, rank, counts[rank - 1] > 0) for rank, url in enumerate(urls[:positions], start=1)]
    return (f"{query}\t{region}", kept)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    sessions=st.lists(generated_session, max_size=12),
    variant=st.sampled_from(["list", "object"]),
    line_end=st.sampled_from(["\n", "\r\n"]),
    positions=st.integers(1, 10),
)
def test_round_trip(tmp_path, sessions, variant, line_end, positions):
    path = write(tmp_path, "log", "".join(render_session(session, variant, line_end) for session in sessions))

    batches = list(reader := read_batches("clickmodels", [path], _native.Vocabulary(), positions=positions))

    counts = dict.fromkeys(
        ["repeated_clicks", "extra_click_entries", "invalid_position_keys", "results_truncated", "sessions_without_clicks"], 0
    )
    rows = [row for session in sessions if (row := expected_session(session, variant, positions, counts))]
    if rows:
        for name, values in expected_columns(rows, positions).items():
            np.testing.assert_array_equal(column(batches, name), values, err_msg=name)
    for name, count in counts.items():
        assert reader.stats[name] == count, name
    assert reader.stats["sessions_kept"] == len(rows)
    assert reader.stats["sessions_without_results"] == sum(not session[3] for session in sessions)
