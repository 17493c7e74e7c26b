"""Load reports of the click-log readers: sessions kept and dropped, results and clicks changed.

Every reader counts each decision it takes in `reader.stats` (also kept as `ClickLog.stats` and in the
`reader_stats` of a run's `metrics.json`). `LoadReport` gives those counters names and renders them as
the text that `clickjax train` prints for each input:

    log = ClickLog.read("wscd", ["trainSample"], vocabulary)
    print(LoadReport.from_stats(log.stats, name="train").format())

Sessions add up: `sessions_read == sessions_kept + sessions_dropped`, where `sessions_dropped` sums the
five reasons in `SESSION_DROPS`. Sessions without any logged click are kept unless
`drop_sessions_without_clicks` is set, so they appear apart from the drops.

Given the log format (`LoadReport.from_stats(stats, log_format="wscd")`), `format()` prints only the
counters that the format's reader can change (see `FORMAT_COUNTERS`), plus any other counter that is
not zero.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["CHANGES", "FORMAT_COUNTERS", "OUT_OF_VOCABULARY", "SESSION_DROPS", "LoadReport"]

# Why a session produced no row: counter name -> description.
SESSION_DROPS: dict[str, str] = {
    "sessions_skipped": 'malformed, skipped under on_error="skip"',
    "sessions_without_results": "no result left",
    "sessions_dropped_few_results": "fewer results than min_results",
    "sessions_dropped_without_clicks": "no click, dropped by drop_sessions_without_clicks",
    "sessions_dropped_rare_query": "query with fewer sessions than min_sessions_per_query",
}

# Results and clicks that a rule dropped or changed: counter name -> description.
CHANGES: dict[str, str] = {
    "results_truncated": "results beyond the page length, dropped",
    "missing_results": "Baidu results with missing content (title 21429), dropped",
    "pseudo_results": 'Baidu "people also searched for" results, dropped',
    "repeated_clicks": "repeated clicks on a result, counted once",
    "clicks_not_shown": "clicks on a URL not in the list, ignored",
    "clicks_before_query": "Yandex clicks before any query of their session, dropped",
    "extra_click_entries": "ClickModels click entries beyond the URL list, ignored",
    "invalid_position_keys": "ClickModels object keys that are not a position, ignored",
}

# Keys that a frozen vocabulary did not hold: counter name -> description.
OUT_OF_VOCABULARY: dict[str, str] = {
    "oov_queries": "rows with an unknown query",
    "oov_documents": "results with an unknown document",
    "oov_pairs": "results with an unknown query-document pair",
}

_SKIPPED_PREFIX = "skipped_"

# Counters of the session rules and the vocabulary, which every reader applies.
_RULE_COUNTERS = frozenset(
    {
        "sessions_without_results",
        "sessions_dropped_few_results",
        "sessions_dropped_without_clicks",
        "sessions_dropped_rare_query",
        "results_truncated",
        *OUT_OF_VOCABULARY,
    }
)
# Counters of the text readers, which skip malformed sessions and read gzip.
_TEXT_COUNTERS = _RULE_COUNTERS | {"sessions_skipped", "corrupt_inputs"}

# The counters of `SESSION_DROPS`, `CHANGES`, `OUT_OF_VOCABULARY` and `corrupt_inputs` that each
# log format's reader can make non-zero.
FORMAT_COUNTERS: dict[str, frozenset[str]] = {
    "baidu": _TEXT_COUNTERS | {"missing_results", "pseudo_results"},
    "baidu-annotation": _TEXT_COUNTERS | {"missing_results", "pseudo_results"},
    "yandex": _TEXT_COUNTERS | {"repeated_clicks", "clicks_not_shown", "clicks_before_query"},
    "wscd": _TEXT_COUNTERS | {"repeated_clicks", "clicks_not_shown"},
    "clickmodels": _TEXT_COUNTERS | {"repeated_clicks", "extra_click_entries", "invalid_position_keys"},
    "hf-baidu": _RULE_COUNTERS,
    "long": _RULE_COUNTERS,
    # Shards were filtered at ingest; their reader counts only out-of-vocabulary ids.
    "parquet": frozenset(OUT_OF_VOCABULARY),
}


@dataclass(frozen=True)
class LoadReport:
    """The counters of one reader, named.

    Attributes:
      name: what was read, such as "train" or a file name; used as the heading of `format()`.
      log_format: the format read, a key of `FORMAT_COUNTERS`, or None to print every counter.
      lines_read: physical lines read, blank lines included.
      sessions_read: sessions found, well-formed or not.
      sessions_kept: sessions written as rows.
      sessions_without_clicks: sessions whose log records no click at all (kept unless
        `drop_sessions_without_clicks` is set). Read from Parquet shards, which keep only the
        shown results: rows without a click on a shown result.
      corrupt_inputs: gzip files that ended early or failed their checks, skipped under
        `on_error="skip"`.
      skipped_by_field: malformed sessions per field that failed (`"click"`, `"urls"`, ...),
        nonzero counts only.
      other: counters this class does not know, kept so that nothing is lost.
      The remaining attributes are the counters named in `SESSION_DROPS`, `CHANGES` and
      `OUT_OF_VOCABULARY`.
    """

    name: str = ""
    log_format: str | None = None
    lines_read: int = 0
    sessions_read: int = 0
    sessions_kept: int = 0
    sessions_skipped: int = 0
    sessions_without_results: int = 0
    sessions_dropped_few_results: int = 0
    sessions_dropped_without_clicks: int = 0
    sessions_dropped_rare_query: int = 0
    sessions_without_clicks: int = 0
    results_truncated: int = 0
    missing_results: int = 0
    pseudo_results: int = 0
    repeated_clicks: int = 0
    clicks_not_shown: int = 0
    clicks_before_query: int = 0
    extra_click_entries: int = 0
    invalid_position_keys: int = 0
    oov_queries: int = 0
    oov_documents: int = 0
    oov_pairs: int = 0
    corrupt_inputs: int = 0
    skipped_by_field: dict[str, int] = field(default_factory=dict)
    other: dict[str, int] = field(default_factory=dict)

    @classmethod
    def from_stats(cls, stats: Mapping[str, int], name: str = "", log_format: str | None = None) -> LoadReport:
        """Build a report from a reader's `stats` dict; counters missing from it are 0."""
        if log_format is not None and log_format not in FORMAT_COUNTERS:
            raise ValueError(f"unknown log format {log_format!r}; expected one of {', '.join(FORMAT_COUNTERS)}")
        known = {f.name for f in dataclasses.fields(cls)} - {"name", "log_format", "skipped_by_field", "other"}
        counters, skipped, other = {}, {}, {}
        for key, value in stats.items():
            if key in known:
                counters[key] = int(value)
            elif key.startswith(_SKIPPED_PREFIX):
                if value:
                    skipped[key.removeprefix(_SKIPPED_PREFIX)] = int(value)
            else:
                other[key] = int(value)
        return cls(name=name, log_format=log_format, skipped_by_field=skipped, other=other, **counters)

    @property
    def sessions_dropped(self) -> int:
        """Sessions read that produced no row, for any reason in `SESSION_DROPS`."""
        return sum(getattr(self, key) for key in SESSION_DROPS)

    def to_dict(self) -> dict:
        """Return the counters as a JSON-ready dict, with `sessions_dropped` added."""
        return {**dataclasses.asdict(self), "sessions_dropped": self.sessions_dropped}

    def format(self) -> str:
        """Render the report as plain text, one counter per line.

        Counters that apply to `log_format` are printed even when zero; the others only when not
        zero. Without a `log_format`, every counter is printed.
        """
        heading = f"{self.name}: " if self.name else ""
        kept_share = f" ({self.sessions_kept / self.sessions_read:.1%})" if self.sessions_read else ""
        source = "Parquet shards" if self.log_format == "parquet" else f"{self.lines_read:,} lines"
        lines = [f"{heading}{self.sessions_read:,} sessions read from {source}, {self.sessions_kept:,} kept{kept_share}"]
        width = len(f"{max(self._all_counts(), default=0):,}")

        def rows(title: str, descriptions: Mapping[str, str]) -> None:
            printed = {key: text for key, text in descriptions.items() if self._applies(key)}
            if not printed:
                return
            lines.append(f"  {title}")
            for key, description in printed.items():
                lines.append(f"    {getattr(self, key):>{width},}  {description}")
                if key == "sessions_skipped" and self.skipped_by_field:
                    fields = ", ".join(f"{name} {count:,}" for name, count in sorted(self.skipped_by_field.items()))
                    lines.append(f"    {'':>{width}}  by invalid field: {fields}")

        rows(f"sessions dropped ({self.sessions_dropped:,})", SESSION_DROPS)
        if self.log_format == "parquet":
            # Shards keep only the shown results, so a click on a result outside the list is gone.
            lines.append(f"  sessions without a click on a shown result: {self.sessions_without_clicks:,}")
        else:
            lines.append(f"  sessions without any logged click: {self.sessions_without_clicks:,}")
        rows("results and clicks changed", CHANGES)
        rows("out of vocabulary", OUT_OF_VOCABULARY)
        if self._applies("corrupt_inputs"):
            lines.append(f"  corrupt gzip inputs skipped: {self.corrupt_inputs:,}")
        for key, value in sorted(self.other.items()):
            lines.append(f"  {key}: {value:,}")
        if self.log_format == "parquet":
            lines.append("  the counters of parsing the raw log are in the ingest folder's load_report.json")
        return "\n".join(lines)

    def _applies(self, key: str) -> bool:
        """Return whether `format()` prints the counter `key`."""
        if self.log_format is None or getattr(self, key):
            return True
        return key in FORMAT_COUNTERS[self.log_format]

    def _all_counts(self) -> list[int]:
        keys = [*SESSION_DROPS, *CHANGES, *OUT_OF_VOCABULARY]
        return [getattr(self, key) for key in keys]
