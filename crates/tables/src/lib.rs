//! A small Azure Table Storage client speaking the REST API directly.
//!
//! The only published Rust Tables crate is tied to a legacy `azure_core`, so
//! this crate implements the part of the protocol the product needs: Shared
//! Key and bearer-token auth, entity CRUD with ETags, queries that follow
//! continuation tokens, and entity group transactions (`$batch`).
//!
//! Design rules:
//! - Every failure is classified into a [`TableError`] kind; callers branch on
//!   the kind, and [`TableError::is_retryable`] says whether trying again may help.
//! - Writes are never retried internally: a write that timed out may have been
//!   applied. Reads and table creation retry throttling and transient failures
//!   a few times ([`READ_RETRY_BACKOFF`]).
//! - Entities are any `Serialize`/`Deserialize` type mapping to a flat JSON
//!   object of strings, bools, doubles and 32-bit integers; see [`entity`] for
//!   what is refused and why.
//!
//! ```no_run
//! # async fn demo() -> Result<(), tables::TableError> {
//! use tables::{IfMatch, TableService};
//! let svc = TableService::from_connection_string("UseDevelopmentStorage=true", reqwest::Client::new())?;
//! svc.create_table_if_missing("jobs").await?;
//! let jobs = svc.table("jobs");
//! let etag = jobs.insert("p", "r", &serde_json::json!({"State": "queued"})).await?;
//! jobs.merge("p", "r", &serde_json::json!({"State": "running"}), IfMatch::ETag(etag)).await?;
//! # Ok(()) }
//! ```

pub mod auth;
pub mod batch;
mod client;
pub mod connection;
pub mod entity;
mod error;

pub use batch::{BatchOp, MAX_BATCH_OPERATIONS};
pub use client::{Continuation, Page, Table, TableService, DEFAULT_TIMEOUT, READ_RETRY_BACKOFF};
pub use connection::{parse_connection_string, ConnectionInfo};
pub use entity::{filter_string_literal, ETag, Entity, IfMatch};
pub use error::TableError;
