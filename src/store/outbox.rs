//! The outbox of outcome notifications, in two rows per final job whose messages are not all delivered:
//!
//! - `outbox` in the job's own partition holds the delivery state. The write that makes a job final writes
//!   it in the same entity group transaction, so it exists exactly when the job is final and something is
//!   left to deliver: a writer that lost the race to end the job writes nothing here, and once delivery
//!   removes the row, a final job without one has had its messages delivered.
//! - `n|{jobId}` in the Jobs table's `~index` partition is the sweep's pointer to the job. It cannot share a
//!   transaction with the job row, so the store writes it *before* the final write (the same way the pending
//!   marker goes before a job can become Pending): whatever instance dies where, a final job with messages
//!   left has its pointer. A pointer can outlive its use (a writer that lost its race may insert it again
//!   after delivery removed it); the notifier removes any pointer whose job is final without an `outbox` row,
//!   and sends nothing for it.

use super::{from_json, to_json, RecordRow, Store, StoreError, Versioned, INDEX_PARTITION, JOB_ROW};
use crate::domain::notification::Outbox;
use crate::domain::JobRecord;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tables::{BatchOp, ETag, Entity, IfMatch, TableError};

/// The row key of the delivery state in a job's partition.
pub(super) const OUTBOX_ROW: &str = "outbox";

/// The pointer in the index: when it was written.
#[derive(Serialize, Deserialize)]
struct Pointer {
    #[serde(rename = "Since", default)]
    since: String,
}

/// The delivery state as stored: JSON, empty before the first delivery.
#[derive(Serialize, Deserialize)]
struct StateRow {
    #[serde(rename = "Outbox", default)]
    outbox: String,
}

/// A job and its delivery state, read together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobOutbox {
    /// The job, if it exists.
    pub job: Option<Versioned<JobRecord>>,
    /// Its delivery state, while something is left to deliver.
    pub outbox: Option<Versioned<Outbox>>,
}

fn pointer_key(job_id: &str) -> String {
    format!("n|{job_id}")
}

/// The insert of a job's empty delivery state, for the transaction that makes the job final. An upsert: only
/// one write makes a job final (it is guarded by the job's version), so nothing it could replace is live.
pub(super) fn open_outbox_op() -> BatchOp {
    BatchOp::Upsert { rk: OUTBOX_ROW.to_owned(), body: json!({ "Outbox": "" }) }
}

/// A job and its delivery state as the transaction that ended the job left them.
pub(super) fn ended(job: &JobRecord, job_etag: &ETag, outbox_etag: &ETag) -> JobOutbox {
    JobOutbox {
        job: Some(Versioned { value: job.clone(), etag: job_etag.clone() }),
        outbox: Some(Versioned { value: Outbox::default(), etag: outbox_etag.clone() }),
    }
}

impl Store {
    /// Writes the job's pointer, before the write that ends it. Returns the pointer's version if this call
    /// wrote it (`None`: it was there already), so a writer that then loses its race can take back a pointer
    /// nobody needs.
    pub(super) async fn point_to_outbox(&self, job_id: &str, now: DateTime<Utc>) -> Result<Option<ETag>, StoreError> {
        let row = Pointer { since: now.to_rfc3339() };
        match self.jobs.insert(INDEX_PARTITION, &pointer_key(job_id), &row).await {
            Ok(etag) => Ok(Some(etag)),
            Err(TableError::AlreadyExists) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// After a write that ended the job lost its race: if the job is final and its messages are delivered
    /// already, removes the pointer this call wrote (at `etag`), which would otherwise wait for a sweep. If
    /// they are still being delivered, the delivery removes the pointer when it ends.
    pub(super) async fn withdraw_pointer(&self, job_id: &str, job: &JobRecord, etag: ETag) -> Result<(), StoreError> {
        if !job.state.is_final() || self.jobs.get::<Value>(job_id, OUTBOX_ROW).await?.is_some() {
            return Ok(());
        }
        match self.jobs.delete(INDEX_PARTITION, &pointer_key(job_id), IfMatch::ETag(etag)).await {
            Ok(()) | Err(TableError::PreconditionFailed | TableError::NotFound) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// The job and its delivery state as this instance's write that ended the job left them, if it did
    /// (taken: only the first delivery starts from them). A guess like every held version: if another
    /// instance has claimed the delivery state since, the guarded claim fails and that instance delivers.
    pub fn ended_here(&self, job_id: &str) -> Option<JobOutbox> {
        self.held.take_ended(job_id)
    }

    /// The job and its delivery state, in one query of its partition.
    pub async fn job_outbox(&self, job_id: &str) -> Result<JobOutbox, StoreError> {
        let filter = format!("PartitionKey eq {}", tables::filter_string_literal(job_id));
        let rows: Vec<Entity<Value>> = self.jobs.query(&filter).await?;
        let mut found = JobOutbox { job: None, outbox: None };
        for Entity { value, etag } in rows {
            match value.get("RowKey").and_then(Value::as_str) {
                Some(JOB_ROW) => {
                    let row: RecordRow = serde_json::from_value(value)
                        .map_err(|e| StoreError::Corrupt(format!("job {job_id}: unreadable row: {e}")))?;
                    found.job = Some(Versioned { value: from_json(&row.record)?, etag });
                }
                Some(OUTBOX_ROW) => {
                    let row: StateRow = serde_json::from_value(value)
                        .map_err(|e| StoreError::Corrupt(format!("job {job_id}: unreadable outbox: {e}")))?;
                    let outbox = if row.outbox.is_empty() { Outbox::default() } else { from_json(&row.outbox)? };
                    found.outbox = Some(Versioned { value: outbox, etag });
                }
                _ => {}
            }
        }
        Ok(found)
    }

    /// When a job's pointer was written, if it has one.
    pub async fn outbox_pointer(&self, job_id: &str) -> Result<Option<Option<DateTime<Utc>>>, StoreError> {
        let row = self.jobs.get::<Pointer>(INDEX_PARTITION, &pointer_key(job_id)).await?;
        Ok(row.map(|row| row.value.since.parse().ok()))
    }

    /// Replaces the delivery state if it is still at `etag`. Its new version, or `None` when another writer
    /// changed or removed it first (that writer's view wins).
    pub async fn replace_outbox(&self, job_id: &str, outbox: &Outbox, etag: ETag) -> Result<Option<ETag>, StoreError> {
        let row = StateRow { outbox: to_json(outbox) };
        match self.jobs.replace(job_id, OUTBOX_ROW, &row, IfMatch::ETag(etag)).await {
            Ok(etag) => Ok(Some(etag)),
            Err(TableError::PreconditionFailed | TableError::NotFound) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Everything was delivered: removes the delivery state if it is still at `etag`, then the pointer.
    /// `false` if another writer changed or removed the state first (it goes on from there).
    pub async fn close_outbox(&self, job_id: &str, etag: ETag) -> Result<bool, StoreError> {
        match self.jobs.delete(job_id, OUTBOX_ROW, IfMatch::ETag(etag)).await {
            Ok(()) => {}
            Err(TableError::PreconditionFailed | TableError::NotFound) => return Ok(false),
            Err(e) => return Err(e.into()),
        }
        // A crash here leaves the pointer of a final job without delivery state: the next look removes it.
        self.forget_outbox_pointer(job_id).await?;
        Ok(true)
    }

    /// Removes a job's pointer. Only for a job that is final without delivery state (or has no row at
    /// all): nothing can need the pointer again, as a job ends once.
    pub async fn forget_outbox_pointer(&self, job_id: &str) -> Result<(), StoreError> {
        self.delete_index_row(&pointer_key(job_id)).await
    }
}
