//! Timestamp formats used on the wire.
//!
//! ARM resources carry UTC times with seven fractional digits and a `Z`
//! (`2022-10-17T23:14:33.6140749Z`), while the AMS Event Grid samples carry the
//! same precision with no zone designator (`2018-10-12T16:12:18.0839935`).
//! Both are produced here so that every emitter agrees on them.

use chrono::{DateTime, Utc};

/// Seven-digit fraction (100 ns ticks, as .NET prints them), clamped so a leap
/// second's extra nanoseconds never spill into an eighth digit.
fn ticks(t: &DateTime<Utc>) -> u32 {
    (t.timestamp_subsec_nanos() / 100).min(9_999_999)
}

/// Formats a time the way ARM resource bodies do: `2022-10-17T23:14:33.6140749Z`.
pub fn arm_time(t: &DateTime<Utc>) -> String {
    format!("{}.{:07}Z", t.format("%Y-%m-%dT%H:%M:%S"), ticks(t))
}

/// Formats a time the way the AMS event samples do: `2018-10-12T16:12:18.0839935` (UTC, no zone).
pub fn event_time(t: &DateTime<Utc>) -> String {
    format!("{}.{:07}", t.format("%Y-%m-%dT%H:%M:%S"), ticks(t))
}

/// Formats a time the way HTTP headers and Blob XML do: `Mon, 01 Jan 2024 10:00:00 GMT`.
pub fn http_time(t: &DateTime<Utc>) -> String {
    t.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn sample() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2018, 10, 12, 16, 12, 18).unwrap() + chrono::Duration::nanoseconds(83_993_500)
    }

    #[test]
    fn event_time_has_seven_fraction_digits_and_no_zone() {
        assert_eq!(event_time(&sample()), "2018-10-12T16:12:18.0839935");
    }

    #[test]
    fn arm_time_has_seven_fraction_digits_and_a_z() {
        assert_eq!(arm_time(&sample()), "2018-10-12T16:12:18.0839935Z");
    }

    #[test]
    fn http_time_is_rfc_1123() {
        assert_eq!(http_time(&sample()), "Fri, 12 Oct 2018 16:12:18 GMT");
    }

    #[test]
    fn whole_seconds_still_print_seven_zeros() {
        let t = Utc.with_ymd_and_hms(2020, 1, 2, 3, 4, 5).unwrap();
        assert_eq!(event_time(&t), "2020-01-02T03:04:05.0000000");
    }
}
