//! Table Storage: the only place that reads or writes the product's state.
//!
//! - `{prefix}Jobs`: one row per logical job (PartitionKey = job id), and the `~index` partition: `o|{jobId}`
//!   for every job that is not final (the open-jobs index) and `p|{jobId}` for every job that needs placing
//!   (the pending marker). Both are written before the job row can need them and removed only after it no
//!   longer does, so the sweep finds all open work by reading one partition whose size follows open work,
//!   not history.
//!   The same partition holds `n|{jobId}`, the sweep's pointer to a job whose outcome notifications are not
//!   all delivered, written before the write that makes the job final. Their delivery state is the row
//!   `outbox` in the job's own partition, written in one transaction with that write (see `outbox`).
//!   Ended jobs are indexed by outcome and day in partitions `~ended|{State}|{yyyymmdd}` (see `listing`).
//! - `{prefix}Attempts`: PartitionKey = account. Row `a|{amsJobName}` while the attempt is active and
//!   `d|{amsJobName}` once final, plus the account's `counter` row. An attempt row and the counter change
//!   together in one entity group transaction guarded by ETags, so the counter always equals the number of
//!   active rows, and the sweep reads only the `a|` range. The counter is sharded: `counter|{0..32}`, each
//!   attempt counted in the shard its name hashes to, so concurrent writers on one account mostly touch
//!   different rows instead of all racing for one; in flight is the sum, read in one query together with the
//!   account's `mru` row (the cached MRU value). Opening an attempt also inserts `c|{amsJobName}`,
//!   which never moves: it makes opening idempotent even after the attempt has ended, so a repair that
//!   opens an attempt a crashed placement never recorded cannot count one twice.
//! - `{prefix}Health`: one row holding the health list, and one with what the last sweep repaired.
//! - `{prefix}Publications`: video-on-demand publication per region (see `publications`).
//!
//! Every read-modify-write takes a pure `decide` function and retries it on ETag conflicts, so concurrent
//! writers (duplicate events, parallel submissions, sweeps) serialise on the row instead of losing updates.
//! A job, an active attempt or a counter shard starts from the version this instance's last write of it
//! returned, when it holds one (see `held`), and reads only when that guess fails.

use crate::config::{Settings, StorageConfig};
use crate::domain::records::CounterUnderflow;
use crate::domain::HealthRecord;
use crate::domain::{AccountCounters, AttemptRecord, JobRecord, JobState, MruCache};
use chrono::{DateTime, Utc};
use rand::Rng;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::time::Duration;
use tables::{BatchOp, ETag, Entity, IfMatch, Table, TableError, TableService};

mod held;
mod listing;
mod outbox;
mod publications;
pub use listing::{JobSummary, OpenIndex};
pub use outbox::JobOutbox;
pub use publications::DefinitionsCheck;

/// How often a compare-and-swap is retried before giving up. Contention is per account or per job, so a
/// few dozen rounds cover hundreds of concurrent writers.
const MAX_CAS_ROUNDS: u32 = 60;
/// Counter shards per account: enough that a burst of concurrent writers on one account rarely collides
/// (8 left about one 412 per event at 32 concurrent events; 32 leave about 0.06), few enough that reading
/// the sum stays one small query. An attempt's shard is its name's hash modulo this number, so it must not
/// change under tables holding active attempts: their counts would be looked for in other shards.
const COUNTER_SHARDS: u32 = 32;
const MRU_ROW: &str = "mru";
const HEALTH_PARTITION: &str = "health";
const HEALTH_ROW: &str = "list";
const SWEEP_ROW: &str = "sweep";
/// The product's tables, each named `{prefix}{table}`.
const TABLES: [&str; 4] = ["Jobs", "Attempts", "Health", "Publications"];
const JOB_ROW: &str = "job";
/// Partition of the Jobs table holding the open-jobs index and pending markers; job ids cannot start
/// with `~`.
pub(crate) const INDEX_PARTITION: &str = "~index";

/// A storage failure, sorted for the caller.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Throttled, timed out or unreachable: worth retrying later (for events, by letting Event Grid retry).
    #[error("Table Storage is unavailable: {0}")]
    Unavailable(String),
    /// Too many concurrent writers kept changing the same row; also worth retrying.
    #[error("gave up after repeated concurrent updates of {0}")]
    Contention(String),
    /// The rows contradict each other or cannot be read.
    #[error("stored state is inconsistent: {0}")]
    Corrupt(String),
    /// Storage refused the request as wrong (a bug or a misconfiguration, not a passing condition).
    #[error("Table Storage refused the request: {0}")]
    Rejected(String),
}

impl StoreError {
    /// Whether trying again later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_) | StoreError::Contention(_))
    }
}

impl From<TableError> for StoreError {
    fn from(e: TableError) -> Self {
        if e.is_retryable() {
            StoreError::Unavailable(e.to_string())
        } else {
            StoreError::Rejected(e.to_string())
        }
    }
}

impl From<CounterUnderflow> for StoreError {
    fn from(e: CounterUnderflow) -> Self {
        StoreError::Corrupt(e.to_string())
    }
}

/// A record with the ETag it was read at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned<T> {
    /// The record.
    pub value: T,
    /// Its ETag.
    pub etag: ETag,
}

/// A record after a guarded update, and whether this caller's write made the change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Changed<T> {
    /// The record as stored.
    pub value: T,
    /// This call wrote it.
    pub changed: bool,
}

/// The outcome of a guarded change to an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptChange {
    /// The attempt moved from `before` to `after` (with its account's counters).
    Applied {
        /// The state the attempt was in.
        before: JobState,
        /// The attempt as it is now.
        after: AttemptRecord,
    },
    /// `decide` saw nothing to change, or the attempt had already ended.
    Unchanged(AttemptRecord),
}

/// Row shapes, with the record itself as JSON and a few plain columns for people browsing the tables.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RecordRow {
    record: String,
    #[serde(default)]
    state: String,
}

/// The `mru` row: the cached MRU value as JSON.
#[derive(Serialize, Deserialize)]
struct MruRow {
    #[serde(rename = "Mru", default)]
    mru: String,
}

/// An account's counters (the sum of its shards) and its cached MRU value, read in one query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountRow {
    /// Active attempts by state, and the units they need.
    pub counters: AccountCounters,
    /// The cached MRU value, once read.
    pub mru: Option<MruCache>,
    /// The `mru` row's version, for a guarded change of the cached value (`None`: never written).
    pub mru_etag: Option<ETag>,
    /// Each counter shard's version, so a reader can tell whether two reads saw the same counts.
    pub shard_etags: Vec<ETag>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct HealthRow {
    record: String,
}

/// The product's state in Table Storage.
#[derive(Clone)]
pub struct Store {
    service: TableService,
    jobs: Table,
    attempts: Table,
    health: Table,
    publications: Table,
    names: [String; 4],
    held: held::Held,
    /// Whether outcomes go to a topic, so every job that ends has something to announce (see
    /// [`Store::announcing_to_topic`]).
    topic: bool,
}

impl Store {
    /// Connects per the settings (no I/O yet).
    pub fn connect(settings: &Settings, http: reqwest::Client) -> Result<Store, StoreError> {
        let service = match &settings.storage {
            StorageConfig::ConnectionString(cs) => TableService::from_connection_string(cs, http)
                .map_err(|e| StoreError::Rejected(format!("TABLES_CONNECTION_STRING: {e}")))?,
            StorageConfig::Endpoint(url) => {
                let client_id = match &settings.arm_auth {
                    crate::config::ArmAuth::ManagedIdentity { client_id } => client_id.clone(),
                    crate::config::ArmAuth::None => None,
                };
                let credential = crate::identity::managed_identity(client_id.as_deref())
                    .map_err(|e| StoreError::Rejected(format!("managed identity for Table Storage: {e}")))?;
                TableService::with_token_credential(url.clone(), credential, http)
            }
        };
        Ok(Store::with_service(service, &settings.table_prefix)
            .announcing_to_topic(settings.notify.service_bus.is_some()))
    }

    /// Whether outcomes go to a topic. Without one, a job that ends without a callback URL of its own has
    /// nothing to announce, and its final write writes no delivery state and no pointer to it (see
    /// [`crate::domain::notification::announces`]). A store starts with the topic on: every final job gets
    /// its delivery state.
    pub fn announcing_to_topic(mut self, topic: bool) -> Store {
        self.topic = topic;
        self
    }

    /// Whether `job`, final, has an outcome to announce, so its final write writes its delivery state.
    pub fn announces(&self, job: &JobRecord) -> bool {
        crate::domain::notification::announces(job, self.topic)
    }

    /// A store on `service` whose tables carry `prefix`.
    pub fn with_service(service: TableService, prefix: &str) -> Store {
        let names = TABLES.map(|table| format!("{prefix}{table}"));
        Store {
            jobs: service.table(&names[0]),
            attempts: service.table(&names[1]),
            health: service.table(&names[2]),
            publications: service.table(&names[3]),
            service,
            names,
            held: held::Held::default(),
            topic: true,
        }
    }

    /// Creates missing tables and the health row. Safe to run on every start and from several instances at
    /// once. Counter shards and MRU rows are created by their first write, so adding an account needs nothing.
    ///
    /// The last step writes a marker row naming this set of tables, so a restart proves everything exists
    /// with one read of it (start-up time is the host's readiness probe, and most starts are restarts); a
    /// release that adds a table names a new set, and its first start creates what is missing.
    pub async fn ensure_ready(&self) -> Result<(), StoreError> {
        // Written once every table and the health row exist; named after the set of tables.
        let ready = format!("ready|{}", TABLES.join(","));
        match self.health.get::<Value>(HEALTH_PARTITION, &ready).await {
            Ok(Some(_)) => return Ok(()),
            Ok(None) | Err(TableError::NotFound) => {}
            Err(e) => return Err(e.into()),
        }
        for name in &self.names {
            self.service.create_table_if_missing(name).await?;
        }
        let empty = HealthRow { record: to_json(&HealthRecord::default()) };
        insert_if_missing(&self.health, HEALTH_PARTITION, HEALTH_ROW, &empty).await?;
        self.health.upsert(HEALTH_PARTITION, &ready, &json!({ "Tables": self.names.join(",") })).await?;
        Ok(())
    }

    // ---- jobs ----

    /// Reads a job.
    pub async fn get_job(&self, job_id: &str) -> Result<Option<Versioned<JobRecord>>, StoreError> {
        read_record(&self.jobs, job_id, JOB_ROW).await
    }

    /// Writes a new job: its version, or `None` if a job with that id already exists.
    pub async fn insert_job(&self, job: &JobRecord) -> Result<Option<ETag>, StoreError> {
        match self.jobs.insert(&job.job_id, JOB_ROW, &record_row(job, job.state)).await {
            Ok(etag) => {
                self.held.job(Versioned { value: job.clone(), etag: etag.clone() });
                Ok(Some(etag))
            }
            Err(TableError::AlreadyExists) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Applies `decide` to the job until it sticks. Returns the job as stored afterwards and whether this
    /// call changed it (`None` if the job does not exist), so only the writer whose change landed acts on it.
    pub async fn update_job(
        &self,
        job_id: &str,
        decide: impl Fn(&JobRecord) -> Option<JobRecord>,
    ) -> Result<Option<Changed<JobRecord>>, StoreError> {
        self.update_job_from(job_id, None, decide).await
    }

    /// [`Store::update_job`] starting from `known`, a version the caller already holds, instead of reading the
    /// job first (without one, from the version this instance last wrote, see `held`). If another writer
    /// changed the job since, the guarded write fails and the next round reads it, so a stale `known` costs a
    /// round trip, never a lost update.
    pub async fn update_job_from(
        &self,
        job_id: &str,
        known: Option<Versioned<JobRecord>>,
        decide: impl Fn(&JobRecord) -> Option<JobRecord>,
    ) -> Result<Option<Changed<JobRecord>>, StoreError> {
        let mut known = known.or_else(|| self.held.take_job(job_id));
        // The outbox pointer this call wrote, if it did: should another writer end the job first, it is
        // taken back (see `outbox`).
        let mut pointer = None;
        for round in 0..MAX_CAS_ROUNDS {
            let (current, held) = match known.take() {
                Some(current) => (current, true),
                None => match self.get_job(job_id).await? {
                    Some(current) => (current, false),
                    None => return Ok(None),
                },
            };
            let Some(next) = decide(&current.value) else {
                if held {
                    // "Nothing to change" must be said of the job as stored, not of a version that may be old.
                    continue;
                }
                if let Some(etag) = pointer {
                    self.withdraw_pointer(job_id, &current.value, etag).await?;
                }
                let value = current.value.clone();
                self.held.job(current);
                return Ok(Some(Changed { value, changed: false }));
            };
            let needs_marker = next.state == JobState::Pending && current.value.state != JobState::Pending;
            let ends = next.state.is_final() && !current.value.state.is_final();
            let announces = ends && self.announces(&next);
            if held && needs_marker {
                // The marker is written before the job, so it must follow the job as stored: a held version
                // that another writer has moved on could mark a job that no longer needs placing. Read it
                // first. (The outbox pointer needs no such care: a writer whose write then loses takes back a
                // pointer it wrote, see `outbox`.)
                continue;
            }
            if needs_marker {
                // The marker goes first, so a crash after the write still leaves the job findable.
                self.mark_pending(job_id, next.updated_at).await?;
            }
            let row = to_value(&record_row(&next, next.state));
            let written = if announces {
                // So does the outbox pointer: whoever makes the job final, and whatever dies after, its outcome
                // is announced. The delivery state goes in the same transaction as the job, so only the write
                // that ends the job creates it. Every path to a final job comes through here, so none can
                // forget it. A job with nothing to announce (no topic, no callback URL) gets neither, and its
                // final write is the plain replace below.
                if let Some(etag) = self.point_to_outbox(job_id, next.updated_at).await? {
                    pointer = Some(etag);
                }
                let ops = vec![
                    BatchOp::Replace { rk: JOB_ROW.to_owned(), body: row, if_match: IfMatch::ETag(current.etag) },
                    outbox::open_outbox_op(),
                ];
                self.jobs.transaction(job_id, ops).await.map(|etags| {
                    if let [Some(job), Some(outbox)] = etags.as_slice() {
                        self.held.ended(job_id, outbox::ended(&next, job, outbox));
                    }
                    etags.into_iter().next().flatten()
                })
            } else {
                self.jobs.replace(job_id, JOB_ROW, &row, IfMatch::ETag(current.etag)).await.map(Some)
            };
            match written {
                Ok(etag) => {
                    if let Some(etag) = etag {
                        self.held.job(Versioned { value: next.clone(), etag });
                    }
                    if ends {
                        // After the write: a crash before this leaves the open-jobs index row, and the sweep
                        // that removes it writes the ended-jobs row first.
                        self.close_job(&next).await?;
                    }
                    return Ok(Some(Changed { value: next, changed: true }));
                }
                Err(e) if is_conflict(&e) => backoff(round).await,
                Err(e) => return Err(e.into()),
            }
        }
        Err(StoreError::Contention(format!("job {job_id}")))
    }

    // ---- attempts and counters ----

    /// Reads an account's counters: the sum of its shards.
    pub async fn counters(&self, account: &str) -> Result<AccountCounters, StoreError> {
        Ok(self.account(account).await?.counters)
    }

    /// Reads an account's counter shards and its cached MRU value, in one query of a fixed, small size.
    pub async fn account(&self, account: &str) -> Result<AccountRow, StoreError> {
        let filter = format!(
            "PartitionKey eq {} and ((RowKey ge 'counter|' and RowKey lt 'counter}}') or RowKey eq '{MRU_ROW}')",
            tables::filter_string_literal(account)
        );
        let rows: Vec<Entity<Value>> = self.attempts.query(&filter).await?;
        let mut row =
            AccountRow { counters: AccountCounters::default(), mru: None, mru_etag: None, shard_etags: vec![] };
        for entity in rows {
            if entity.value.get("RowKey").and_then(Value::as_str) == Some(MRU_ROW) {
                let stored: MruRow = serde_json::from_value(entity.value)
                    .map_err(|e| StoreError::Corrupt(format!("the MRU row of {account}: {e}")))?;
                row.mru = if stored.mru.is_empty() { None } else { Some(from_json(&stored.mru)?) };
                row.mru_etag = Some(entity.etag);
            } else {
                let shard: AccountCounters = serde_json::from_value(entity.value)
                    .map_err(|e| StoreError::Corrupt(format!("a counter shard of {account}: {e}")))?;
                row.counters = row.counters.plus(&shard);
                row.shard_etags.push(entity.etag);
            }
        }
        Ok(row)
    }

    /// Stores a new cached MRU value if the `mru` row is still at `etag` (`None`: if it does not exist yet);
    /// `false` if another writer changed it first (read it again and decide again).
    pub async fn set_mru_cache(&self, account: &str, cache: &MruCache, etag: Option<ETag>) -> Result<bool, StoreError> {
        let row = MruRow { mru: to_json(cache) };
        let written = match etag {
            Some(etag) => self.attempts.replace(account, MRU_ROW, &row, IfMatch::ETag(etag)).await,
            None => self.attempts.insert(account, MRU_ROW, &row).await,
        };
        match written {
            Ok(_) => Ok(true),
            Err(TableError::PreconditionFailed | TableError::AlreadyExists | TableError::NotFound) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Reads the counter shard that counts `ams_job_name`: its number, and its counts with their version
    /// (`None` before its first write). Starts from the version this instance last wrote when it holds one.
    async fn shard(
        &self,
        account: &str,
        ams_job_name: &str,
    ) -> Result<(u32, Option<Versioned<AccountCounters>>), StoreError> {
        let shard = shard_of(ams_job_name);
        if let Some(held) = self.held.take_shard(account, shard) {
            return Ok((shard, Some(held)));
        }
        let row: Option<Entity<AccountCounters>> = self.attempts.get(account, &shard_key(shard)).await?;
        Ok((shard, row.map(|e| Versioned { value: e.value, etag: e.etag })))
    }

    /// Holds the versions a successful attempt transaction returned: the attempt's while it is active,
    /// and the shard's (the counter write is always the transaction's last operation).
    fn hold_written(&self, attempt: &AttemptRecord, shard: u32, counters: AccountCounters, etags: &[Option<ETag>]) {
        if let (true, Some(Some(etag))) = (attempt.is_active(), etags.first()) {
            self.held.attempt(Versioned { value: attempt.clone(), etag: etag.clone() });
        }
        if let Some(Some(etag)) = etags.last() {
            self.held.shard(&attempt.account, shard, Versioned { value: counters, etag: etag.clone() });
        }
    }

    /// Records a new active attempt and counts it in flight, in one transaction. Opening an attempt that
    /// is already open is a no-op, so a retried submission does not count twice. `false` when it was
    /// opened before.
    pub async fn open_attempt(&self, attempt: &AttemptRecord) -> Result<bool, StoreError> {
        let account = &attempt.account;
        for round in 0..MAX_CAS_ROUNDS {
            let (shard, counters) = self.shard(account, &attempt.ams_job_name).await?;
            let current = counters.as_ref().map(|c| c.value).unwrap_or_default();
            let next = current.moved(None, Some(attempt.state), attempt.units())?;
            let ops = vec![
                BatchOp::Insert {
                    rk: active_key(&attempt.ams_job_name),
                    body: to_value(&record_row(attempt, attempt.state)),
                },
                BatchOp::Insert { rk: claim_key(&attempt.ams_job_name), body: json!({ "Job": attempt.job_id }) },
                counter_op(shard, &next, counters.map(|c| c.etag)),
            ];
            match self.attempts.transaction(account, ops).await {
                Ok(etags) => {
                    self.hold_written(attempt, shard, next, &etags);
                    return Ok(true);
                }
                // Open now (index 0) or opened once before, perhaps ended since (index 1).
                Err(TableError::Batch { index: 0 | 1, source }) if matches!(*source, TableError::AlreadyExists) => {
                    return Ok(false)
                }
                // The shard changed, or was created, by another writer first.
                Err(TableError::Batch { source, .. })
                    if matches!(*source, TableError::PreconditionFailed | TableError::AlreadyExists) =>
                {
                    backoff(round).await
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(StoreError::Contention(format!("a counter shard of {account}")))
    }

    /// Reads an attempt, active or done.
    pub async fn get_attempt(&self, account: &str, ams_job_name: &str) -> Result<Option<AttemptRecord>, StoreError> {
        Ok(self.read_attempt(account, ams_job_name).await?.map(|(v, _)| v.value))
    }

    /// The account's active attempts (the `a|` range only; history is never scanned).
    pub async fn active_attempts(&self, account: &str) -> Result<Vec<AttemptRecord>, StoreError> {
        let filter = format!(
            "PartitionKey eq {} and RowKey ge 'a|' and RowKey lt 'a}}'",
            tables::filter_string_literal(account)
        );
        let rows: Vec<Entity<RecordRow>> = self.attempts.query(&filter).await?;
        rows.into_iter().map(|row| from_json(&row.value.record)).collect()
    }

    /// Applies `decide` to an active attempt until it sticks, moving the counters with it: a change of
    /// active state moves one count; reaching a final state moves the row from `a|` to `d|` and removes
    /// it from in flight, all in one transaction. `None` when the account has no attempt of that name.
    ///
    /// The attempt and its shard start from the versions this instance last wrote when it holds them (see
    /// `held`); both writes are guarded by those versions, so if another writer came between, the
    /// transaction fails and the next round reads.
    pub async fn change_attempt(
        &self,
        account: &str,
        ams_job_name: &str,
        decide: impl Fn(&AttemptRecord) -> Option<AttemptRecord>,
    ) -> Result<Option<AttemptChange>, StoreError> {
        let mut torn_rounds = 0;
        let mut held = self.held.take_attempt(account, ams_job_name);
        for round in 0..MAX_CAS_ROUNDS {
            let (current, active, from_held) = match held.take() {
                Some(current) => (current, true, true),
                None => match self.read_attempt(account, ams_job_name).await? {
                    Some((current, active)) => (current, active, false),
                    None => return Ok(None),
                },
            };
            if !active {
                return Ok(Some(AttemptChange::Unchanged(current.value)));
            }
            let before = current.value.clone();
            let Some(after) = decide(&before) else {
                if from_held {
                    // "Nothing to change" must be said of the attempt as stored, not of a version that may be old.
                    continue;
                }
                return Ok(Some(AttemptChange::Unchanged(before)));
            };
            let result = if before.state == after.state {
                // Same state: the counters do not move, so the counter row stays out of it.
                let row = record_row(&after, after.state);
                self.attempts
                    .replace(account, &active_key(ams_job_name), &row, IfMatch::ETag(current.etag))
                    .await
                    .map(|etag| self.held.attempt(Versioned { value: after.clone(), etag }))
            } else {
                let (shard, counters) = self.shard(account, ams_job_name).await?;
                let counters = counters.ok_or_else(|| {
                    StoreError::Corrupt(format!("attempt {ams_job_name} on {account} is active but never counted"))
                })?;
                // The attempt and the counters are read separately (or held from different writes), so another
                // writer may commit between the two. The transaction checks both ETags, so such a torn
                // snapshot can never be written; if it makes the arithmetic go negative, it is a lost race like
                // any other: read again.
                let next = match counters.value.moved(before.active_state(), after.active_state(), before.units()) {
                    Ok(next) => next,
                    Err(_) => {
                        torn_rounds += 1;
                        backoff(round).await;
                        continue;
                    }
                };
                let row = to_value(&record_row(&after, after.state));
                let mut ops = if after.is_active() {
                    vec![BatchOp::Replace {
                        rk: active_key(ams_job_name),
                        body: row,
                        if_match: IfMatch::ETag(current.etag.clone()),
                    }]
                } else {
                    vec![
                        BatchOp::Delete { rk: active_key(ams_job_name), if_match: IfMatch::ETag(current.etag.clone()) },
                        BatchOp::Upsert { rk: done_key(ams_job_name), body: row },
                    ]
                };
                ops.push(counter_op(shard, &next, Some(counters.etag)));
                let counter_index = ops.len() - 1;
                match self.attempts.transaction(account, ops).await {
                    Ok(etags) => {
                        self.hold_written(&after, shard, next, &etags);
                        Ok(())
                    }
                    Err(TableError::Batch { index, source })
                        if index == counter_index && matches!(*source, TableError::PreconditionFailed) =>
                    {
                        // A transaction answers with its first failing operation, so the attempt row passed
                        // its check and only the shard moved on (another attempt it counts changed): the next
                        // round starts from this attempt and reads only the shard.
                        held = Some(current);
                        backoff(round).await;
                        continue;
                    }
                    Err(e) => Err(e),
                }
            };
            match result {
                Ok(()) => return Ok(Some(AttemptChange::Applied { before: before.state, after })),
                Err(e) if is_conflict(&e) => backoff(round).await,
                Err(e) => return Err(e.into()),
            }
        }
        if torn_rounds == MAX_CAS_ROUNDS {
            // Every round saw counters that disagree with the rows: not a race but damage.
            return Err(StoreError::Corrupt(format!("counters of {account} disagree with attempt {ams_job_name}")));
        }
        Err(StoreError::Contention(format!("attempt {ams_job_name} on {account}")))
    }

    /// Reads `a|name`, then `d|name`: `(record, active)`.
    async fn read_attempt(
        &self,
        account: &str,
        name: &str,
    ) -> Result<Option<(Versioned<AttemptRecord>, bool)>, StoreError> {
        if let Some(active) = read_record(&self.attempts, account, &active_key(name)).await? {
            return Ok(Some((active, true)));
        }
        Ok(read_record(&self.attempts, account, &done_key(name)).await?.map(|done| (done, false)))
    }

    // ---- health ----

    /// The health list.
    pub async fn health(&self) -> Result<HealthRecord, StoreError> {
        Ok(self.read_health().await?.value)
    }

    async fn read_health(&self) -> Result<Versioned<HealthRecord>, StoreError> {
        let row: Entity<HealthRow> = self
            .health
            .get(HEALTH_PARTITION, HEALTH_ROW)
            .await?
            .ok_or_else(|| StoreError::Corrupt("the health row is missing".to_owned()))?;
        Ok(Versioned { value: from_json(&row.value.record)?, etag: row.etag })
    }

    /// Applies `decide` to the health list until it sticks. Returns the list as stored afterwards and what
    /// `decide` returned alongside the change it made (`None` when it made none), so only the writer whose
    /// change landed acts on it (sends the alert, for example).
    pub async fn update_health<T>(
        &self,
        decide: impl Fn(&HealthRecord) -> Option<(HealthRecord, T)>,
    ) -> Result<(HealthRecord, Option<T>), StoreError> {
        for round in 0..MAX_CAS_ROUNDS {
            let current = self.read_health().await?;
            let Some((next, outcome)) = decide(&current.value) else { return Ok((current.value, None)) };
            let row = HealthRow { record: to_json(&next) };
            match self.health.replace(HEALTH_PARTITION, HEALTH_ROW, &row, IfMatch::ETag(current.etag)).await {
                Ok(_) => return Ok((next, Some(outcome))),
                Err(TableError::PreconditionFailed) => backoff(round).await,
                Err(e) => return Err(e.into()),
            }
        }
        Err(StoreError::Contention("the health list".to_owned()))
    }

    // ---- the open-jobs index and pending markers ----

    /// Indexes a job about to be accepted as open and pending, in one transaction, before its row is
    /// written: whatever happens after, the sweep finds it.
    pub async fn index_new_job(&self, job_id: &str, now: DateTime<Utc>) -> Result<(), StoreError> {
        let since = json!({ "Since": now.to_rfc3339() });
        let ops = vec![
            BatchOp::Upsert { rk: open_key(job_id), body: since.clone() },
            BatchOp::Upsert { rk: pending_key(job_id), body: since },
        ];
        self.jobs.transaction(INDEX_PARTITION, ops).await?;
        Ok(())
    }

    /// Marks a job as needing placement. Written *before* the job can be Pending, and removed only after
    /// it no longer is, so the sweep finds every pending job without scanning the Jobs table.
    pub async fn mark_pending(&self, job_id: &str, now: DateTime<Utc>) -> Result<(), StoreError> {
        let marker = json!({ "Since": now.to_rfc3339() });
        self.jobs.upsert(INDEX_PARTITION, &pending_key(job_id), &marker).await?;
        Ok(())
    }

    /// Removes a job's pending marker (a missing one is fine).
    pub async fn unmark_pending(&self, job_id: &str) -> Result<(), StoreError> {
        self.delete_index_row(&pending_key(job_id)).await
    }

    async fn delete_index_row(&self, rk: &str) -> Result<(), StoreError> {
        match self.jobs.delete(INDEX_PARTITION, rk, IfMatch::Any).await {
            Ok(()) | Err(TableError::NotFound) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Jobs marked as needing placement, with when they were marked.
    pub async fn pending_jobs(&self) -> Result<Vec<(String, Option<DateTime<Utc>>)>, StoreError> {
        Ok(self.index().await?.pending)
    }

    /// The whole index in one query: its size follows open work, not history.
    pub async fn index(&self) -> Result<JobIndex, StoreError> {
        let filter = format!("PartitionKey eq {}", tables::filter_string_literal(INDEX_PARTITION));
        let rows: Vec<Entity<Value>> = self.jobs.query(&filter).await?;
        let mut index = JobIndex::default();
        for row in rows {
            let Some(key) = row.value.get("RowKey").and_then(Value::as_str) else { continue };
            let since = row.value.get("Since").and_then(Value::as_str).and_then(|s| s.parse().ok());
            if let Some(id) = key.strip_prefix("o|") {
                index.open.push((id.to_owned(), since));
            } else if let Some(id) = key.strip_prefix("p|") {
                index.pending.push((id.to_owned(), since));
            } else if let Some(id) = key.strip_prefix("n|") {
                index.outbox.push((id.to_owned(), since));
            }
        }
        Ok(index)
    }

    // ---- sweep results ----

    /// Records what the sweep that ran at `at` repaired, for operators.
    pub async fn record_sweep(&self, summary: &SweepSummary) -> Result<(), StoreError> {
        self.health.upsert(HEALTH_PARTITION, SWEEP_ROW, &HealthRow { record: to_json(summary) }).await?;
        Ok(())
    }

    /// What the last sweep recorded, if any sweep ran.
    pub async fn last_sweep(&self) -> Result<Option<SweepSummary>, StoreError> {
        match self.health.get::<HealthRow>(HEALTH_PARTITION, SWEEP_ROW).await? {
            Some(row) => Ok(Some(from_json(&row.value.record)?)),
            None => Ok(None),
        }
    }
}

/// The `~index` partition: open jobs and pending jobs, each with when it was indexed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobIndex {
    /// Jobs that are not final.
    pub open: Vec<(String, Option<DateTime<Utc>>)>,
    /// Jobs that need placing.
    pub pending: Vec<(String, Option<DateTime<Utc>>)>,
    /// Jobs whose outcome notifications are not all delivered.
    pub outbox: Vec<(String, Option<DateTime<Utc>>)>,
}

/// What one sweep found, for GetStatus.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SweepSummary {
    /// When the sweep started.
    pub at: DateTime<Utc>,
    /// Open jobs it found breaking the rule that each has an active attempt or a pending marker, and
    /// repaired.
    pub repaired: u32,
    /// Open jobs in the index.
    pub open: u32,
    /// Jobs still waiting for an account after it placed what it could.
    pub pending: u32,
    /// Jobs whose outcome notifications were not all delivered yet (a callback being retried, a
    /// `Published` message waiting for the last region).
    #[serde(default)]
    pub notifications: u32,
}

fn open_key(job_id: &str) -> String {
    format!("o|{job_id}")
}

fn pending_key(job_id: &str) -> String {
    format!("p|{job_id}")
}

fn claim_key(ams_job_name: &str) -> String {
    format!("c|{ams_job_name}")
}

fn active_key(ams_job_name: &str) -> String {
    format!("a|{ams_job_name}")
}

fn done_key(ams_job_name: &str) -> String {
    format!("d|{ams_job_name}")
}

fn record_row(record: &impl Serialize, state: JobState) -> RecordRow {
    RecordRow { record: to_json(record), state: state.to_string() }
}

/// The shard an attempt is counted in: a stable hash of its name (FNV-1a), so every writer of one attempt
/// finds the same shard without storing it.
fn shard_of(ams_job_name: &str) -> u32 {
    let hash = ams_job_name.bytes().fold(0x811c_9dc5_u32, |h, b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193));
    hash % COUNTER_SHARDS
}

fn shard_key(shard: u32) -> String {
    format!("counter|{shard}")
}

/// The write of a shard's new counts: guarded by its version, or an insert for its first write.
fn counter_op(shard: u32, counters: &AccountCounters, etag: Option<ETag>) -> BatchOp {
    let rk = shard_key(shard);
    match etag {
        Some(etag) => BatchOp::Replace { rk, body: to_value(counters), if_match: IfMatch::ETag(etag) },
        None => BatchOp::Insert { rk, body: to_value(counters) },
    }
}

/// A lost race on a guarded write: another writer changed the row first, or already made the change.
fn is_conflict(e: &TableError) -> bool {
    match e {
        TableError::PreconditionFailed | TableError::NotFound => true,
        TableError::Batch { source, .. } => {
            matches!(**source, TableError::PreconditionFailed | TableError::NotFound | TableError::AlreadyExists)
        }
        _ => false,
    }
}

async fn read_record<T: DeserializeOwned>(
    table: &Table,
    pk: &str,
    rk: &str,
) -> Result<Option<Versioned<T>>, StoreError> {
    let Some(row) = table.get::<RecordRow>(pk, rk).await? else { return Ok(None) };
    Ok(Some(Versioned { value: from_json(&row.value.record)?, etag: row.etag }))
}

async fn insert_if_missing(table: &Table, pk: &str, rk: &str, row: &impl Serialize) -> Result<(), StoreError> {
    match table.insert(pk, rk, row).await {
        Ok(_) | Err(TableError::AlreadyExists) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Waits a little longer each round, with jitter, so racing writers spread out instead of colliding again.
pub(crate) async fn backoff(round: u32) {
    // Short caps: under a burst the counter row is contended and callers are waiting on an HTTP answer.
    let cap_ms = 5u64 << round.min(4);
    let wait = rand::rng().random_range(1..=cap_ms);
    tokio::time::sleep(Duration::from_millis(wait)).await;
}

fn to_json(value: &impl Serialize) -> String {
    // Records are plain structs and maps of strings; serializing them cannot fail.
    serde_json::to_string(value).unwrap_or_default()
}

fn to_value(value: &impl Serialize) -> Value {
    serde_json::to_value(value).unwrap_or_else(|_| json!({}))
}

fn from_json<T: DeserializeOwned>(text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("unreadable record: {e}")))
}
