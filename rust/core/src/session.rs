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
}

/// A well-formed session as parsed, before the session rules apply.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Session {
    /// Fingerprint of the query key.
    pub query_key: u64,
    /// Results in the order the user saw them, with increasing positions.
    pub results: Vec<SessionResult>,
    /// Whether the log records any click for this session, including clicks on results that a
    /// parser or a rule drops.
    pub has_logged_click: bool,
    pub events: SessionEvents,
}

impl Session {
    /// Empties the session for reuse, keeping its allocation.
    pub fn clear(&mut self) {
        self.query_key = 0;
        self.results.clear();
        self.has_logged_click = false;
        self.events = SessionEvents::default();
    }
}

/// Rules that turn a parsed session into a row, or drop it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionRules {
    /// Number of positions P of a row; results at a greater position are dropped.
    pub positions: usize,
    /// Drop sessions whose log records no click instead of keeping them.
    pub drop_sessions_without_clicks: bool,
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

        // Truncate to P positions. Positions increase within a session, so at most P results
        // remain; the second cut only guards against a parser that breaks that promise.
        let before = session.results.len();
        session
            .results
            .retain(|result| result.position as usize <= self.positions);
        session.results.truncate(self.positions);
        stats.results_truncated += (before - session.results.len()) as u64;

        if session.results.is_empty() {
            stats.sessions_without_results += 1;
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
            },
            ..Session::default()
        };
        let mut stats = Stats::default();
        assert!(rules(10, false).apply(&mut session, &mut stats));
        assert_eq!(stats.missing_results, 1);
        assert_eq!(stats.pseudo_results, 2);
        assert_eq!(stats.repeated_clicks, 3);
        assert_eq!(stats.clicks_not_shown, 4);
    }
}
