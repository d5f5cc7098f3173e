//! Times as people and other programs read them in messages: RFC 3339 in UTC, to the second. Records keep
//! full precision; alerts and notifications are read by people and compared by programs, and nanoseconds
//! help neither.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serializer;

/// `2024-05-01T12:30:05Z`.
pub fn seconds(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Serializes a time as [`seconds`] does.
pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&seconds(t))
}

/// Serializes an optional time as [`seconds`] does (callers skip `None`).
pub fn serialize_option<S: Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_str(&seconds(t)),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn a_time_is_written_to_the_second_in_utc() {
        let t = Utc.timestamp_opt(1_714_566_605, 123_456_789).single().expect("valid");
        assert_eq!(seconds(&t), "2024-05-01T12:30:05Z");
    }
}
