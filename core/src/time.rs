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
}
