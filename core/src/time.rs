//! Timestamps: milliseconds since the Unix epoch, formatted as the seed asks, in UTC.

use std::time::{SystemTime, UNIX_EPOCH};

/// 9999-12-31T23:59:59.999Z: the last instant a four-digit ISO 8601 year can show.
pub const MAX_MS: i64 = 253_402_300_799_999;

/// The server clock in milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| i64::try_from(elapsed.as_millis()).unwrap_or(MAX_MS))
        .unwrap_or(0)
}

/// `ms` (0..=MAX_MS) as ISO 8601 in UTC with milliseconds: `2026-11-21T19:47:48.019Z`.
pub fn format_iso8601(ms: i64) -> String {
    let ms = ms.clamp(0, MAX_MS);
    let (days, ms_of_day) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    let (year, month, day) = civil_from_days(days);
    let secs = ms_of_day / 1000;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        ms_of_day % 1000
    )
}

/// Whole seconds since the Unix epoch (the seed's "long value of seconds").
pub fn epoch_seconds(ms: i64) -> i64 {
    ms.div_euclid(1000)
}

/// Days since 1970-01-01 of a date of the proleptic Gregorian calendar (Howard Hinnant's
/// `days_from_civil`).
pub fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Year, month, day of the proleptic Gregorian calendar for a count of days since
/// 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Nanoseconds in a day.
const DAY_NANOS: i64 = 86_400_000_000_000;

/// A date as ISO 8601, from days since 1970-01-01: `2016-11-04`. Years outside 0000–9999
/// take a sign as Java's ISO formatter writes them (`+21016-11-04`, `-4713-12-31`):
/// astronomical years, 1 BC being 0000.
pub fn format_date(days: i64) -> String {
    // Beyond a million years either way nothing is a date; the bound keeps the calendar's
    // arithmetic in range.
    let (year, month, day) = civil_from_days(days.clamp(-MAX_DAYS, MAX_DAYS));
    match year {
        0..=9999 => format!("{year:04}-{month:02}-{day:02}"),
        10_000.. => format!("+{year}-{month:02}-{day:02}"),
        _ => format!("-{:04}-{month:02}-{day:02}", -year),
    }
}

/// A time of day from nanoseconds since midnight: `13:51:30`, the fraction with its
/// significant digits only (`13:51:30.12`), as PostgreSQL writes times; `24:00:00`
/// (PostgreSQL's end of day) stays.
pub fn format_clock(nanos: i64) -> String {
    let (secs, fraction) = (
        nanos.div_euclid(1_000_000_000),
        nanos.rem_euclid(1_000_000_000),
    );
    let mut text = format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60);
    if fraction != 0 {
        text.push('.');
        text.push_str(format!("{fraction:09}").trim_end_matches('0'));
    }
    text
}

/// An instant as ISO 8601 in UTC, from days since 1970-01-01 and nanoseconds into that
/// day: `2016-11-04T13:51:30.123456Z` (dates as [`format_date`], times as
/// [`format_clock`]).
pub fn format_instant(days: i64, nanos: i64) -> String {
    let days = days + nanos.div_euclid(DAY_NANOS);
    format!(
        "{}T{}Z",
        format_date(days),
        format_clock(nanos.rem_euclid(DAY_NANOS))
    )
}

/// An instant as days since 1970-01-01 and nanoseconds into the day, shifted to UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Instant {
    pub days: i64,
    pub nanos: i64,
}

/// Days in a million years: the dates read and written here stay within them.
const MAX_DAYS: i64 = 365_242_500;

/// `YYYY-MM-DD`, with a signed or longer year (`+21016`, `-4713`) or PostgreSQL's ` BC`
/// suffix (`4714-11-24 BC` is astronomical year -4713), as days since 1970-01-01. Years
/// beyond a million, and days a month does not have, are no date.
pub fn parse_date(text: &str) -> Option<i64> {
    let (text, bc) = match text.trim().strip_suffix(" BC") {
        Some(date) => (date, true),
        None => (text.trim(), false),
    };
    let (sign, unsigned) = match text.as_bytes().first()? {
        b'-' => (-1, &text[1..]),
        b'+' => (1, &text[1..]),
        _ => (1, text),
    };
    let mut parts = unsigned.splitn(3, '-');
    let year: i64 = digits(parts.next()?)?;
    let (month, day): (i64, i64) = (digits(parts.next()?)?, digits(parts.next()?)?);
    if year > 1_000_000 || !(1..=12).contains(&month) || day < 1 {
        return None;
    }
    let year = if bc { 1 - year } else { sign * year };
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let month_days = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    (day <= month_days[month as usize - 1]).then(|| days_from_civil(year, month, day))
}

/// `HH:MM:SS[.fraction]` as nanoseconds since midnight (`24:00:00` allowed).
pub fn parse_clock(text: &str) -> Option<i64> {
    let (whole, fraction) = match text.split_once('.') {
        Some((whole, fraction)) if !fraction.is_empty() => (whole, fraction),
        Some(_) => return None,
        None => (text, ""),
    };
    let mut parts = whole.splitn(3, ':');
    let (h, m, s): (i64, i64, i64) = (
        digits(parts.next()?)?,
        digits(parts.next()?)?,
        digits(parts.next()?)?,
    );
    if h > 24 || m > 59 || s > 60 || fraction.len() > 9 {
        return None;
    }
    let fraction_nanos = if fraction.is_empty() {
        0
    } else {
        digits::<i64>(fraction)? * 10_i64.pow(9 - fraction.len() as u32)
    };
    // 24:00:00 is the day's end, and nothing after it.
    if h == 24 && (m, s, fraction_nanos) != (0, 0, 0) {
        return None;
    }
    Some(((h * 60 + m) * 60 + s) * 1_000_000_000 + fraction_nanos)
}

/// A UTC offset — `Z`, `+02`, `-05:30`, `+0530`, `+01:02:03` — as seconds east of UTC.
pub fn parse_offset(text: &str) -> Option<i64> {
    if text == "Z" || text.is_empty() {
        return Some(0);
    }
    let sign = match text.as_bytes()[0] {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let rest = &text[1..];
    if rest.is_empty() {
        return None;
    }
    let parts: Vec<&str> = if rest.contains(':') {
        rest.split(':').collect()
    } else {
        rest.as_bytes()
            .chunks(2)
            .map(|pair| std::str::from_utf8(pair).unwrap_or("x"))
            .collect()
    };
    // Offsets reach ±18 hours (Java's bound; the world's are within ±14).
    let mut seconds = 0;
    for ((part, unit), most) in parts.iter().zip([3600, 60, 1]).zip([18, 59, 59]) {
        let count: i64 = digits(part)?;
        if part.len() > 2 || count > most {
            return None;
        }
        seconds += count * unit;
    }
    (parts.len() <= 3 && seconds <= 18 * 3600).then_some(sign * seconds)
}

/// A time with an optional UTC offset — `13:51:30.123+02`, `11:51:30Z` — shifted to UTC
/// and wrapped into the day, as nanoseconds since midnight.
pub fn parse_clock_with_offset(text: &str) -> Option<i64> {
    Some(utc_nanos(text.trim())?.rem_euclid(DAY_NANOS))
}

/// `HH:MM:SS[.fraction][offset]` as nanoseconds from midnight UTC of the same day
/// (negative, or a day or more, where the offset crosses midnight).
fn utc_nanos(time: &str) -> Option<i64> {
    let (clock, offset) = time.split_at(time.find(['+', '-', 'Z']).unwrap_or(time.len()));
    Some(parse_clock(clock)? - parse_offset(offset)? * 1_000_000_000)
}

/// A timestamp as PostgreSQL or ISO 8601 writes it — `2016-11-04 13:51:30.123456+02`,
/// `2016-11-04T11:51:30.123456Z`, `+21016-11-04T06:51:30Z`, `4713-12-31 23:59:59 BC` —
/// shifted to UTC (no offset: taken as UTC).
pub fn parse_instant(text: &str) -> Option<Instant> {
    let text = text.trim();
    let (text, bc) = match text.strip_suffix(" BC") {
        Some(rest) => (rest, " BC"),
        None => (text, ""),
    };
    // The date ends at the first ' ' or 'T' after its first character (a sign).
    let split = text.get(1..)?.find([' ', 'T'])? + 1;
    let (date, time) = (&text[..split], &text[split + 1..]);
    let days = parse_date(&format!("{date}{bc}"))?;
    let nanos = utc_nanos(time)?;
    Some(Instant {
        days: days + nanos.div_euclid(DAY_NANOS),
        nanos: nanos.rem_euclid(DAY_NANOS),
    })
}

/// ASCII digits only (no sign, no spaces) as a number.
fn digits<T: std::str::FromStr>(text: &str) -> Option<T> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(format_iso8601(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            format_iso8601(1_795_290_468_019),
            "2026-11-21T19:47:48.019Z"
        );
        assert_eq!(format_iso8601(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(
            format_iso8601(4_107_542_399_999),
            "2100-02-28T23:59:59.999Z"
        );
        assert_eq!(format_iso8601(MAX_MS), "9999-12-31T23:59:59.999Z");
    }

    #[test]
    fn every_day_of_four_centuries_round_trips() {
        let mut previous = civil_from_days(-1);
        for days in 0..146_097 {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
            assert!((y, m, d) > previous);
            previous = (y, m, d);
        }
    }

    #[test]
    fn epoch_seconds_floor() {
        assert_eq!(epoch_seconds(1_795_290_468_019), 1_795_290_468);
        assert_eq!(epoch_seconds(999), 0);
    }

    #[test]
    fn the_clock_is_after_2020() {
        assert!(now_ms() > 1_577_836_800_000);
    }

    #[test]
    fn dates_with_any_year() {
        assert_eq!(format_date(17_109), "2016-11-04");
        assert_eq!(format_date(0), "1970-01-01");
        assert_eq!(format_date(days_from_civil(21_016, 11, 4)), "+21016-11-04");
        assert_eq!(format_date(days_from_civil(-4713, 12, 31)), "-4713-12-31");
        assert_eq!(format_date(days_from_civil(0, 1, 1)), "0000-01-01");
        for text in ["2016-11-04", "+21016-11-04", "-4713-12-31", "0000-01-01"] {
            assert_eq!(parse_date(text).map(format_date).as_deref(), Some(text));
        }
        assert_eq!(parse_date("4714-11-24 BC"), parse_date("-4713-11-24"));
        for bad in [
            "",
            "2016-13-01",
            "2016-1x-01",
            "2016-01",
            "-",
            "2016-01-01 AD",
        ] {
            assert_eq!(parse_date(bad), None, "{bad}");
        }
    }

    #[test]
    fn clocks_keep_significant_digits() {
        assert_eq!(format_clock(49_890_000_000_000), "13:51:30");
        assert_eq!(format_clock(49_890_123_000_000), "13:51:30.123");
        assert_eq!(format_clock(40_271_000_010_000), "11:11:11.00001");
        assert_eq!(format_clock(86_400_000_000_000), "24:00:00");
        assert_eq!(format_clock(1), "00:00:00.000000001");
        assert_eq!(parse_clock("13:51:30.123"), Some(49_890_123_000_000));
        assert_eq!(parse_clock("24:00:00"), Some(86_400_000_000_000));
        assert_eq!(parse_clock("13:51"), None);
        assert_eq!(parse_clock("24:30:00"), None);
        assert_eq!(parse_clock("24:00:00.5"), None);
        assert_eq!(parse_clock("13:51:30."), None);
        assert_eq!(parse_offset("+"), None);
        assert_eq!(parse_offset("+19"), None);
        assert_eq!(parse_offset("+99999999999:00"), None);
        assert_eq!(parse_offset("-05:30"), Some(-19_800));
        assert_eq!(parse_clock("13:51:30.1234567890"), None);
        assert_eq!(
            parse_clock_with_offset("13:51:30.123789+02").map(format_clock),
            Some("11:51:30.123789".into())
        );
        assert_eq!(
            parse_clock_with_offset("01:00:00+02:00").map(format_clock),
            Some("23:00:00".into())
        );
        assert_eq!(
            parse_clock_with_offset("11:51:30.123Z").map(format_clock),
            Some("11:51:30.123".into())
        );
    }

    #[test]
    fn instants_from_postgresql_and_iso_text() {
        let iso = |text: &str| parse_instant(text).map(|at| format_instant(at.days, at.nanos));
        for (text, expected) in [
            ("2016-11-04 13:51:30.123456", "2016-11-04T13:51:30.123456Z"),
            (
                "2016-11-04T13:51:30.123456+02:00",
                "2016-11-04T11:51:30.123456Z",
            ),
            ("2021-01-01 01:30:00+02", "2020-12-31T23:30:00Z"),
            ("2021-12-31 23:00:00-05:30", "2022-01-01T04:30:00Z"),
            ("+21016-11-04T06:51:30.000000Z", "+21016-11-04T06:51:30Z"),
            ("21016-11-04 06:51:30+00", "+21016-11-04T06:51:30Z"),
            (
                "4714-12-31 23:59:59.999999+00 BC",
                "-4713-12-31T23:59:59.999999Z",
            ),
            (
                "-4713-12-31T23:59:59.999999Z",
                "-4713-12-31T23:59:59.999999Z",
            ),
            ("2016-11-04T13:51:30.12+0530", "2016-11-04T08:21:30.12Z"),
        ] {
            assert_eq!(iso(text).as_deref(), Some(expected), "{text}");
        }
        for bad in [
            "infinity",
            "2016-11-04",
            "2016-11-04 25:00:00",
            "2016-11-04 10:00:00+x",
        ] {
            assert_eq!(iso(bad), None, "{bad}");
        }
    }
}
