//! One parsed search session (a query and the results shown for it) and the rules that decide
//! which results and sessions reach a batch.

use crate::error::Result;
use crate::stats::Stats;

/// A parser that yields the well-formed sessions of one input, in file order.
///
/// Under `on_error="skip"` a source drops malformed sessions itself and counts them in `stats`,
/// because where a malformed session ends depends on the format.
pub trait SessionSource: Send {
    /// Fills `session` with the next well-formed session and returns false at the end of the
    /// input, leaving `session` unspecified then.
    fn next_session(&mut self, session: &mut Session, stats: &mut Stats) -> Result<bool>;
}

/// One result of a session: a document shown at a position, clicked or not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionResult {
    /// Fingerprint of the document key.
    pub document_key: u64,
    /// Rank as displayed, 1-based. It can skip numbers where the log dropped a result.
    pub position: u32,
    pub click: bool,
}

/// Events within one session that the session rules count once the session is accepted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SessionEvents {
    pub missing_results: u64,
    pub pseudo_results: u64,
    pub repeated_clicks: u64,
    pub clicks_not_shown: u64,
    pub extra_click_entries: u64,
    pub invalid_position_keys: u64,
}

/// Key texts of a session, the bytes that its fingerprints were computed from (or, for a
/// composite key, a readable rendering of them). Parsers fill them only when
/// [`ParserConfig::keys`](crate::options::ParserConfig::keys) is set, so that a vocabulary can
/// store the text of each new id. The buffers are reused from session to session.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyTexts {
    /// Whether the parser filled the texts of this session.
    recorded: bool,
    query: Vec<u8>,
    /// Document key texts of the results, one after another.
    documents: Vec<u8>,
    /// End of each result's text in `documents`.
    document_ends: Vec<usize>,
}

impl KeyTexts {
    /// Empties the texts, keeping their allocation.
    pub fn clear(&mut self) {
        self.recorded = false;
        self.query.clear();
        self.documents.clear();
        self.document_ends.clear();
    }

    /// Sets the query key text and marks the session's texts as recorded.
    pub fn set_query(&mut self, text: &[u8]) {
        self.recorded = true;
        self.query.clear();
        self.query.extend_from_slice(text);
    }

    /// Appends the key text of the next result, made of `parts` joined by a TAB.
    pub fn push_document(&mut self, parts: &[&[u8]]) {
        for (index, part) in parts.iter().enumerate() {
            if index > 0 {
                self.documents.push(b'\t');
            }
            self.documents.extend_from_slice(part);
        }
        self.document_ends.push(self.documents.len());
    }

    /// Query key text; None unless the parser recorded texts.
    pub fn query(&self) -> Option<&[u8]> {
        self.recorded.then_some(self.query.as_slice())
    }

    /// Key text of result `index`; None unless the parser recorded texts.
    pub fn document(&self, index: usize) -> Option<&[u8]> {
        if !self.recorded {
            return None;
        }
        let end = *self.document_ends.get(index)?;
        let start = index
            .checked_sub(1)
            .map_or(0, |previous| self.document_ends[previous]);
        Some(&self.documents[start..end])
    }

    /// Keeps the texts of the first `results` results.
    fn truncate(&mut self, results: usize) {
        if results < self.document_ends.len() {
            self.document_ends.truncate(results);
            self.documents
                .truncate(self.document_ends.last().copied().unwrap_or(0));
        }
    }
}

/// A well-formed session as parsed, before the session rules apply.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Session {
    /// Fingerprint of the query key.
    pub query_key: u64,
    /// Results in the order the user saw them, with increasing positions.
    pub results: Vec<SessionResult>,
    /// Float values of the extra columns (Baidu behaviour signals), `[results, float columns]`
    /// row-major; empty when the reader has no float column.
    pub floats: Vec<f32>,
    /// Integer values of the extra columns (multimedia type, label), `[results, int columns]`
    /// row-major; empty when the reader has no integer column.
    pub ints: Vec<i32>,
    /// Dense features, `[results, features]` row-major; empty when the batch has no `features`
    /// column.
    pub features: Vec<f32>,
    /// Values of the int32 `[batch]` columns (the annotation frequency bucket), one per column.
    pub session_ints: Vec<i32>,
    /// Whether the log records any click for this session, including clicks on results that a
    /// parser or a rule drops.
    pub has_logged_click: bool,
    pub events: SessionEvents,
    /// Key texts of the query and results; empty unless the parser config sets `keys`.
    pub keys: KeyTexts,
}

impl Session {
    /// Empties the session for reuse, keeping its allocation.
    pub fn clear(&mut self) {
        self.query_key = 0;
        self.results.clear();
        self.floats.clear();
        self.ints.clear();
        self.features.clear();
        self.session_ints.clear();
        self.has_logged_click = false;
        self.events = SessionEvents::default();
        self.keys.clear();
    }
}

/// Rules that turn a parsed session into a row, or drop it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionRules {
    /// Number of positions P of a row; results at a greater position are dropped.
    pub positions: usize,
    /// Drop sessions whose log records no click instead of keeping them.
    pub drop_sessions_without_clicks: bool,
    /// Drop sessions with fewer results than this after truncation; at least 1.
    pub min_results: usize,
}

impl SessionRules {
    /// Applies the rules to a well-formed session, counts what they drop, and returns whether the
    /// session becomes a row.
    pub fn apply(&self, session: &mut Session, stats: &mut Stats) -> bool {
        stats.sessions_read += 1;
        stats.missing_results += session.events.missing_results;
        stats.pseudo_results += session.events.pseudo_results;
        stats.repeated_clicks += session.events.repeated_clicks;
        stats.clicks_not_shown += session.events.clicks_not_shown;
        stats.extra_click_entries += session.events.extra_click_entries;
        stats.invalid_position_keys += session.events.invalid_position_keys;

        // Truncate to P positions. Positions increase within a session, so the results at most
        // P form a prefix of at most P results. The `min` only guards against a parser that
        // breaks that promise.
        let before = session.results.len();
        let kept = session
            .results
            .partition_point(|result| result.position as usize <= self.positions)
            .min(self.positions);
        truncate_session(session, kept);
        stats.results_truncated += (before - kept) as u64;

        if kept == 0 {
            stats.sessions_without_results += 1;
            return false;
        }
        if kept < self.min_results {
            stats.sessions_dropped_few_results += 1;
            return false;
        }

        if !session.has_logged_click {
            stats.sessions_without_clicks += 1;
            if self.drop_sessions_without_clicks {
                stats.sessions_dropped_without_clicks += 1;
                return false;
            }
        }
        true
    }
}

/// Keeps the first `kept` results of a session with their extra values.
fn truncate_session(session: &mut Session, kept: usize) {
    let results = session.results.len();
    if kept >= results {
        return;
    }
    // Each result has the same number of values, so the widths follow from the lengths.
    let float_width = session.floats.len() / results;
    let int_width = session.ints.len() / results;
    let feature_width = session.features.len() / results;
    session.results.truncate(kept);
    session.floats.truncate(kept * float_width);
    session.ints.truncate(kept * int_width);
    session.features.truncate(kept * feature_width);
    session.keys.truncate(kept);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(document_key: u64, position: u32, click: bool) -> SessionResult {
        SessionResult {
            document_key,
            position,
            click,
        }
    }

    fn rules(positions: usize, drop_sessions_without_clicks: bool) -> SessionRules {
        SessionRules {
            positions,
            drop_sessions_without_clicks,
            min_results: 1,
        }
    }

    #[test]
    fn truncation_drops_positions_above_p() {
        let mut session = Session {
            results: vec![result(1, 1, false), result(2, 3, true), result(3, 4, true)],
            has_logged_click: true,
            ..Session::default()
        };
        let mut stats = Stats::default();
        assert!(rules(3, false).apply(&mut session, &mut stats));
        assert_eq!(
            session.results,
            vec![result(1, 1, false), result(2, 3, true)]
        );
        assert_eq!(stats.results_truncated, 1);
        assert_eq!(stats.sessions_read, 1);
    }

    #[test]
    fn session_without_results_dropped() {
        let mut session = Session {
            results: vec![result(1, 5, true)],
            has_logged_click: true,
            ..Session::default()
        };
        let mut stats = Stats::default();
        assert!(!rules(2, false).apply(&mut session, &mut stats));
        assert_eq!(stats.sessions_without_results, 1);
        assert_eq!(stats.results_truncated, 1);
        assert_eq!(stats.sessions_without_clicks, 0);
    }

    #[test]
    fn sessions_without_clicks_kept_or_dropped() {
        let parsed = Session {
            results: vec![result(1, 1, false)],
            ..Session::default()
        };

        let mut stats = Stats::default();
        assert!(rules(10, false).apply(&mut parsed.clone(), &mut stats));
        assert_eq!(stats.sessions_without_clicks, 1);
        assert_eq!(stats.sessions_dropped_without_clicks, 0);

        let mut stats = Stats::default();
        assert!(!rules(10, true).apply(&mut parsed.clone(), &mut stats));
        assert_eq!(stats.sessions_without_clicks, 1);
        assert_eq!(stats.sessions_dropped_without_clicks, 1);
    }

    #[test]
    fn logged_click_below_p_still_counts() {
        // The only click is at position 3, beyond P = 2: the row has no click, but the log
        // records one, so the session is not "without clicks" and is kept.
        let mut session = Session {
            results: vec![result(1, 1, false), result(2, 2, false), result(3, 3, true)],
            has_logged_click: true,
            ..Session::default()
        };
        let mut stats = Stats::default();
        assert!(rules(2, true).apply(&mut session, &mut stats));
        assert_eq!(stats.sessions_without_clicks, 0);
        assert!(session.results.iter().all(|r| !r.click));
    }

    #[test]
    fn events_added_to_stats() {
        let mut session = Session {
            results: vec![result(1, 2, true)],
            has_logged_click: true,
            events: SessionEvents {
                missing_results: 1,
                pseudo_results: 2,
                repeated_clicks: 3,
                clicks_not_shown: 4,
                extra_click_entries: 5,
                invalid_position_keys: 6,
            },
            ..Session::default()
        };
        let mut stats = Stats::default();
        assert!(rules(10, false).apply(&mut session, &mut stats));
        assert_eq!(stats.missing_results, 1);
        assert_eq!(stats.pseudo_results, 2);
        assert_eq!(stats.repeated_clicks, 3);
        assert_eq!(stats.clicks_not_shown, 4);
        assert_eq!(stats.extra_click_entries, 5);
        assert_eq!(stats.invalid_position_keys, 6);
    }

    #[test]
    fn truncation_keeps_extra_values_aligned() {
        let mut session = Session {
            results: vec![result(1, 1, false), result(2, 2, true), result(3, 3, true)],
            floats: vec![1.0, 10.0, 2.0, 20.0, 3.0, 30.0],
            ints: vec![1, 2, 3],
            features: vec![0.1, 0.2, 0.3, 1.1, 1.2, 1.3, 2.1, 2.2, 2.3],
            session_ints: vec![7],
            has_logged_click: true,
            ..Session::default()
        };
        let mut stats = Stats::default();
        assert!(rules(2, false).apply(&mut session, &mut stats));
        assert_eq!(session.floats, vec![1.0, 10.0, 2.0, 20.0]);
        assert_eq!(session.ints, vec![1, 2]);
        assert_eq!(session.features, vec![0.1, 0.2, 0.3, 1.1, 1.2, 1.3]);
        assert_eq!(session.session_ints, vec![7]);
    }

    #[test]
    fn truncation_keeps_key_texts_aligned() {
        let mut session = Session {
            results: vec![result(1, 1, false), result(2, 2, true), result(3, 3, true)],
            has_logged_click: true,
            ..Session::default()
        };
        session.keys.set_query(b"q");
        session.keys.push_document(&[b"d1"]);
        session.keys.push_document(&[b"t2", b"a2"]);
        session.keys.push_document(&[b"d3"]);
        assert!(rules(2, false).apply(&mut session, &mut Stats::default()));
        assert_eq!(session.keys.query(), Some(&b"q"[..]));
        assert_eq!(session.keys.document(0), Some(&b"d1"[..]));
        assert_eq!(session.keys.document(1), Some(&b"t2\ta2"[..]));
        assert_eq!(session.keys.document(2), None);
        session.clear();
        assert_eq!(session.keys.query(), None);
        assert_eq!(session.keys.document(0), None);
    }

    #[test]
    fn min_results_drops_short_sessions() {
        let short = Session {
            results: vec![result(1, 1, true), result(2, 2, false)],
            has_logged_click: true,
            ..Session::default()
        };
        let three = SessionRules {
            min_results: 3,
            ..rules(10, false)
        };
        let mut stats = Stats::default();
        assert!(!three.apply(&mut short.clone(), &mut stats));
        assert_eq!(stats.sessions_dropped_few_results, 1);
        assert_eq!(stats.sessions_without_results, 0);

        // Truncation comes first: a session of three results cut to P = 2 is too short.
        let mut long = short.clone();
        long.results.push(result(3, 3, false));
        let mut stats = Stats::default();
        let truncated = SessionRules {
            min_results: 3,
            ..rules(2, false)
        };
        assert!(!truncated.apply(&mut long, &mut stats));
        assert_eq!(stats.sessions_dropped_few_results, 1);
        assert_eq!(stats.results_truncated, 1);
    }
}
