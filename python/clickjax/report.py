"""Load reports of the click-log readers: sessions kept and dropped, results and clicks changed.

Every reader counts each decision it takes in `reader.stats` (also kept as `ClickLog.stats` and in the
`reader_stats` of a run's `metrics.json`). `LoadReport` gives those counters names and renders them as
the text that `clickjax train` prints for each input:

    log = ClickLog.read("wscd", ["trainSample"], vocabulary)
    print(LoadReport.from_stats(log.stats, name="train").format())

Sessions add up: `sessions_read == sessions_kept + sessions_dropped`, where `sessions_dropped` sums the
five reasons in `SESSION_DROPS`. Sessions without any logged click are kept unless
`drop_sessions_without_clicks` is set, so they appear apart from the drops.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["CHANGES", "OUT_OF_VOCABULARY", "SESSION_DROPS", "LoadReport"]

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


@dataclass(frozen=True)
class LoadReport:
    """The counters of one reader, named.

    Attributes:
      name: what was read, such as "train" or a file name; used as the heading of `format()`.
      lines_read: physical lines read, blank lines included.
      sessions_read: sessions found, well-formed or not.
      sessions_kept: sessions written as rows.
      sessions_without_clicks: sessions whose log records no click at all (kept unless
        `drop_sessions_without_clicks` is set).
      corrupt_inputs: gzip files that ended early or failed their checks, skipped under
        `on_error="skip"`.
      skipped_by_field: malformed sessions per field that failed (`"click"`, `"urls"`, ...),
        nonzero counts only.
      other: counters this class does not know, kept so that nothing is lost.
      The remaining attributes are the counters named in `SESSION_DROPS`, `CHANGES` and
      `OUT_OF_VOCABULARY`.
    """

    name: str = ""
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
    def from_stats(cls, stats: Mapping[str, int], name: str = "") -> LoadReport:
        """Build a report from a reader's `stats` dict; counters missing from it are 0."""
        known = {f.name for f in dataclasses.fields(cls)} - {"name", "skipped_by_field", "other"}
        counters, skipped, other = {}, {}, {}
        for key, value in stats.items():
            if key in known:
                counters[key] = int(value)
            elif key.startswith(_SKIPPED_PREFIX):
                if value:
                    skipped[key.removeprefix(_SKIPPED_PREFIX)] = int(value)
            else:
                other[key] = int(value)
        return cls(name=name, skipped_by_field=skipped, other=other, **counters)

    @property
    def sessions_dropped(self) -> int:
        """Sessions read that produced no row, for any reason in `SESSION_DROPS`."""
        return sum(getattr(self, key) for key in SESSION_DROPS)

    def to_dict(self) -> dict:
        """Return the counters as a JSON-ready dict, with `sessions_dropped` added."""
        return {**dataclasses.asdict(self), "sessions_dropped": self.sessions_dropped}

    def format(self) -> str:
        """Render the report as plain text, one counter per line, zeros included."""
        heading = f"{self.name}: " if self.name else ""
        kept_share = f" ({self.sessions_kept / self.sessions_read:.1%})" if self.sessions_read else ""
        lines = [
            f"{heading}{self.sessions_read:,} sessions read from {self.lines_read:,} lines, "
            f"{self.sessions_kept:,} kept{kept_share}"
        ]
        width = len(f"{max(self._all_counts(), default=0):,}")

        def rows(title: str, descriptions: Mapping[str, str]) -> None:
            lines.append(f"  {title}")
            for key, description in descriptions.items():
                lines.append(f"    {getattr(self, key):>{width},}  {description}")
                if key == "sessions_skipped" and self.skipped_by_field:
                    fields = ", ".join(f"{name} {count:,}" for name, count in sorted(self.skipped_by_field.items()))
                    lines.append(f"    {'':>{width}}  by invalid field: {fields}")

        rows(f"sessions dropped ({self.sessions_dropped:,})", SESSION_DROPS)
        lines.append(f"  sessions without any logged click: {self.sessions_without_clicks:,}")
        rows("results and clicks changed", CHANGES)
        rows("out of vocabulary", OUT_OF_VOCABULARY)
        lines.append(f"  corrupt gzip inputs skipped: {self.corrupt_inputs:,}")
        for key, value in sorted(self.other.items()):
            lines.append(f"  {key}: {value:,}")
        return "\n".join(lines)

    def _all_counts(self) -> list[int]:
        keys = [*SESSION_DROPS, *CHANGES, *OUT_OF_VOCABULARY]
        return [getattr(self, key) for key in keys]
