//! Listings whose cost follows the page, not the history.
//!
//! Everything a listing pages through is a key range of the Jobs table's `~index` partition. Open and
//! pending jobs are its `o|` and `p|` rows, which exist only while there is open work. Ended jobs are its
//! `e|{State}|{endedAt}|{jobId}` rows, the time in a fixed width so that key order is time order: one per
//! final job, kept as history. `e` sorts before every open-work prefix (`n|`, `o|`, `p|`), so the sweep reads
//! open work from `n|` on and never pages through history.
//!
//! A job's ended row is written in one entity group transaction with the removal of its `o|` row, after the
//! job's final write: a crash before it leaves the `o|` row, and the sweep that finds a final job there
//! closes it the same way. So every final job has exactly one of the two, and closing costs one round
//! trip. A final job never changes again, so every writer of its ended row writes the same key and the
//! same summary.
//!
//! Old history goes in time order, one key range per state.

use super::{open_key, Store, StoreError, INDEX_PARTITION};
use crate::domain::records::ErrorInfo;
use crate::domain::{JobRecord, JobState};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tables::{filter_string_literal, BatchOp, Continuation, Entity, IfMatch, TableError};

/// What a listing says about one job: enough to decide whether to open it with GetJob.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobSummary {
    /// The job id.
    pub job_id: String,
    /// Its state.
    pub state: JobState,
    /// Its transform.
    pub transform: String,
    /// The account of its current (or last) attempt, unless it waits for one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// That account's region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// The current attempt number.
    pub attempt: u32,
    /// When it was accepted.
    pub created_at: DateTime<Utc>,
    /// When it last changed (for an ended job, when it ended).
    pub updated_at: DateTime<Utc>,
    /// The most recent error of any attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<ErrorInfo>,
}

impl From<&JobRecord> for JobSummary {
    fn from(job: &JobRecord) -> Self {
        let placed = job.state != JobState::Pending;
        JobSummary {
            job_id: job.job_id.clone(),
            state: job.state,
            transform: job.transform.clone(),
            account: job.account.clone().filter(|_| placed),
            region: job.region.clone().filter(|_| placed),
            attempt: job.attempt,
            created_at: job.created_at,
            updated_at: job.updated_at,
            last_error: job.last_error.clone(),
        }
    }
}

/// Which rows of the `~index` partition to page through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenIndex {
    /// Every job that is not final (`o|`).
    Open,
    /// Every job waiting for an account (`p|`).
    Pending,
}

/// The stored ended-job row: the state for people browsing the table, and the summary as JSON.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct EndedRow {
    state: String,
    summary: String,
}

/// The first key of every ended row: it sorts before every open-work prefix.
const ENDED_KEYS: &str = "e|";

/// The key range of the jobs that ended in `state`: `[prefix, prefix~)`.
fn ended_prefix(state: JobState) -> String {
    format!("{ENDED_KEYS}{state}|")
}

fn ended_key(state: JobState, at: DateTime<Utc>, job_id: &str) -> String {
    format!("{}{}|{job_id}", ended_prefix(state), time_key(at))
}

/// Fixed width, so that string order is time order.
fn time_key(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

impl Store {
    /// Indexes a job that has just ended and takes it out of the open-jobs index, in one transaction; a job
    /// that is not final is left alone. Idempotent: every caller writes the same row.
    pub async fn close_job(&self, job: &JobRecord) -> Result<(), StoreError> {
        if !job.state.is_final() {
            return Ok(());
        }
        let row = EndedRow { state: job.state.to_string(), summary: super::to_json(&JobSummary::from(job)) };
        let rk = ended_key(job.state, job.updated_at, &job.job_id);
        let ops = vec![
            BatchOp::Upsert { rk: rk.clone(), body: super::to_value(&row) },
            BatchOp::Delete { rk: open_key(&job.job_id), if_match: IfMatch::Any },
        ];
        match self.jobs.transaction(INDEX_PARTITION, ops).await {
            Ok(_) => Ok(()),
            // Closed before (a repeated event, a sweep, a retried submission): the open row is gone and the
            // ended row is the one being written; writing it again repairs nothing but costs nothing either.
            Err(TableError::Batch { index: 1, source }) if matches!(*source, TableError::NotFound) => {
                self.jobs.upsert(INDEX_PARTITION, &rk, &row).await?;
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Removes a job's open-jobs index row without indexing it as ended (a job that was never written).
    pub async fn forget_open(&self, job_id: &str) -> Result<(), StoreError> {
        self.delete_index_row(&super::open_key(job_id)).await
    }

    /// One page of the open-jobs index or the pending markers: the job ids, in order, of rows written at or
    /// after `since`.
    pub async fn index_page(
        &self,
        which: OpenIndex,
        since: Option<DateTime<Utc>>,
        top: u32,
        from: Option<&Continuation>,
    ) -> Result<(Vec<String>, Option<Continuation>), StoreError> {
        // `}` is the character after `|`: the range holds every key that starts with the prefix.
        let (prefix, end) = match which {
            OpenIndex::Open => ("o|", "o}"),
            OpenIndex::Pending => ("p|", "p}"),
        };
        let mut filter = format!(
            "PartitionKey eq {} and RowKey ge '{prefix}' and RowKey lt '{end}'",
            filter_string_literal(INDEX_PARTITION)
        );
        if let Some(since) = since {
            // `Since` is written by `to_rfc3339`, whose strings of one offset sort as their times do.
            filter.push_str(&format!(" and Since ge {}", filter_string_literal(&since.to_rfc3339())));
        }
        let page = self.jobs.query_page::<Value>(&filter, Some(top), from).await?;
        let ids = page
            .entities
            .iter()
            .filter_map(|e| e.value.get("RowKey").and_then(Value::as_str)?.strip_prefix(prefix).map(str::to_owned))
            .collect();
        Ok((ids, page.next))
    }

    /// One page of the jobs that ended in `state` at or after `since`, oldest first.
    pub async fn ended_page(
        &self,
        state: JobState,
        since: Option<DateTime<Utc>>,
        top: u32,
        from: Option<&Continuation>,
    ) -> Result<(Vec<JobSummary>, Option<Continuation>), StoreError> {
        let prefix = ended_prefix(state);
        let start = since.map_or_else(|| prefix.clone(), |at| format!("{prefix}{}", time_key(at)));
        let filter = format!(
            "PartitionKey eq {} and RowKey ge {} and RowKey lt {}",
            filter_string_literal(INDEX_PARTITION),
            filter_string_literal(&start),
            // `~` sorts after the digits that start every time.
            filter_string_literal(&format!("{prefix}~"))
        );
        let page = self.jobs.query_page::<EndedRow>(&filter, Some(top), from).await?;
        let jobs: Result<Vec<JobSummary>, StoreError> =
            page.entities.iter().map(|e: &Entity<EndedRow>| super::from_json(&e.value.summary)).collect();
        Ok((jobs?, page.next))
    }
}

#[cfg(test)]
mod tests {
    use super::super::OPEN_WORK_FROM;
    use super::*;

    #[test]
    fn every_ended_key_sorts_before_the_open_work_and_in_time_order() {
        let early = Utc::now();
        let late = early + chrono::Duration::milliseconds(1);
        for state in [JobState::Finished, JobState::Error, JobState::Canceled] {
            let key = ended_key(state, late, "~zzz");
            assert!(key.as_str() < OPEN_WORK_FROM && key.as_str() < "o|" && key.as_str() < "p|", "{key}");
            assert!(ended_key(state, early, "~zzz") < ended_key(state, late, "0"));
            assert!(key.starts_with(&ended_prefix(state)) && key < format!("{}~", ended_prefix(state)));
        }
    }
}
