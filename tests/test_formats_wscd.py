"""The WSCD sample format as a property: generated sessions written with varied separators read back equal."""

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clickjax import _native
from clickjax.data import read_batches
from test_readers import column, expected_columns, expected_wscd, write

url = st.integers(0, 40).map(str)
session = st.tuples(
    st.tuples(st.integers(0, 6), st.integers(1, 3)).map(lambda key: f"{key[0]}_{key[1]}"),
    st.lists(url, min_size=1, max_size=12),
    st.lists(st.one_of(url, st.just("999")), max_size=5),
)
# The separators of the real samples: spaces around `:` and `,`, sessions joined by `;` with
# spaces, lines of one query, blank lines between lines, and CRLF as a defensive case.
click_separator = st.sampled_from([" , ", ",", ", "])
colon = st.sampled_from([" : ", ":", " :  "])
session_end = st.sampled_from(["\n", ";", " ; ", ";\n", "; \n\n", ";  ", "\r\n", ";\r\n"])


@st.composite
def wscd_log(draw):
    sessions = draw(st.lists(session, max_size=30))
    pieces = []
    for query, urls, clicks in sessions:
        pieces.append(f"{query}\t{','.join(urls)}{draw(colon)}{draw(click_separator).join(clicks)}{draw(session_end)}")
    text = "".join(pieces)
    if draw(st.booleans()):
        text = text.rstrip("\r\n")
    return sessions, text


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(log=wscd_log(), positions=st.integers(1, 10))
def test_round_trip(tmp_path, log, positions):
    sessions, text = log
    path = write(tmp_path, "log", text)

    reader = read_batches("wscd", [path], _native.Vocabulary(), positions=positions, batch_size=5)
    batches = list(reader)

    rows, counts = expected_wscd(sessions, positions)
    if rows:
        for name, values in expected_columns(rows, positions).items():
            np.testing.assert_array_equal(column(batches, name), values, err_msg=name)
    for name, count in counts.items():
        assert reader.stats[name] == count, name
    assert reader.stats["sessions_kept"] == len(rows)
    assert reader.stats["sessions_skipped"] == 0
