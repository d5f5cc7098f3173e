//! The `{prefix}Publications` table.
//!
//! - PartitionKey = the account published to. RowKey `a|{jobId}` while that region's publication is open,
//!   `d|{jobId}` once it is Published or in Conflict (moved in one entity group transaction). The sweep reads
//!   only the `a|` range of each account, so its cost follows open publications, not history.
//! - RowKey `c|{jobId}`: the claim, written in the same transaction as the first `a|` row and never moved,
//!   so a repeated event cannot open a second publication after the first has moved to `d|`.
//! - Partition `~definitions`, RowKey = account: when that account's definitions were last checked.
//!
//! Rows hold locator names, locator ids, content key ids and paths: never a content key value or a SAS URL.

use super::{backoff, from_json, to_json, to_value, Changed, Store, StoreError, Versioned, MAX_CAS_ROUNDS};
use crate::domain::publication::PublicationRecord;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tables::{BatchOp, Entity, IfMatch, TableError};

/// Partition of the definitions checks; account names cannot start with `~`.
const DEFINITIONS_PARTITION: &str = "~definitions";

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PublicationRow {
    record: String,
    #[serde(default)]
    state: String,
    #[serde(default)]
    job_id: String,
}

fn row(record: &PublicationRecord) -> PublicationRow {
    PublicationRow { record: to_json(record), state: record.state.to_string(), job_id: record.job_id.clone() }
}

fn open_key(job_id: &str) -> String {
    format!("a|{job_id}")
}

fn done_key(job_id: &str) -> String {
    format!("d|{job_id}")
}

fn claim_key(job_id: &str) -> String {
    format!("c|{job_id}")
}

/// The last check of one account's definitions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DefinitionsCheck {
    /// When the account was last found in line with the definitions (or repaired).
    pub checked_at: DateTime<Utc>,
    /// The definitions' version then.
    pub version: u32,
    /// A digest of the resolved definitions then, so a changed setting (a new signing key) is applied at once.
    pub digest: String,
}

impl Store {
    /// Writes a region's publication unless the job already has one there (open or done). `false` if it
    /// had, so a repeated event changes nothing.
    pub async fn insert_publication(&self, record: &PublicationRecord) -> Result<bool, StoreError> {
        // Checking for `d|` and then inserting `a|` would race with a concurrent delivery that publishes and
        // moves the row in between; the claim row makes "first time" one atomic insert.
        let claim = serde_json::json!({ "JobId": record.job_id });
        let ops = vec![
            BatchOp::Insert { rk: claim_key(&record.job_id), body: claim },
            BatchOp::Insert { rk: open_key(&record.job_id), body: to_value(&row(record)) },
        ];
        match self.publications.transaction(&record.account, ops).await {
            Ok(_) => Ok(true),
            Err(TableError::Batch { source, .. }) if matches!(*source, TableError::AlreadyExists) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// A job's publication in one account, open or done.
    pub async fn get_publication(&self, account: &str, job_id: &str) -> Result<Option<PublicationRecord>, StoreError> {
        Ok(self.read_publication(account, job_id).await?.map(|(v, _)| v.value))
    }

    async fn read_publication(
        &self,
        account: &str,
        job_id: &str,
    ) -> Result<Option<(Versioned<PublicationRecord>, bool)>, StoreError> {
        for (key, open) in [(open_key(job_id), true), (done_key(job_id), false)] {
            if let Some(row) = self.publications.get::<PublicationRow>(account, &key).await? {
                return Ok(Some((Versioned { value: from_json(&row.value.record)?, etag: row.etag }, open)));
            }
        }
        Ok(None)
    }

    /// The account's open publications (the `a|` range only).
    pub async fn open_publications(&self, account: &str) -> Result<Vec<PublicationRecord>, StoreError> {
        let filter = format!(
            "PartitionKey eq {} and RowKey ge 'a|' and RowKey lt 'a}}'",
            tables::filter_string_literal(account)
        );
        let rows: Vec<Entity<PublicationRow>> = self.publications.query(&filter).await?;
        rows.into_iter().map(|r| from_json(&r.value.record)).collect()
    }

    /// Applies `decide` to an open publication until it sticks; a final state moves the row from `a|` to
    /// `d|` in one transaction. `None` when the account has no publication of the job; an unchanged record
    /// when it is already done or `decide` changes nothing.
    pub async fn update_publication(
        &self,
        account: &str,
        job_id: &str,
        decide: impl Fn(&PublicationRecord) -> Option<PublicationRecord>,
    ) -> Result<Option<Changed<PublicationRecord>>, StoreError> {
        for round in 0..MAX_CAS_ROUNDS {
            let Some((current, open)) = self.read_publication(account, job_id).await? else { return Ok(None) };
            let unchanged = Changed { value: current.value.clone(), changed: false };
            if !open {
                return Ok(Some(unchanged));
            }
            let Some(next) = decide(&current.value) else { return Ok(Some(unchanged)) };
            let result = if next.state.is_final() {
                let ops = vec![
                    BatchOp::Delete { rk: open_key(job_id), if_match: IfMatch::ETag(current.etag) },
                    BatchOp::Upsert { rk: done_key(job_id), body: super::to_value(&row(&next)) },
                ];
                self.publications.transaction(account, ops).await.map(drop)
            } else {
                self.publications
                    .replace(account, &open_key(job_id), &row(&next), IfMatch::ETag(current.etag))
                    .await
                    .map(drop)
            };
            match result {
                Ok(()) => return Ok(Some(Changed { value: next, changed: true })),
                Err(e) if super::is_conflict(&e) => backoff(round).await,
                Err(e) => return Err(e.into()),
            }
        }
        Err(StoreError::Contention(format!("publication of {job_id} in {account}")))
    }

    /// When the account's definitions were last checked, if ever.
    pub async fn definitions_check(&self, account: &str) -> Result<Option<DefinitionsCheck>, StoreError> {
        Ok(self.publications.get::<DefinitionsCheck>(DEFINITIONS_PARTITION, account).await?.map(|e| e.value))
    }

    /// Records a check of the account's definitions.
    pub async fn record_definitions_check(&self, account: &str, check: &DefinitionsCheck) -> Result<(), StoreError> {
        self.publications.upsert(DEFINITIONS_PARTITION, account, check).await?;
        Ok(())
    }

    /// Forgets the account's last check, so the next sweep checks it (after it comes back into rotation).
    pub async fn forget_definitions_check(&self, account: &str) -> Result<(), StoreError> {
        match self.publications.delete(DEFINITIONS_PARTITION, account, IfMatch::Any).await {
            Ok(()) | Err(TableError::NotFound) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}
