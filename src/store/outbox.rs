//! The outbox of outcome notifications: one row `n|{jobId}` in the Jobs table's `~index` partition for
//! every job whose outcome still has to be delivered.
//!
//! The store writes the row *before* the write that makes a job final (the job row and the index are in
//! different partitions, so they cannot share a transaction), the same way the pending marker goes before
//! a job can become Pending. Every final job therefore has its row until its messages are delivered,
//! whatever instance dies where; the sweep finds the rows in the index query it already makes. A row may
//! also be left by a writer that lost its race to a different outcome, or by one that died before its
//! write: the notifier reads the job, and delivers what the job row says, never what the row's writer meant.

use super::{Store, StoreError, Versioned, INDEX_PARTITION};
use crate::domain::notification::Outbox;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tables::{ETag, IfMatch, TableError};

/// The stored row: when it was written, and the delivery state as JSON (empty until the first delivery).
#[derive(Serialize, Deserialize)]
struct Row {
    #[serde(rename = "Since", default)]
    since: String,
    #[serde(rename = "Outbox", default)]
    outbox: String,
}

/// One job's outbox row as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxRow {
    /// When the row was written.
    pub since: Option<DateTime<Utc>>,
    /// Its deliveries so far.
    pub outbox: Outbox,
}

pub(super) fn outbox_key(job_id: &str) -> String {
    format!("n|{job_id}")
}

impl Store {
    /// Notes that the job is about to end, before the write that ends it. A row already there is kept as
    /// it is: its deliveries may be under way.
    pub async fn note_outcome(&self, job_id: &str, now: DateTime<Utc>) -> Result<(), StoreError> {
        let row = Row { since: now.to_rfc3339(), outbox: String::new() };
        match self.jobs.insert(INDEX_PARTITION, &outbox_key(job_id), &row).await {
            Ok(_) | Err(TableError::AlreadyExists) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// The job's outbox row, if it has one.
    pub async fn outbox(&self, job_id: &str) -> Result<Option<Versioned<OutboxRow>>, StoreError> {
        let Some(entity) = self.jobs.get::<Row>(INDEX_PARTITION, &outbox_key(job_id)).await? else { return Ok(None) };
        let outbox =
            if entity.value.outbox.is_empty() { Outbox::default() } else { super::from_json(&entity.value.outbox)? };
        let since = entity.value.since.parse().ok();
        Ok(Some(Versioned { value: OutboxRow { since, outbox }, etag: entity.etag }))
    }

    /// Replaces the row if it is still at `etag`. Its new version, or `None` when another writer changed or
    /// removed it first (that writer's view wins).
    pub async fn replace_outbox(&self, job_id: &str, row: &OutboxRow, etag: ETag) -> Result<Option<ETag>, StoreError> {
        let stored =
            Row { since: row.since.map(|t| t.to_rfc3339()).unwrap_or_default(), outbox: super::to_json(&row.outbox) };
        match self.jobs.replace(INDEX_PARTITION, &outbox_key(job_id), &stored, IfMatch::ETag(etag)).await {
            Ok(etag) => Ok(Some(etag)),
            Err(TableError::PreconditionFailed | TableError::NotFound) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Removes the row if it is still at `etag` (everything was delivered); `false` if another writer
    /// changed or removed it first.
    pub async fn delete_outbox(&self, job_id: &str, etag: ETag) -> Result<bool, StoreError> {
        match self.jobs.delete(INDEX_PARTITION, &outbox_key(job_id), IfMatch::ETag(etag)).await {
            Ok(()) => Ok(true),
            Err(TableError::PreconditionFailed | TableError::NotFound) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }
}
