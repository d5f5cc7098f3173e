//! Six-field NCRONTAB schedules (`second minute hour day month day-of-week`), the
//! format the Functions timer trigger uses, evaluated in UTC.
//!
//! Like NCrontab (and unlike Vixie cron) a time matches only when *both* the day
//! of month and the day of week match.

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, Timelike, Utc};

/// Why a schedule expression was rejected.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CronError {
    /// The expression does not have exactly six fields.
    #[error("expected 6 fields (second minute hour day month day-of-week), found {0}")]
    FieldCount(usize),
    /// One field could not be parsed.
    #[error("invalid {field} field '{text}': {reason}")]
    Field {
        /// Which field (e.g. `minute`).
        field: &'static str,
        /// The text of the field.
        text: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The fields are valid but no date ever matches (e.g. 31 February).
    #[error("schedule never fires")]
    NeverFires,
}

/// A parsed schedule: one bit per allowed value of each field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    seconds: u64,
    minutes: u64,
    hours: u64,
    days: u64,
    months: u64,
    weekdays: u64,
}

const MONTH_NAMES: [&str; 12] = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"];
const DAY_NAMES: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

/// Static description of one field: its name, range and optional value names.
struct FieldSpec {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
    /// The value the first name stands for (1 for months, 0 for weekdays).
    names_base: u32,
}

const FIELDS: [FieldSpec; 6] = [
    FieldSpec { name: "second", min: 0, max: 59, names: &[], names_base: 0 },
    FieldSpec { name: "minute", min: 0, max: 59, names: &[], names_base: 0 },
    FieldSpec { name: "hour", min: 0, max: 23, names: &[], names_base: 0 },
    FieldSpec { name: "day", min: 1, max: 31, names: &[], names_base: 0 },
    FieldSpec { name: "month", min: 1, max: 12, names: &MONTH_NAMES, names_base: 1 },
    FieldSpec { name: "day-of-week", min: 0, max: 6, names: &DAY_NAMES, names_base: 0 },
];

impl Schedule {
    /// Parses a six-field expression such as `0 */5 * * * *`.
    pub fn parse(expr: &str) -> Result<Self, CronError> {
        let parts: Vec<&str> = expr.split_whitespace().collect();
        if parts.len() != 6 {
            return Err(CronError::FieldCount(parts.len()));
        }
        let mut masks = [0u64; 6];
        for (i, (text, spec)) in parts.iter().zip(FIELDS.iter()).enumerate() {
            masks[i] = parse_field(text, spec).map_err(|reason| CronError::Field {
                field: spec.name,
                text: (*text).to_string(),
                reason,
            })?;
        }
        let schedule = Schedule {
            seconds: masks[0],
            minutes: masks[1],
            hours: masks[2],
            days: masks[3],
            months: masks[4],
            weekdays: masks[5],
        };
        // A fixed start keeps the check deterministic; 28 years covers every
        // day-of-week/leap-year combination.
        let probe = NaiveDate::from_ymd_opt(2000, 1, 1).and_then(|d| d.and_hms_opt(0, 0, 0)).map(|n| n.and_utc());
        match probe.and_then(|p| schedule.next_after(p)) {
            Some(_) => Ok(schedule),
            None => Err(CronError::NeverFires),
        }
    }

    /// True when some minute contains more than one occurrence; the host then
    /// turns the schedule monitor off (`ScheduleStatus` is null).
    pub fn fires_more_than_once_a_minute(&self) -> bool {
        self.seconds.count_ones() > 1
    }

    /// The first occurrence strictly after `after` (whole seconds), or `None`
    /// if nothing matches in the next 30 years.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let base = after.naive_utc().with_nanosecond(0)?;
        let mut t = base + Duration::seconds(1);
        let limit_year = t.year() + 30;
        loop {
            if t.year() > limit_year {
                return None;
            }
            if !bit(self.months, t.month()) {
                t = first_of_next_month(t)?;
                continue;
            }
            if !bit(self.days, t.day()) || !bit(self.weekdays, t.weekday().num_days_from_sunday()) {
                t = t.date().succ_opt()?.and_hms_opt(0, 0, 0)?;
                continue;
            }
            if !bit(self.hours, t.hour()) {
                t = t.with_minute(0)?.with_second(0)? + Duration::hours(1);
                continue;
            }
            if !bit(self.minutes, t.minute()) {
                t = t.with_second(0)? + Duration::minutes(1);
                continue;
            }
            if !bit(self.seconds, t.second()) {
                t += Duration::seconds(1);
                continue;
            }
            return Some(t.and_utc());
        }
    }
}

fn bit(mask: u64, value: u32) -> bool {
    mask & (1u64 << value) != 0
}

fn first_of_next_month(t: NaiveDateTime) -> Option<NaiveDateTime> {
    let (y, m) = if t.month() == 12 { (t.year() + 1, 1) } else { (t.year(), t.month() + 1) };
    NaiveDate::from_ymd_opt(y, m, 1)?.and_hms_opt(0, 0, 0)
}

fn parse_value(text: &str, spec: &FieldSpec) -> Result<u32, String> {
    let lower = text.to_ascii_lowercase();
    if let Some(pos) = spec.names.iter().position(|n| *n == lower) {
        // Names are at most 12 entries, so the cast cannot truncate.
        return Ok(pos as u32 + spec.names_base);
    }
    let value: u32 = text.parse().map_err(|_| format!("'{text}' is not a number"))?;
    if value < spec.min || value > spec.max {
        return Err(format!("{value} is outside {}-{}", spec.min, spec.max));
    }
    Ok(value)
}

fn parse_field(text: &str, spec: &FieldSpec) -> Result<u64, String> {
    let mut mask = 0u64;
    for item in text.split(',') {
        if item.is_empty() {
            return Err("empty list item".to_string());
        }
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => {
                let step: u32 = s.parse().map_err(|_| format!("step '{s}' is not a number"))?;
                if step == 0 {
                    return Err("step must be at least 1".to_string());
                }
                (r, step)
            }
            None => (item, 1),
        };
        let (lo, hi) = if range == "*" {
            (spec.min, spec.max)
        } else if let Some((a, b)) = range.split_once('-') {
            let (a, b) = (parse_value(a, spec)?, parse_value(b, spec)?);
            if a > b {
                return Err(format!("range {a}-{b} is reversed"));
            }
            (a, b)
        } else {
            let a = parse_value(range, spec)?;
            // `a/n` means "from a to the end of the range, every n".
            if item.contains('/') {
                (a, spec.max)
            } else {
                (a, a)
            }
        };
        let mut v = lo;
        while v <= hi {
            mask |= 1u64 << v;
            v += step;
        }
    }
    Ok(mask)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, s).single().unwrap()
    }

    #[test]
    fn every_five_minutes_fires_at_second_zero_of_each_fifth_minute() {
        let s = Schedule::parse("0 */5 * * * *").unwrap();
        assert_eq!(s.next_after(at(2024, 1, 1, 10, 3, 7)), Some(at(2024, 1, 1, 10, 5, 0)));
        assert_eq!(s.next_after(at(2024, 1, 1, 10, 5, 0)), Some(at(2024, 1, 1, 10, 10, 0)));
        assert_eq!(s.next_after(at(2024, 1, 1, 23, 58, 0)), Some(at(2024, 1, 2, 0, 0, 0)));
    }

    #[test]
    fn next_occurrence_is_strictly_after_the_given_time() {
        let s = Schedule::parse("* * * * * *").unwrap();
        let t = at(2024, 5, 1, 0, 0, 0) + Duration::milliseconds(500);
        assert_eq!(s.next_after(t), Some(at(2024, 5, 1, 0, 0, 1)));
    }

    #[test]
    fn lists_ranges_and_stepped_ranges_are_combined() {
        let s = Schedule::parse("0 0 9-17/4,22 * * *").unwrap();
        let mut t = at(2024, 1, 1, 0, 0, 0);
        let mut hours = vec![];
        for _ in 0..4 {
            t = s.next_after(t).unwrap();
            hours.push(t.hour());
        }
        assert_eq!(hours, vec![9, 13, 17, 22]);
    }

    #[test]
    fn day_of_month_and_day_of_week_must_both_match() {
        // 13th that is a Friday (day-of-week 5).
        let s = Schedule::parse("0 0 0 13 * 5").unwrap();
        assert_eq!(s.next_after(at(2024, 1, 1, 0, 0, 0)), Some(at(2024, 9, 13, 0, 0, 0)));
    }

    #[test]
    fn month_and_weekday_names_are_accepted() {
        let s = Schedule::parse("0 30 8 * Feb-Mar mon").unwrap();
        assert_eq!(s.next_after(at(2024, 1, 1, 0, 0, 0)), Some(at(2024, 2, 5, 8, 30, 0)));
    }

    #[test]
    fn leap_day_schedules_find_the_next_leap_year() {
        let s = Schedule::parse("0 0 12 29 2 *").unwrap();
        assert_eq!(s.next_after(at(2024, 3, 1, 0, 0, 0)), Some(at(2028, 2, 29, 12, 0, 0)));
    }

    #[test]
    fn a_start_value_with_a_step_runs_to_the_end_of_the_range() {
        let s = Schedule::parse("10/20 * * * * *").unwrap();
        assert_eq!(s.next_after(at(2024, 1, 1, 0, 0, 10)), Some(at(2024, 1, 1, 0, 0, 30)));
        assert_eq!(s.next_after(at(2024, 1, 1, 0, 0, 50)), Some(at(2024, 1, 1, 0, 1, 10)));
    }

    #[test]
    fn more_than_one_second_value_means_more_than_once_a_minute() {
        assert!(Schedule::parse("*/30 * * * * *").unwrap().fires_more_than_once_a_minute());
        assert!(!Schedule::parse("0 * * * * *").unwrap().fires_more_than_once_a_minute());
        assert!(!Schedule::parse("0 */5 * * * *").unwrap().fires_more_than_once_a_minute());
    }

    #[test]
    fn malformed_expressions_are_rejected_with_the_field_named() {
        assert_eq!(Schedule::parse("0 */5 * * *"), Err(CronError::FieldCount(5)));
        let err = Schedule::parse("0 61 * * * *").unwrap_err();
        assert!(err.to_string().contains("minute"), "{err}");
        assert!(Schedule::parse("0 0 0 * * 7").is_err());
        assert!(Schedule::parse("0 */0 * * * *").is_err());
        assert!(Schedule::parse("0 5-1 * * * *").is_err());
        assert!(Schedule::parse("0 a * * * *").is_err());
        assert!(Schedule::parse("0 1,,2 * * * *").is_err());
    }

    #[test]
    fn impossible_dates_are_reported_as_never_firing() {
        assert_eq!(Schedule::parse("0 0 0 31 2 *"), Err(CronError::NeverFires));
    }
}
