//! The versions this instance's own writes returned, held for the next guarded write of the same row.
//!
//! Every read-modify-write in the store is guarded by the row's ETag, so the version it starts from only
//! has to be *likely* current, not known to be: the write proves it. A row this instance wrote last is
//! usually still at the version the write returned (a job's events follow its submission, an account's
//! shard is written again by the next event), so starting from that version saves the read. If another
//! instance wrote the row since, the guarded write fails and the next round reads it: a stale version costs
//! one failed write, never a lost update.
//!
//! A held version is taken, not copied: one writer starts from it, and only its successful write puts a
//! new one back, so concurrent writers on one instance do not all bet on the same version. The maps are
//! bounded by emptying them when full: a version that is gone costs a read, nothing more.

use super::{JobOutbox, Versioned};
use crate::domain::{AccountCounters, AttemptRecord, JobRecord};
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex, PoisonError};

/// Rows held per kind: far more than the jobs one instance has in flight at once.
const CAPACITY: usize = 4096;

/// Held versions of job rows, active attempt rows, counter shards, and the delivery state of jobs this
/// instance just ended.
#[derive(Clone, Default)]
pub(super) struct Held {
    jobs: Arc<Slot<String, Versioned<JobRecord>>>,
    attempts: Arc<Slot<(String, String), Versioned<AttemptRecord>>>,
    shards: Arc<Slot<(String, u32), Versioned<AccountCounters>>>,
    ended: Arc<Slot<String, JobOutbox>>,
}

impl Held {
    /// Takes the held version of a job.
    pub fn take_job(&self, job_id: &str) -> Option<Versioned<JobRecord>> {
        self.jobs.take(&job_id.to_owned())
    }

    /// Holds a job's version after this instance wrote it.
    pub fn job(&self, version: Versioned<JobRecord>) {
        self.jobs.put(version.value.job_id.clone(), version);
    }

    /// Takes the held version of an active attempt.
    pub fn take_attempt(&self, account: &str, ams_job_name: &str) -> Option<Versioned<AttemptRecord>> {
        self.attempts.take(&(account.to_owned(), ams_job_name.to_owned()))
    }

    /// Holds an active attempt's version after this instance wrote it.
    pub fn attempt(&self, version: Versioned<AttemptRecord>) {
        let key = (version.value.account.clone(), version.value.ams_job_name.clone());
        self.attempts.put(key, version);
    }

    /// Takes the held version of a counter shard.
    pub fn take_shard(&self, account: &str, shard: u32) -> Option<Versioned<AccountCounters>> {
        self.shards.take(&(account.to_owned(), shard))
    }

    /// Holds a counter shard's version after this instance wrote it.
    pub fn shard(&self, account: &str, shard: u32, version: Versioned<AccountCounters>) {
        self.shards.put((account.to_owned(), shard), version);
    }

    /// Takes the job and delivery state the write that ended the job left.
    pub fn take_ended(&self, job_id: &str) -> Option<JobOutbox> {
        self.ended.take(&job_id.to_owned())
    }

    /// Holds the job and delivery state as the write that ended the job left them, for its first delivery.
    pub fn ended(&self, job_id: &str, ended: JobOutbox) {
        self.ended.put(job_id.to_owned(), ended);
    }
}

/// One bounded map of held versions.
struct Slot<K, V> {
    rows: Mutex<HashMap<K, V>>,
}

impl<K, V> Default for Slot<K, V> {
    fn default() -> Self {
        Slot { rows: Mutex::new(HashMap::new()) }
    }
}

impl<K: Eq + Hash, V> Slot<K, V> {
    fn take(&self, key: &K) -> Option<V> {
        // A panic elsewhere cannot leave a map half-changed, so a poisoned lock is still usable.
        self.rows.lock().unwrap_or_else(PoisonError::into_inner).remove(key)
    }

    fn put(&self, key: K, version: V) {
        let mut rows = self.rows.lock().unwrap_or_else(PoisonError::into_inner);
        if rows.len() >= CAPACITY && !rows.contains_key(&key) {
            rows.clear();
        }
        rows.insert(key, version);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tables::ETag;

    fn version(n: u32) -> Versioned<AccountCounters> {
        Versioned { value: AccountCounters { queued: n, ..Default::default() }, etag: ETag(format!("v{n}")) }
    }

    #[test]
    fn a_held_version_is_given_to_one_taker_only() {
        let held = Held::default();
        held.shard("a", 1, version(3));
        assert_eq!(held.take_shard("a", 1), Some(version(3)));
        assert_eq!(held.take_shard("a", 1), None);
        assert_eq!(held.take_shard("b", 1), None);
    }

    #[test]
    fn a_full_map_starts_again_instead_of_growing() {
        let held = Held::default();
        for shard in 0..CAPACITY as u32 {
            held.shard("a", shard, version(shard));
        }
        held.shard("a", 0, version(7));
        assert_eq!(held.take_shard("a", 1), Some(version(1)), "replacing a held row keeps the rest");
        held.shard("a", 1, version(1));
        held.shard("b", 0, version(9));
        assert_eq!(held.take_shard("a", 1), None, "a new row in a full map empties it");
        assert_eq!(held.take_shard("b", 0), Some(version(9)));
    }
}
