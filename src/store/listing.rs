//! Listings whose cost follows the page, not the history.
//!
//! Open and pending jobs are pages of the `~index` partition (`o|` and `p|` rows), which holds only open
//! work. Ended jobs have an index of their own in the Jobs table: one row per job in partition
//! `~ended|{State}|{yyyymmdd}` (the day it ended, UTC) with row key `{endedAt}|{jobId}`, the time in a fixed
//! width so that key order is time order. It is written after the job's final write and before the job
//! leaves the open-jobs index, so a crash between the two leaves the `o|` row, and the sweep that removes it
//! writes the ended row first: every final job has one or the other. A final job never changes again, so
//! every writer of its ended row writes the same key and the same summary.
//!
//! The day buckets spread a burst of endings over partitions instead of one that every ending appends to,
//! and let old days be deleted partition by partition. One key-range query reads across buckets in time
//! order, so an empty day costs nothing.

use super::{Store, StoreError, INDEX_PARTITION};
use crate::domain::records::ErrorInfo;
use crate::domain::{JobRecord, JobState};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tables::{filter_string_literal, Continuation, Entity};

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

const ENDED_PREFIX: &str = "~ended|";

fn ended_partition_prefix(state: JobState) -> String {
    format!("{ENDED_PREFIX}{state}|")
}

fn ended_partition(state: JobState, at: DateTime<Utc>) -> String {
    format!("{}{}", ended_partition_prefix(state), at.format("%Y%m%d"))
}

/// Fixed width, so that string order is time order.
fn time_key(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

impl Store {
    /// Indexes a job that has just ended, then takes it out of the open-jobs index; a job that is not final
    /// is left alone. Idempotent: every caller writes the same row.
    pub async fn close_job(&self, job: &JobRecord) -> Result<(), StoreError> {
        if !job.state.is_final() {
            return Ok(());
        }
        let row = EndedRow { state: job.state.to_string(), summary: super::to_json(&JobSummary::from(job)) };
        let rk = format!("{}|{}", time_key(job.updated_at), job.job_id);
        self.jobs.upsert(&ended_partition(job.state, job.updated_at), &rk, &row).await?;
        self.forget_open(&job.job_id).await
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
        let prefix = ended_partition_prefix(state);
        let start = since.map_or_else(|| prefix.clone(), |at| ended_partition(state, at));
        let mut filter = format!(
            "PartitionKey ge {} and PartitionKey lt {}",
            filter_string_literal(&start),
            // `~` sorts after the digits of every day.
            filter_string_literal(&format!("{prefix}~"))
        );
        if let Some(since) = since {
            // Every later day's keys are later times, so one bound on the row key serves every bucket.
            filter.push_str(&format!(" and RowKey ge {}", filter_string_literal(&time_key(since))));
        }
        let page = self.jobs.query_page::<EndedRow>(&filter, Some(top), from).await?;
        let jobs: Result<Vec<JobSummary>, StoreError> =
            page.entities.iter().map(|e: &Entity<EndedRow>| super::from_json(&e.value.summary)).collect();
        Ok((jobs?, page.next))
    }
}
