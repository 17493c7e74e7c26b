//! Counters of what a reader read, kept, dropped and skipped, so that every dropped session or
//! result is accounted for.
//!
//! For every reader, `sessions_read` equals `sessions_kept + sessions_skipped +
//! sessions_without_results + sessions_dropped_few_results + sessions_dropped_without_clicks +
//! sessions_dropped_rare_query`. Sessions cut short by a corrupt gzip file are not counted as
//! read. Yandex clicks that come before any query of their session belong to no session and are
//! counted in `clicks_before_query` only.

use crate::error::Field;

/// Counters of one reader, all starting at zero.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Physical lines read, blank lines included.
    pub lines_read: u64,
    /// Sessions found in the input, well-formed or not.
    pub sessions_read: u64,
    /// Sessions written to a batch as a row.
    pub sessions_kept: u64,
    /// Malformed sessions dropped under `on_error="skip"`.
    pub sessions_skipped: u64,
    /// Sessions whose log records no click at all, before any result is dropped. Clicks on URLs
    /// not shown and on results beyond the last position count as clicks here.
    pub sessions_without_clicks: u64,
    /// Sessions without clicks dropped because `drop_sessions_without_clicks` is set.
    pub sessions_dropped_without_clicks: u64,
    /// Sessions dropped because none of their results remained.
    pub sessions_without_results: u64,
    /// Sessions dropped because fewer than `min_results` (but at least one) of their results
    /// remained.
    pub sessions_dropped_few_results: u64,
    /// Sessions dropped because their query has fewer than `min_sessions_per_query` sessions
    /// that pass every other rule.
    pub sessions_dropped_rare_query: u64,
    /// Results dropped because their position is greater than the number of positions.
    pub results_truncated: u64,
    /// Baidu results dropped because their title marks missing content.
    pub missing_results: u64,
    /// Baidu "other people searched for" pseudo-results dropped.
    pub pseudo_results: u64,
    /// Extra clicks on a result already clicked in the same session (WSCD, Yandex), or click
    /// counts above 1 (ClickModels, each extra click counted).
    pub repeated_clicks: u64,
    /// Clicks on a URL that is not in the session's URL list (WSCD, Yandex).
    pub clicks_not_shown: u64,
    /// Yandex click lines before any query line of their session, dropped.
    pub clicks_before_query: u64,
    /// ClickModels click-list entries beyond the end of the URL list, ignored.
    pub extra_click_entries: u64,
    /// ClickModels extended-format keys that are not a position of the URL list, ignored.
    pub invalid_position_keys: u64,
    /// Rows whose query is not in a frozen vocabulary.
    pub oov_queries: u64,
    /// Results whose document is not in a frozen vocabulary.
    pub oov_documents: u64,
    /// Results whose query-document pair is not in a frozen vocabulary.
    pub oov_pairs: u64,
    /// Gzip files that ended early or failed their checks, under `on_error="skip"`.
    pub corrupt_inputs: u64,
    /// Malformed sessions skipped, by the field that was invalid, indexed by [`Field::index`].
    pub skipped_by_field: FieldCounts,
}

/// One counter per [`Field`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldCounts(pub [u64; Field::ALL.len()]);

impl Default for FieldCounts {
    fn default() -> Self {
        FieldCounts([0; Field::ALL.len()])
    }
}

impl FieldCounts {
    /// Returns the counter of one field.
    pub fn get(&self, field: Field) -> u64 {
        self.0[field.index()]
    }
}

impl Stats {
    /// Counts one malformed session dropped under `on_error="skip"`.
    pub fn count_skipped(&mut self, field: Field) {
        self.sessions_read += 1;
        self.sessions_skipped += 1;
        self.skipped_by_field.0[field.index()] += 1;
    }

    /// Adds every counter of `other` to this one.
    pub fn add(&mut self, other: &Stats) {
        let Stats {
            lines_read,
            sessions_read,
            sessions_kept,
            sessions_skipped,
            sessions_without_clicks,
            sessions_dropped_without_clicks,
            sessions_without_results,
            sessions_dropped_few_results,
            sessions_dropped_rare_query,
            results_truncated,
            missing_results,
            pseudo_results,
            repeated_clicks,
            clicks_not_shown,
            clicks_before_query,
            extra_click_entries,
            invalid_position_keys,
            oov_queries,
            oov_documents,
            oov_pairs,
            corrupt_inputs,
            skipped_by_field,
        } = other;
        self.lines_read += lines_read;
        self.sessions_read += sessions_read;
        self.sessions_kept += sessions_kept;
        self.sessions_skipped += sessions_skipped;
        self.sessions_without_clicks += sessions_without_clicks;
        self.sessions_dropped_without_clicks += sessions_dropped_without_clicks;
        self.sessions_without_results += sessions_without_results;
        self.sessions_dropped_few_results += sessions_dropped_few_results;
        self.sessions_dropped_rare_query += sessions_dropped_rare_query;
        self.results_truncated += results_truncated;
        self.missing_results += missing_results;
        self.pseudo_results += pseudo_results;
        self.repeated_clicks += repeated_clicks;
        self.clicks_not_shown += clicks_not_shown;
        self.clicks_before_query += clicks_before_query;
        self.extra_click_entries += extra_click_entries;
        self.invalid_position_keys += invalid_position_keys;
        self.oov_queries += oov_queries;
        self.oov_documents += oov_documents;
        self.oov_pairs += oov_pairs;
        self.corrupt_inputs += corrupt_inputs;
        for (total, count) in self.skipped_by_field.0.iter_mut().zip(skipped_by_field.0) {
            *total += count;
        }
    }

    /// Returns every counter with its name, in a fixed order.
    pub fn entries(&self) -> Vec<(&'static str, u64)> {
        let mut entries = vec![
            ("lines_read", self.lines_read),
            ("sessions_read", self.sessions_read),
            ("sessions_kept", self.sessions_kept),
            ("sessions_skipped", self.sessions_skipped),
            ("sessions_without_clicks", self.sessions_without_clicks),
            (
                "sessions_dropped_without_clicks",
                self.sessions_dropped_without_clicks,
            ),
            ("sessions_without_results", self.sessions_without_results),
            (
                "sessions_dropped_few_results",
                self.sessions_dropped_few_results,
            ),
            (
                "sessions_dropped_rare_query",
                self.sessions_dropped_rare_query,
            ),
            ("results_truncated", self.results_truncated),
            ("missing_results", self.missing_results),
            ("pseudo_results", self.pseudo_results),
            ("repeated_clicks", self.repeated_clicks),
            ("clicks_not_shown", self.clicks_not_shown),
            ("clicks_before_query", self.clicks_before_query),
            ("extra_click_entries", self.extra_click_entries),
            ("invalid_position_keys", self.invalid_position_keys),
            ("oov_queries", self.oov_queries),
            ("oov_documents", self.oov_documents),
            ("oov_pairs", self.oov_pairs),
            ("corrupt_inputs", self.corrupt_inputs),
        ];
        for field in Field::ALL {
            entries.push((field.skipped_counter(), self.skipped_by_field.get(field)));
        }
        entries
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_sums_every_counter() {
        let mut stats = Stats {
            lines_read: 3,
            ..Stats::default()
        };
        stats.count_skipped(Field::Click);
        let mut total = stats.clone();
        total.add(&stats);
        for ((name, value), (_, single)) in total.entries().into_iter().zip(stats.entries()) {
            assert_eq!(value, 2 * single, "{name}");
        }
        assert_eq!(total.lines_read, 6);
        assert_eq!(total.skipped_by_field.get(Field::Click), 2);
    }

    #[test]
    fn entries_name_every_counter_once() {
        let stats = Stats::default();
        let entries = stats.entries();
        let mut names: Vec<&str> = entries.iter().map(|(name, _)| *name).collect();
        assert_eq!(names.len(), 21 + Field::ALL.len());
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), 21 + Field::ALL.len());
    }

    #[test]
    fn skipped_session_counted_by_field() {
        let mut stats = Stats::default();
        stats.count_skipped(Field::Click);
        stats.count_skipped(Field::Click);
        stats.count_skipped(Field::Line);
        assert_eq!(stats.sessions_read, 3);
        assert_eq!(stats.sessions_skipped, 3);
        let entries = stats.entries();
        let count = |name: &str| entries.iter().find(|(key, _)| *key == name).unwrap().1;
        assert_eq!(count("skipped_click"), 2);
        assert_eq!(count("skipped_line"), 1);
        assert_eq!(count("skipped_pos"), 0);
    }
}
