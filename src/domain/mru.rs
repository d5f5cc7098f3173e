//! Media Reserved Units policy (the guidance's "Get the count of media reserved units..." and "If you find
//! the MRU count is thrashing..."): pure functions of the account's units in flight, the cached MRU value
//! and the limits.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The MRU value shared by every instance through the account's counter row: the guidance's "distributed
/// cache". `current` is what the service has, or is being set to by whoever last claimed a change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MruCache {
    /// MRUs the service has or is being set to.
    pub current: u32,
    /// The service's own maximum (`MaxReservableUnits`).
    pub max_reservable: u32,
    /// The account's v2 id, needed to update it.
    pub account_id: String,
    /// `ReservedUnitType` (0 = S1, 1 = S2, 2 = S3), kept as it is.
    pub unit_type: u8,
    /// When the value was last read from the service.
    pub read_at: DateTime<Utc>,
}

impl MruCache {
    /// Whether the cached value is younger than `ttl`.
    pub fn is_fresh(&self, ttl: Duration, now: DateTime<Utc>) -> bool {
        chrono::Duration::from_std(ttl).is_ok_and(|ttl| now - self.read_at < ttl)
    }

    /// The highest value the product may set: the account's configured maximum, within the service's.
    pub fn ceiling(&self, configured_max: u32) -> u32 {
        configured_max.min(self.max_reservable)
    }
}

/// MRUs to set once a job is counted in flight: the guidance's rule, "if in flight plus what the job needs
/// exceeds the current MRUs and the current value is not at the maximum, add what the job needs".
/// `units_in_flight` already includes the job's `need`. The result is never above `ceiling`, and never below
/// what is in flight when that fits, so concurrent submissions that each add their own need cannot end short.
/// `None` when nothing should change.
pub fn scale_up(units_in_flight: u32, need: u32, current: u32, ceiling: u32) -> Option<u32> {
    (units_in_flight > current && current < ceiling).then(|| (current + need).max(units_in_flight).min(ceiling))
}

/// MRUs to set when work has drained: down to what is in flight, never below `floor`. `None` when in flight
/// is not below the current value.
pub fn scale_down(units_in_flight: u32, current: u32, floor: u32) -> Option<u32> {
    let want = units_in_flight.max(floor);
    (want < current).then_some(want)
}

/// Whether jobs on the account wait for an encoder because it is at its MRU maximum (`units_in_flight`
/// includes the job at hand). Such waits are expected, not evidence of a broken region.
pub fn saturated(units_in_flight: u32, current: u32, ceiling: u32) -> bool {
    units_in_flight > current && current >= ceiling
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_job_that_does_not_fit_raises_mrus_by_what_it_needs() {
        assert_eq!(scale_up(4, 1, 3, 10), Some(4));
        assert_eq!(scale_up(6, 2, 4, 10), Some(6));
        assert_eq!(scale_up(3, 1, 4, 10), None, "it fits");
        assert_eq!(scale_up(1, 1, 0, 10), Some(1), "from zero MRUs");
        assert_eq!(scale_up(5, 1, 2, 10), Some(5), "never below what is in flight");
    }

    #[test]
    fn the_maximum_is_never_exceeded_and_a_full_account_is_saturated() {
        assert_eq!(scale_up(12, 3, 9, 10), Some(10));
        assert_eq!(scale_up(11, 1, 10, 10), None);
        assert!(saturated(11, 10, 10));
        assert!(!saturated(10, 10, 10));
        assert!(!saturated(11, 9, 10), "it can still grow");
    }

    #[test]
    fn draining_lowers_mrus_to_in_flight_but_not_below_the_floor() {
        assert_eq!(scale_down(2, 5, 0), Some(2));
        assert_eq!(scale_down(0, 5, 1), Some(1));
        assert_eq!(scale_down(5, 5, 0), None);
        assert_eq!(scale_down(0, 1, 1), None);
    }

    #[test]
    fn a_cached_value_expires_after_its_ttl() {
        let read_at = DateTime::from_timestamp(1_700_000_000, 0).unwrap_or_default();
        let cache = MruCache { current: 1, max_reservable: 25, account_id: "a".into(), unit_type: 0, read_at };
        assert!(cache.is_fresh(Duration::from_secs(60), read_at + chrono::Duration::seconds(59)));
        assert!(!cache.is_fresh(Duration::from_secs(60), read_at + chrono::Duration::seconds(60)));
        assert_eq!(cache.ceiling(40), 25);
    }

    proptest! {
        #[test]
        fn scaling_stays_within_floor_and_ceiling(in_flight in 0u32..50, need in 1u32..4, current in 0u32..30, ceiling in 1u32..30, floor in 0u32..5) {
            if let Some(up) = scale_up(in_flight, need, current, ceiling) {
                prop_assert!(up > current && up <= ceiling);
            }
            if let Some(down) = scale_down(in_flight, current, floor) {
                prop_assert!(down < current && down >= floor && down >= in_flight);
            }
        }

        /// Submitting jobs one by one from nothing, MRUs end at min(ceiling, units needed) exactly.
        #[test]
        fn sequential_submissions_end_at_min_of_ceiling_and_need(jobs in 0u32..60, ceiling in 1u32..26) {
            let mut current = 0;
            for in_flight in 1..=jobs {
                if let Some(next) = scale_up(in_flight, 1, current, ceiling) { current = next; }
            }
            prop_assert_eq!(current, jobs.min(ceiling));
        }

        /// Jobs counted in flight together and checked afterwards still end at min(ceiling, units).
        #[test]
        fn concurrent_submissions_checked_late_end_at_min_of_ceiling_and_need(opened in prop::collection::vec(1u32..20, 1..10), ceiling in 1u32..26) {
            let mut current = 0;
            let mut in_flight = 0;
            for batch in opened {
                in_flight += batch;
                for _ in 0..batch {
                    if let Some(next) = scale_up(in_flight, 1, current, ceiling) { current = next; }
                }
            }
            prop_assert_eq!(current, in_flight.min(ceiling));
        }
    }
}
