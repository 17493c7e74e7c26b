//! Sessions from the WSCD sample format of PyClick's examples (`trainSample`, `testSample`).
//!
//! Each physical line contains the sessions of one query, separated by `;`:
//!
//! ```text
//! QUERYKEY<TAB>url1,url2,...,urlN : click1 , click2 , ...; QUERYKEY<TAB>...
//! ```
//!
//! The query key (for example `98435_1`, query id and region) keys the query, and each URL id
//! keys a document. Clicks are URL ids in click order. A repeated click on a result counts once,
//! a click on a URL not in the list is ignored, and when a URL appears twice in a list its click
//! goes to the first occurrence. Whitespace around every separator is trimmed, and empty pieces
//! (a trailing `;`, blank lines) are skipped. Lines can be megabytes long, so a line is parsed one
//! session at a time and its sessions can span several batches.

use std::ops::Range;

use memchr::{memchr, memchr_iter};

use crate::error::{Field, FieldError, Rejector, Result};
use crate::fields::is_ascii_id;
use crate::input::LineReader;
use crate::session::{Session, SessionResult, SessionSource};
use crate::stats::Stats;
use crate::vocabulary::{document_fingerprint, query_fingerprint};

/// Reads WSCD sessions from one file.
pub struct WscdParser {
    lines: LineReader,
    rejector: Rejector,
    /// Start of the next unread piece in the current line; None once the line is used up.
    cursor: Option<usize>,
    /// Byte ranges of the current session's URLs within its piece.
    url_ranges: Vec<Range<usize>>,
    /// Whether sessions carry their key texts.
    keys: bool,
}

impl WscdParser {
    pub fn new(lines: LineReader, rejector: Rejector) -> Self {
        WscdParser {
            lines,
            rejector,
            cursor: None,
            url_ranges: Vec::new(),
            keys: false,
        }
    }

    /// Makes the parser copy the query key and URL ids of each session into
    /// [`Session::keys`] when `keys` is true.
    pub fn with_keys(mut self, keys: bool) -> Self {
        self.keys = keys;
        self
    }

    /// Counts a malformed session under `skip`, or returns the error under `strict`.
    fn reject(&mut self, error: FieldError, stats: &mut Stats) -> Result<()> {
        let field = error.field;
        self.rejector
            .reject(error, self.lines.path(), self.lines.lineno())?;
        stats.count_skipped(field);
        Ok(())
    }
}

impl SessionSource for WscdParser {
    fn next_session(&mut self, session: &mut Session, stats: &mut Stats) -> Result<bool> {
        loop {
            let Some(start) = self.cursor else {
                if !self.lines.advance()? {
                    return Ok(false);
                }
                stats.lines_read += 1;
                self.cursor = Some(0);
                continue;
            };

            // Cut the next `;`-separated piece and move the cursor past it.
            let line = self.lines.line();
            let rest = line.get(start..).unwrap_or_default();
            let piece_end = memchr(b';', rest).map_or(line.len(), |offset| start + offset);
            self.cursor = (piece_end < line.len()).then_some(piece_end + 1);

            let piece = line.get(start..piece_end).unwrap_or_default().trim_ascii();
            if piece.is_empty() {
                continue;
            }
            match parse_session(piece, &mut self.url_ranges, session, self.keys) {
                Ok(()) => return Ok(true),
                Err(error) => self.reject(error, stats)?,
            }
        }
    }
}

/// Parses one trimmed, non-empty piece `QUERYKEY<TAB>urls : clicks` into `session`, with its
/// key texts if `keys` is true.
fn parse_session(
    piece: &[u8],
    url_ranges: &mut Vec<Range<usize>>,
    session: &mut Session,
    keys: bool,
) -> Result<(), FieldError> {
    let Some(tab) = memchr(b'\t', piece) else {
        return Err(FieldError::new(
            Field::QueryKey,
            piece,
            "a query key, a TAB, then `url,... : click,...`",
        ));
    };
    let query_key = piece[..tab].trim_ascii();
    if !is_ascii_id(query_key) {
        return Err(FieldError::new(
            Field::QueryKey,
            piece,
            "a non-empty query key of printable ASCII before the TAB",
        ));
    }

    let body = &piece[tab + 1..];
    let Some(colon) = memchr(b':', body) else {
        return Err(FieldError::new(
            Field::Urls,
            body,
            "`url,... : click,...`, but the `:` separator is missing",
        ));
    };
    let urls = &body[..colon];
    let clicks = &body[colon + 1..];
    if memchr(b':', clicks).is_some() {
        return Err(FieldError::new(
            Field::Clicks,
            clicks,
            "one `:` per session, between the url list and the click list",
        ));
    }

    // URLs: each becomes a result at the next position.
    url_ranges.clear();
    if urls.trim_ascii().is_empty() {
        return Err(FieldError::new(Field::Urls, urls, "at least one url id"));
    }
    for range in trimmed_items(urls) {
        if !is_ascii_id(&urls[range.clone()]) {
            return Err(FieldError::new(
                Field::Urls,
                urls,
                "a url id of printable ASCII between every two commas",
            ));
        }
        url_ranges.push(range);
    }

    session.clear();
    session.query_key = query_fingerprint(query_key);
    for (index, range) in url_ranges.iter().enumerate() {
        session.results.push(SessionResult {
            document_key: document_fingerprint(&urls[range.clone()]),
            position: u32::try_from(index + 1).unwrap_or(u32::MAX),
            click: false,
        });
    }
    if keys {
        session.keys.set_query(query_key);
        for range in url_ranges.iter() {
            session.keys.push_document(&[&urls[range.clone()]]);
        }
    }

    // Clicks: mark the first result with the clicked URL id.
    if clicks.trim_ascii().is_empty() {
        return Ok(());
    }
    for range in trimmed_items(clicks) {
        let clicked = &clicks[range.clone()];
        if !is_ascii_id(clicked) {
            return Err(FieldError::new(
                Field::Clicks,
                clicks,
                "a url id of printable ASCII between every two commas",
            ));
        }
        session.has_logged_click = true;
        let shown = url_ranges
            .iter()
            .position(|url| &urls[url.clone()] == clicked);
        match shown.and_then(|slot| session.results.get_mut(slot)) {
            Some(result) if result.click => session.events.repeated_clicks += 1,
            Some(result) => result.click = true,
            None => session.events.clicks_not_shown += 1,
        }
    }
    Ok(())
}

/// Byte ranges of the comma-separated items of `list`, each trimmed of ASCII whitespace.
fn trimmed_items(list: &[u8]) -> impl Iterator<Item = Range<usize>> + '_ {
    let ends = memchr_iter(b',', list).chain(std::iter::once(list.len()));
    let mut start = 0;
    ends.map(move |end| {
        let item = &list[start..end];
        let leading = item.len() - item.trim_ascii_start().len();
        let range = start + leading..start + leading + item.trim_ascii().len();
        start = end + 1;
        range
    })
}

#[cfg(test)]
#[path = "wscd_tests.rs"]
mod tests;
