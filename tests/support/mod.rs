//! The local stack for the handler's integration tests (see `testkit::stack`), plus checks that read the
//! product's own tables.
#![allow(dead_code, unused_imports)]

use ams_failover::domain::AccountCounters;
use ams_failover::store::Store;
use anyhow::bail;
use serde_json::Value;
use std::ops::Deref;
use std::path::PathBuf;
use std::time::Duration;
use tables::TableService;
pub use testkit::stack::{
    eventually, handler_settings, job_body, start_emulator, StackOptions, RESOURCE_GROUP, SUBSCRIPTION,
};

/// Options for a stack running this package's handler on the repository's function app.
pub fn options() -> StackOptions {
    StackOptions::new(PathBuf::from(env!("CARGO_BIN_EXE_handler")), PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

/// The stack, with a store on its tables.
pub struct Stack {
    inner: testkit::stack::Stack,
    pub store: Store,
}

impl Deref for Stack {
    type Target = testkit::stack::Stack;
    fn deref(&self) -> &Self::Target {
        &self.inner
    }
}

impl Stack {
    /// Starts the stack.
    pub async fn start(options: StackOptions) -> anyhow::Result<Stack> {
        let inner = testkit::stack::Stack::start(options).await?;
        let service = TableService::from_connection_string(&inner.azurite.connection_string(), reqwest::Client::new())?;
        let store = Store::with_service(service, &inner.prefix);
        Ok(Stack { inner, store })
    }

    /// How many rows a table holds.
    pub async fn count_rows(&self, table: &str) -> anyhow::Result<usize> {
        let service = TableService::from_connection_string(&self.azurite.connection_string(), self.http.clone())?;
        let rows: Vec<tables::Entity<Value>> = service.table(table).query("PartitionKey ne ''").await?;
        Ok(rows.len())
    }

    /// Checks invariant 1 for every account: the counter row equals the active attempt rows by state.
    pub async fn assert_counters_exact(&self) -> anyhow::Result<()> {
        for (account, _) in &self.options.accounts {
            // A consistent snapshot: every change of counts rewrites the counter row in the same transaction as
            // the attempt rows, so rows read between two reads of an unchanged counter row match it.
            let (counters, derived) =
                eventually(Duration::from_secs(30), "a quiet moment to read counters", || async {
                    let before = self.store.counters(account).await?;
                    let mut derived = AccountCounters::default();
                    for attempt in self.store.active_attempts(account).await? {
                        derived = derived.moved(None, Some(attempt.state), attempt.units())?;
                    }
                    let after = self.store.counters(account).await?;
                    Ok((before.etag == after.etag).then_some((before.value, derived)))
                })
                .await?;
            if counters != derived {
                bail!("{account}: counter row {counters:?} but active rows give {derived:?}");
            }
        }
        Ok(())
    }
}
