//! RFC 3339 timestamps to and from nanoseconds since the Unix epoch, without a date crate.
//!
//! Parsing accepts `YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM)`, with `t`, `z`
//! or a space as RFC 3339 allows, any number of fraction digits (beyond nine they are
//! cut off), a leap second `:60` (which counts as the next second), and a bare date
//! `YYYY-MM-DD` as midnight UTC. A time without an offset is refused: its time zone is
//! unknown. Results must fit `i64` nanoseconds: 1677-09-21 to 2262-04-11.
#![deny(clippy::unwrap_used, clippy::indexing_slicing)]

use crate::error::QueryError;
use crate::lexer::truncate;

const NANOS_PER_SECOND: i128 = 1_000_000_000;
const SECONDS_PER_DAY: i64 = 86_400;

/// Parses an RFC 3339 timestamp into nanoseconds since the epoch.
pub fn parse_rfc3339(text: &str) -> Result<i64, QueryError> {
    let fail = |reason: &str| QueryError::Timestamp { text: truncate(text), reason: reason.to_string() };
    let mut cursor = Cursor { bytes: text.as_bytes(), index: 0 };
    let year = cursor.digits(4).ok_or_else(|| fail("expected a four-digit year"))?;
    cursor.expect(b'-').ok_or_else(|| fail("expected '-' after the year"))?;
    let month = cursor.digits(2).ok_or_else(|| fail("expected a two-digit month"))?;
    cursor.expect(b'-').ok_or_else(|| fail("expected '-' after the month"))?;
    let day = cursor.digits(2).ok_or_else(|| fail("expected a two-digit day"))?;
    if !(1..=12).contains(&month) {
        return Err(fail(&format!("month {month} is out of range")));
    }
    if day < 1 || day > days_in_month(year, month) {
        return Err(fail(&format!("day {day} is out of range for {year:04}-{month:02}")));
    }
    let days = days_from_civil(year, month, day);
    if cursor.at_end() {
        return to_nanos(days, 0, 0).ok_or_else(|| fail("out of range (1677-09-21 to 2262-04-11)"));
    }
    if !cursor.eat(|b| matches!(b, b'T' | b't' | b' ')) {
        return Err(fail("expected 'T' between the date and the time"));
    }
    let hour = cursor.digits(2).ok_or_else(|| fail("expected a two-digit hour"))?;
    cursor.expect(b':').ok_or_else(|| fail("expected ':' after the hour"))?;
    let minute = cursor.digits(2).ok_or_else(|| fail("expected two-digit minutes"))?;
    cursor.expect(b':').ok_or_else(|| fail("expected ':' and seconds after the minutes"))?;
    let second = cursor.digits(2).ok_or_else(|| fail("expected two-digit seconds"))?;
    if hour > 23 || minute > 59 || second > 60 {
        return Err(fail(&format!("time {hour:02}:{minute:02}:{second:02} is out of range")));
    }
    let mut fraction_nanos: i64 = 0;
    if cursor.eat(|b| b == b'.') {
        let mut digit_count = 0;
        while let Some(digit) = cursor.digit() {
            if digit_count < 9 {
                fraction_nanos = fraction_nanos * 10 + digit;
            }
            digit_count += 1;
        }
        if digit_count == 0 {
            return Err(fail("expected digits after the decimal point"));
        }
        for _ in digit_count..9 {
            fraction_nanos *= 10;
        }
    }
    let offset_seconds = if cursor.eat(|b| matches!(b, b'Z' | b'z')) {
        0
    } else if let Some(sign) = cursor.take(|b| matches!(b, b'+' | b'-')) {
        let offset_hour = cursor.digits(2).ok_or_else(|| fail("expected a two-digit offset hour"))?;
        cursor.expect(b':').ok_or_else(|| fail("expected ':' in the offset"))?;
        let offset_minute = cursor.digits(2).ok_or_else(|| fail("expected two-digit offset minutes"))?;
        if offset_hour > 23 || offset_minute > 59 {
            return Err(fail("the offset is out of range"));
        }
        let magnitude = offset_hour * 3600 + offset_minute * 60;
        if sign == b'-' {
            -magnitude
        } else {
            magnitude
        }
    } else if cursor.at_end() {
        return Err(fail("expected a time zone offset such as Z or +02:00"));
    } else {
        return Err(fail("expected a time zone offset such as Z or +02:00 after the time"));
    };
    if !cursor.at_end() {
        return Err(fail("unexpected text after the time zone offset"));
    }
    let seconds_of_day = hour * 3600 + minute * 60 + second - offset_seconds;
    to_nanos(days, seconds_of_day, fraction_nanos).ok_or_else(|| fail("out of range (1677-09-21 to 2262-04-11)"))
}

/// Formats nanoseconds since the epoch as RFC 3339 in UTC with all nine fraction
/// digits: `2026-11-26T13:00:00.000000000Z`. This is the JSON form of a timestamp.
pub fn format_rfc3339_nanos(nanos: i64) -> String {
    let (date_time, fraction) = split(nanos);
    format!("{date_time}.{fraction:09}Z")
}

/// Formats nanoseconds since the epoch as RFC 3339 in UTC with as few fraction digits
/// as are exact: `2026-11-26T13:00:00Z`, `2026-11-26T13:00:00.25Z`.
pub fn format_rfc3339(nanos: i64) -> String {
    let (date_time, fraction) = split(nanos);
    if fraction == 0 {
        return format!("{date_time}Z");
    }
    let digits = format!("{fraction:09}");
    format!("{date_time}.{}Z", digits.trim_end_matches('0'))
}

fn split(nanos: i64) -> (String, i64) {
    let seconds = nanos.div_euclid(1_000_000_000);
    let fraction = nanos.rem_euclid(1_000_000_000);
    let days = seconds.div_euclid(SECONDS_PER_DAY);
    let second_of_day = seconds.rem_euclid(SECONDS_PER_DAY);
    let (year, month, day) = civil_from_days(days);
    let text = format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        second_of_day / 3600,
        second_of_day / 60 % 60,
        second_of_day % 60
    );
    (text, fraction)
}

fn to_nanos(days: i64, seconds_of_day: i64, fraction_nanos: i64) -> Option<i64> {
    let seconds = i128::from(days) * i128::from(SECONDS_PER_DAY) + i128::from(seconds_of_day);
    let nanos = seconds.checked_mul(NANOS_PER_SECOND)?.checked_add(i128::from(fraction_nanos))?;
    i64::try_from(nanos).ok()
}

fn is_leap_year(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap_year(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year.rem_euclid(400);
    let month_from_march = if month > 2 { month - 3 } else { month + 9 };
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The date of a count of days since 1970-01-01: the inverse of `days_from_civil`.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let days = days + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 { month_from_march + 3 } else { month_from_march - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

struct Cursor<'a> {
    bytes: &'a [u8],
    index: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.index).copied()
    }

    fn at_end(&self) -> bool {
        self.index >= self.bytes.len()
    }

    fn take(&mut self, accept: impl Fn(u8) -> bool) -> Option<u8> {
        let byte = self.peek().filter(|&b| accept(b))?;
        self.index += 1;
        Some(byte)
    }

    fn eat(&mut self, accept: impl Fn(u8) -> bool) -> bool {
        self.take(accept).is_some()
    }

    fn expect(&mut self, wanted: u8) -> Option<()> {
        self.take(|b| b == wanted).map(|_| ())
    }

    fn digit(&mut self) -> Option<i64> {
        self.take(|b| b.is_ascii_digit()).map(|b| i64::from(b - b'0'))
    }

    fn digits(&mut self, count: usize) -> Option<i64> {
        let mut value = 0;
        for _ in 0..count {
            value = value * 10 + self.digit()?;
        }
        Some(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> i64 {
        match parse_rfc3339(text) {
            Ok(nanos) => nanos,
            Err(error) => panic!("{text}: {error}"),
        }
    }

    fn error(text: &str) -> String {
        match parse_rfc3339(text) {
            Ok(nanos) => panic!("{text} parsed as {nanos}"),
            Err(error) => error.to_string(),
        }
    }

    #[test]
    fn parses_utc_and_offsets() {
        assert_eq!(parse("1970-01-01T00:00:00Z"), 0);
        assert_eq!(parse("2026-11-26T13:00:00Z"), 1_795_698_000_000_000_000);
        assert_eq!(parse("2026-11-26T14:00:00+01:00"), 1_795_698_000_000_000_000);
        assert_eq!(parse("2026-11-26T08:30:00-04:30"), 1_795_698_000_000_000_000);
        assert_eq!(parse("2026-11-26t13:00:00z"), 1_795_698_000_000_000_000);
        assert_eq!(parse("2026-11-26 13:00:00Z"), 1_795_698_000_000_000_000);
        assert_eq!(parse("2026-11-26"), 1_795_651_200_000_000_000);
    }

    #[test]
    fn parses_fractions_to_the_nanosecond() {
        assert_eq!(parse("1970-01-01T00:00:00.5Z"), 500_000_000);
        assert_eq!(parse("1970-01-01T00:00:00.000000001Z"), 1);
        assert_eq!(parse("1970-01-01T00:00:00.1234567899Z"), 123_456_789);
        assert_eq!(parse("1969-12-31T23:59:59.999999999Z"), -1);
    }

    #[test]
    fn leap_days_and_leap_seconds() {
        assert_eq!(parse("2024-02-29T00:00:00Z"), parse("2024-03-01T00:00:00Z") - 86_400_000_000_000);
        assert_eq!(parse("2016-12-31T23:59:60Z"), parse("2017-01-01T00:00:00Z"));
        assert_eq!(
            error("2023-02-29T00:00:00Z"),
            "invalid RFC 3339 timestamp '2023-02-29T00:00:00Z': day 29 is out of range for 2023-02"
        );
        assert_eq!(error("2100-02-29"), "invalid RFC 3339 timestamp '2100-02-29': day 29 is out of range for 2100-02");
    }

    #[test]
    fn range_limits() {
        assert_eq!(parse("2262-04-11T23:47:16.854775807Z"), i64::MAX);
        assert_eq!(parse("1677-09-21T00:12:43.145224192Z"), i64::MIN);
        assert_eq!(
            error("2262-04-11T23:47:16.854775808Z"),
            "invalid RFC 3339 timestamp '2262-04-11T23:47:16.854775808Z': out of range (1677-09-21 to 2262-04-11)"
        );
        assert_eq!(
            error("9999-12-31"),
            "invalid RFC 3339 timestamp '9999-12-31': out of range (1677-09-21 to 2262-04-11)"
        );
    }

    #[test]
    fn every_error_path() {
        let cases = [
            ("", "expected a four-digit year"),
            ("26-01-01", "expected a four-digit year"),
            ("2026/01/01", "expected '-' after the year"),
            ("2026-1-01", "expected a two-digit month"),
            ("2026-01", "expected '-' after the month"),
            ("2026-01-1", "expected a two-digit day"),
            ("2026-13-01", "month 13 is out of range"),
            ("2026-00-01", "month 0 is out of range"),
            ("2026-01-00", "day 0 is out of range for 2026-01"),
            ("2026-04-31", "day 31 is out of range for 2026-04"),
            ("2026-01-01X", "expected 'T' between the date and the time"),
            ("2026-01-01T1", "expected a two-digit hour"),
            ("2026-01-01T10", "expected ':' after the hour"),
            ("2026-01-01T10:1", "expected two-digit minutes"),
            ("2026-01-01T10:10", "expected ':' and seconds after the minutes"),
            ("2026-01-01T10:10:1", "expected two-digit seconds"),
            ("2026-01-01T24:00:00Z", "time 24:00:00 is out of range"),
            ("2026-01-01T10:60:00Z", "time 10:60:00 is out of range"),
            ("2026-01-01T10:10:61Z", "time 10:10:61 is out of range"),
            ("2026-01-01T10:10:10.Z", "expected digits after the decimal point"),
            ("2026-01-01T10:10:10", "expected a time zone offset such as Z or +02:00"),
            ("2026-01-01T10:10:10 UTC", "expected a time zone offset such as Z or +02:00 after the time"),
            ("2026-01-01T10:10:10+1", "expected a two-digit offset hour"),
            ("2026-01-01T10:10:10+0100", "expected ':' in the offset"),
            ("2026-01-01T10:10:10+01:0", "expected two-digit offset minutes"),
            ("2026-01-01T10:10:10+24:00", "the offset is out of range"),
            ("2026-01-01T10:10:10+01:60", "the offset is out of range"),
            ("2026-01-01T10:10:10Zjunk", "unexpected text after the time zone offset"),
        ];
        for (text, reason) in cases {
            assert_eq!(error(text), format!("invalid RFC 3339 timestamp '{text}': {reason}"));
        }
    }

    #[test]
    fn formats() {
        assert_eq!(format_rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_rfc3339_nanos(0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(format_rfc3339(250_000_000), "1970-01-01T00:00:00.25Z");
        assert_eq!(format_rfc3339(-1), "1969-12-31T23:59:59.999999999Z");
        assert_eq!(format_rfc3339(1_795_698_000_000_000_000), "2026-11-26T13:00:00Z");
        assert_eq!(format_rfc3339(i64::MAX), "2262-04-11T23:47:16.854775807Z");
        assert_eq!(format_rfc3339(i64::MIN), "1677-09-21T00:12:43.145224192Z");
    }

    proptest::proptest! {
        #[test]
        fn format_then_parse_is_identity(nanos in proptest::num::i64::ANY) {
            proptest::prop_assert_eq!(parse_rfc3339(&format_rfc3339(nanos)).ok(), Some(nanos));
            proptest::prop_assert_eq!(parse_rfc3339(&format_rfc3339_nanos(nanos)).ok(), Some(nanos));
        }

        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,40}") {
            let _ = parse_rfc3339(&text);
        }

        #[test]
        fn near_timestamps_never_panic(text in "[0-9]{4}-[0-9]{2}-[0-9]{2}([Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{0,12})?([Zz]|[+-][0-9]{2}:[0-9]{2})?)?") {
            let _ = parse_rfc3339(&text);
        }
    }
}
