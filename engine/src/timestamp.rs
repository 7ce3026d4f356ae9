//! RFC 3339 timestamps exactly as ASL accepts them, and formatting of simulated time.
//!
//! Date libraries accept shapes that ASL rejects (a space instead of `T`, lowercase `t`/`z`,
//! missing seconds, no offset), so the shape is checked by hand before the calendar check.
//! Pure: parsing and formatting only; "now" always comes from the caller.

/// Parses `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)` into nanoseconds since the epoch.
pub fn parse(s: &str) -> Option<i128> {
    if !has_rfc3339_shape(s) {
        return None;
    }
    let ts: jiff::Timestamp = s.parse().ok()?;
    Some(ts.as_nanosecond())
}

/// True when `s` has the RFC 3339 shape ASL requires (not checking calendar validity).
pub fn has_rfc3339_shape(s: &str) -> bool {
    let b = s.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| r.clone().all(|i| b.get(i).is_some_and(u8::is_ascii_digit));
    if b.len() < 20
        || !digits(0..4)
        || b[4] != b'-'
        || !digits(5..7)
        || b[7] != b'-'
        || !digits(8..10)
        || b[10] != b'T'
        || !digits(11..13)
        || b[13] != b':'
        || !digits(14..16)
        || b[16] != b':'
        || !digits(17..19)
    {
        return false;
    }
    let mut i = 19;
    if b[i] == b'.' {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return false;
        }
    }
    match b.get(i) {
        Some(b'Z') => i + 1 == b.len(),
        Some(b'+') | Some(b'-') => {
            i + 6 == b.len() && digits(i + 1..i + 3) && b[i + 3] == b':' && digits(i + 4..i + 6)
        }
        _ => false,
    }
}

/// Formats epoch milliseconds the way AWS renders context-object times:
/// `2024-03-17T11:11:13.123Z`.
pub fn format_millis(ms: i64) -> String {
    match jiff::Timestamp::from_millisecond(ms) {
        Ok(ts) => ts.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
        Err(_) => "1970-01-01T00:00:00.000Z".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        assert!(parse("2016-03-14T01:59:00Z").is_some());
        assert!(parse("2016-03-14T01:59:00.123+02:00").is_some());
        assert!(parse("2016-03-14 01:59:00Z").is_none());
        assert!(parse("2016-03-14t01:59:00z").is_none());
        assert!(parse("2016-03-14T01:59Z").is_none());
        assert!(parse("2016-13-05T21:29:29Z").is_none());
        assert!(parse("2016-12-05T21:29:29").is_none());
        assert_eq!(format_millis(0), "1970-01-01T00:00:00.000Z");
    }
}
