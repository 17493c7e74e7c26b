//! Splitting of TAB-separated lines and checks of the ids, numbers and token lists in their fields.
//!
//! Every check takes raw bytes, so a line with invalid UTF-8 or stray control bytes fails a check
//! and becomes a parse error of its field instead of reaching a `str` conversion.

/// Splits `line` on TAB into `fields` and returns the number of fields. The count can exceed the
/// length of `fields`, and fields beyond it are counted but not stored.
///
/// Click-log lines have many short fields, for which a `memchr` call per TAB costs more than
/// the search itself, so the line is scanned eight bytes at a time in one pass instead. Once
/// `fields` is full, the TABs of a word are only counted.
pub fn split_fields<'a>(line: &'a [u8], fields: &mut [&'a [u8]]) -> usize {
    let mut splitter = FieldSplitter {
        line,
        fields,
        count: 0,
        start: 0,
    };
    let mut words = line.chunks_exact(8);
    let mut offset = 0;
    for word in &mut words {
        let mut bytes = [0; 8];
        bytes.copy_from_slice(word);
        let mut tabs = tab_bytes(u64::from_le_bytes(bytes));
        if splitter.count >= splitter.fields.len() {
            splitter.count += tabs.count_ones() as usize;
            offset += 8;
            continue;
        }
        while tabs != 0 {
            splitter.end_field(offset + (tabs.trailing_zeros() / 8) as usize);
            tabs &= tabs - 1;
        }
        offset += 8;
    }
    for (index, &byte) in words.remainder().iter().enumerate() {
        if byte == b'\t' {
            splitter.end_field(offset + index);
        }
    }
    splitter.end_field(line.len());
    splitter.count
}

/// Marks each TAB byte of a little-endian word with its high bit, and clears every other bit.
/// The sum cannot carry from one byte into the next, so every mark is exact.
fn tab_bytes(word: u64) -> u64 {
    const LOW_SEVEN: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    const TABS: u64 = 0x0909_0909_0909_0909;
    let zero_where_tab = word ^ TABS;
    // The high bit of a byte of `nonzero` is set where the byte of `zero_where_tab` is not 0.
    let nonzero = ((zero_where_tab & LOW_SEVEN) + LOW_SEVEN) | zero_where_tab;
    !(nonzero | LOW_SEVEN)
}

/// Fields of a line found so far by [`split_fields`].
struct FieldSplitter<'a, 'b> {
    line: &'a [u8],
    fields: &'b mut [&'a [u8]],
    count: usize,
    start: usize,
}

impl FieldSplitter<'_, '_> {
    /// Ends the current field just before byte `end`, a TAB or the end of the line.
    fn end_field(&mut self, end: usize) {
        if let Some(slot) = self.fields.get_mut(self.count) {
            *slot = self.line.get(self.start..end).unwrap_or_default();
        }
        self.start = end + 1;
        self.count += 1;
    }
}

/// Parses unsigned decimal digits; None if empty, not all digits, or above `u64::MAX`.
pub fn parse_u64(text: &[u8]) -> Option<u64> {
    if text.is_empty() {
        return None;
    }
    text.iter().try_fold(0u64, |value, &byte| {
        let digit = u64::from(char::from(byte).to_digit(10)?);
        value.checked_mul(10)?.checked_add(digit)
    })
}

/// Parses unsigned decimal digits; None if empty, not all digits, or above `u32::MAX`.
pub fn parse_u32(text: &[u8]) -> Option<u32> {
    parse_u64(text).and_then(|value| u32::try_from(value).ok())
}

/// Parses a finite decimal number such as `3`, `-0.5` or `1.5e3`. Rejects `inf`, `nan`, hex and
/// values that overflow f32.
pub fn parse_f32(text: &[u8]) -> Option<f32> {
    let numeric = |byte: &u8| byte.is_ascii_digit() || b"+-.eE".contains(byte);
    if !text.iter().any(u8::is_ascii_digit) || !text.iter().all(numeric) {
        return None;
    }
    let value: f32 = std::str::from_utf8(text).ok()?.parse().ok()?;
    value.is_finite().then_some(value)
}

/// Returns whether `text` is an id of printable ASCII characters without spaces (URL ids, MD5s,
/// keys).
pub fn is_ascii_id(text: &[u8]) -> bool {
    !text.is_empty() && text.iter().all(u8::is_ascii_graphic)
}

/// Returns whether `text` is a Baidu token list: printable ASCII and the token separator 0x01.
/// Empty lists and empty tokens are allowed, since the dataset has them.
pub fn is_token_list(text: &[u8]) -> bool {
    text.iter()
        .all(|&byte| byte == 0x01 || (0x20..=0x7e).contains(&byte))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_counts_fields_beyond_slots() {
        let mut fields: [&[u8]; 2] = [&[]; 2];
        assert_eq!(split_fields(b"a\tb\t\tc", &mut fields), 4);
        assert_eq!(fields, [b"a".as_slice(), b"b".as_slice()]);
        assert_eq!(split_fields(b"", &mut fields), 1);
        assert_eq!(fields[0], b"");
    }

    #[test]
    fn split_matches_naive_split_at_every_offset() {
        // TABs at every offset of the eight-byte words and in the remainder, next to bytes one
        // apart from TAB and to bytes with the high bit set.
        let alphabet = [b'\t', b'\x08', b'\x0a', b'\x89', b'\xff', b'a', b'\x00'];
        for length in 0..40 {
            for seed in 0..50usize {
                let line: Vec<u8> = (0..length)
                    .map(|index| alphabet[(index * 7 + seed * 13 + index * index * seed) % 7])
                    .collect();
                let expected: Vec<&[u8]> = line.split(|&byte| byte == b'\t').collect();
                let mut fields: [&[u8]; 64] = [&[]; 64];
                let count = split_fields(&line, &mut fields);
                assert_eq!(count, expected.len(), "{line:?}");
                assert_eq!(&fields[..count], expected.as_slice(), "{line:?}");
                // With fewer slots than fields, the first fields and the count stay the same.
                let mut few: [&[u8]; 3] = [&[]; 3];
                assert_eq!(split_fields(&line, &mut few), expected.len(), "{line:?}");
                let stored = expected.len().min(3);
                assert_eq!(&few[..stored], &expected[..stored], "{line:?}");
            }
        }
    }

    #[test]
    fn integer_parsers_reject_overflow() {
        assert_eq!(parse_u32(b"4294967295"), Some(u32::MAX));
        assert_eq!(parse_u32(b"4294967296"), None);
        assert_eq!(parse_u64(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_u64(b"18446744073709551616"), None);
        assert_eq!(parse_u64(b""), None);
        assert_eq!(parse_u64(b"-1"), None);
        assert_eq!(parse_u64(b"1.0"), None);
        assert_eq!(parse_u64("１".as_bytes()), None);
    }

    #[test]
    fn float_parser_accepts_decimals_only() {
        assert_eq!(parse_f32(b"3.25"), Some(3.25));
        assert_eq!(parse_f32(b"-0.5"), Some(-0.5));
        assert_eq!(parse_f32(b"1e3"), Some(1000.0));
        assert_eq!(parse_f32(b"7"), Some(7.0));
        for bad in [
            b"".as_slice(),
            b"-",
            b"nan",
            b"inf",
            b"1e99",
            b"0x10",
            b"1,5",
            b"e",
            b"1.2.3",
            b" 1",
        ] {
            assert_eq!(parse_f32(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn id_and_token_checks() {
        assert!(is_ascii_id(b"0123abcdef"));
        assert!(!is_ascii_id(b""));
        assert!(!is_ascii_id(b"a b"));
        assert!(!is_ascii_id(b"\xff"));
        assert!(is_token_list(b"101\x01102"));
        assert!(is_token_list(b""));
        assert!(is_token_list(b"-"));
        assert!(!is_token_list(b"101\x02"));
        assert!(!is_token_list("é".as_bytes()));
    }
}
