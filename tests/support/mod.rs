//! The local stack for the handler's integration tests (see `testkit::stack`), plus checks that read the
//! product's own tables.
#![allow(dead_code, unused_imports)]

use ams_failover::domain::{AccountCounters, Capabilities, JobRecord, JobState, Provider};
use ams_failover::store::Store;
use anyhow::bail;
use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use serde_json::json;
use serde_json::Value;
use std::ops::Deref;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use tables::TableService;
pub use testkit::stack::{
    eventually, handler_settings, http_request, job_body, start_emulator, timer_request, StackOptions, RESOURCE_GROUP,
    SUBSCRIPTION,
};
use testkit::Azurite;
use tokio::process::{Child, Command};

/// Options for a stack running this package's handler on the repository's function app.
pub fn options() -> StackOptions {
    StackOptions::new(PathBuf::from(env!("CARGO_BIN_EXE_handler")), PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

/// [`options`] with every account on the provider `TEST_PROVIDER` names (`ams` when unset): the suites
/// that must hold on every provider (lifecycle, failover, streaming) start from these.
pub fn provider_options() -> StackOptions {
    options().on_provider(testkit::stack::test_provider())
}

/// What the provider under test can do.
pub fn test_capabilities() -> Capabilities {
    testkit::stack::test_provider().parse::<Provider>().unwrap_or_default().capabilities()
}

/// Whether a test needing what `needs` says may run on the provider under test; prints why not when it
/// may not, so a skipped test is visible in the output rather than a silent pass.
pub fn runs_on_test_provider(needs: impl Fn(&Capabilities) -> bool, what: &str) -> bool {
    let runs = needs(&test_capabilities());
    if !runs {
        // Straight to stderr, not through `eprintln!`, which the test harness captures for passing tests.
        use std::io::Write as _;
        let _ =
            writeln!(std::io::stderr(), "skipped on provider {}: it has no {what}", testkit::stack::test_provider());
    }
    runs
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

    /// Submits a job for each id, all at once; fails unless every answer is 202. Returns the answers.
    pub async fn submit_all(&self, ids: &[String]) -> anyhow::Result<Vec<Value>> {
        let answers = futures_util::future::join_all(ids.iter().map(|id| {
            let body = job_body(id);
            async move { self.submit(&body).await }
        }))
        .await;
        answers
            .into_iter()
            .map(|answer| {
                let (status, body, _) = answer?;
                anyhow::ensure!(status == 202, "SubmitJob answered {status}: {body}");
                Ok(body)
            })
            .collect()
    }

    /// How many rows a table holds.
    pub async fn count_rows(&self, table: &str) -> anyhow::Result<usize> {
        let service = TableService::from_connection_string(&self.azurite.connection_string(), self.http.clone())?;
        let rows: Vec<tables::Entity<Value>> = service.table(table).query("PartitionKey ne ''").await?;
        Ok(rows.len())
    }

    /// Checks invariant 1 for every account: the counter row equals the active attempt rows by state.
    pub async fn assert_counters_exact(&self) -> anyhow::Result<()> {
        let accounts: Vec<&str> = self.options.accounts.iter().map(|(a, _)| *a).collect();
        assert_counters_exact(&self.store, &accounts).await
    }
}

/// Checks invariant 1 for each of `accounts`: the counter row equals the active attempt rows by state.
pub async fn assert_counters_exact(store: &Store, accounts: &[&str]) -> anyhow::Result<()> {
    for account in accounts {
        // A consistent snapshot: every change of counts rewrites a counter shard in the same transaction as
        // the attempt rows, so rows read between two reads of unchanged shards match them.
        let (counters, derived) = eventually(Duration::from_secs(30), "a quiet moment to read counters", || async {
            let before = store.account(account).await?;
            let mut derived = AccountCounters::default();
            for attempt in store.active_attempts(account).await? {
                derived = derived.moved(None, Some(attempt.state), attempt.units())?;
            }
            let after = store.account(account).await?;
            Ok((before.shard_etags == after.shard_etags).then_some((before.counters, derived)))
        })
        .await?;
        if counters != derived {
            bail!("{account}: counter row {counters:?} but active rows give {derived:?}");
        }
    }
    Ok(())
}

/// Checks invariant 6 once the work is done: no job is left in the open-jobs index or marked pending.
pub async fn assert_no_open_work(store: &Store) -> anyhow::Result<()> {
    let index = store.index().await?;
    if !index.open.is_empty() || !index.pending.is_empty() {
        bail!("open work left: {index:?}");
    }
    Ok(())
}

/// The handler binary run directly, the way the Functions host runs it: `FUNCTIONS_CUSTOMHANDLER_PORT` and
/// the app settings in its environment, invoked with the host's payloads.
pub struct Handler {
    child: Child,
    /// Its base URL.
    pub url: String,
    /// A client for invoking it.
    pub http: reqwest::Client,
}

impl Handler {
    /// Starts it on `azurite` with tables under `prefix`, the emulator at `arm`, and `extra` settings; ready
    /// once `GET /` answers at all.
    pub async fn start(azurite: &Azurite, arm: &str, prefix: &str, extra: &[(&str, &str)]) -> anyhow::Result<Handler> {
        let port = testkit::free_port();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_handler"));
        cmd.env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string())
            .envs(handler_settings(azurite, prefix, &options(), arm))
            .envs(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        let child = cmd.spawn()?;
        let url = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        eventually(Duration::from_secs(30), "the handler to answer GET /", || async {
            Ok(http.get(format!("{url}/")).send().await.ok().map(|_| ()))
        })
        .await?;
        Ok(Handler { child, url, http })
    }

    /// Invokes a function the way the host does; returns the host-facing status, content type and body.
    pub async fn invoke(&self, function: &str, payload: &Value) -> anyhow::Result<(StatusCode, String, Value)> {
        let response = self
            .http
            .post(format!("{}/{function}", self.url))
            .header("Content-Type", "application/json; charset=utf-8")
            .header("X-Azure-Functions-InvocationId", "00000000-0000-0000-0000-000000000001")
            .header("User-Agent", "Azure-Functions-Host/4.1037.0")
            .json(payload)
            .send()
            .await?;
        let status = response.status();
        let content_type =
            response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        Ok((status, content_type, response.json().await?))
    }

    /// Waits (bounded) for the process to exit; its exit status.
    pub async fn exited(&mut self) -> anyhow::Result<std::process::ExitStatus> {
        Ok(tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await??)
    }
}

/// A job row as the store holds it, in `state`, on no account yet: for tests that drive the store directly.
pub fn job_record(id: &str, state: JobState, now: DateTime<Utc>) -> JobRecord {
    JobRecord {
        job_id: id.into(),
        request: "{}".into(),
        transform: "encode".into(),
        state,
        attempt: u32::from(state != JobState::Pending),
        account: None,
        region: None,
        attempts: vec![],
        outputs: vec![],
        last_error: None,
        created_at: now,
        updated_at: now,
        cancel_requested_at: None,
    }
}

/// Two stores on one fresh set of tables in `azurite`, as two handler instances would have.
pub async fn two_stores(azurite: &Azurite) -> anyhow::Result<(Store, Store)> {
    let prefix = testkit::unique_prefix();
    let store = || {
        TableService::from_connection_string(&azurite.connection_string(), reqwest::Client::new())
            .map(|service| Store::with_service(service, &prefix))
    };
    let (a, b) = (store()?, store()?);
    a.ensure_ready().await?;
    Ok((a, b))
}
