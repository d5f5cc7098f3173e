//! References made without the handler: the floor of one SubmitJob (the calls a correct design cannot do
//! without, made directly), the cold-start floor (axum answering `/` and nothing else), and the history
//! the sweep must not read.

use anyhow::Context;
use serde_json::json;
use tables::{BatchOp, IfMatch, TableService};
use testkit::stack::{RESOURCE_GROUP, SUBSCRIPTION, TRANSFORM};

/// The floor of one SubmitJob, in order, and why none can go. Table partitions are the unit of atomicity,
/// and the job, the index, the health list and the account's attempts live in four, so their writes cannot
/// share a transaction; the two ARM calls are Media Services' own API.
pub const CALLS: [(&str, &str); 9] = [
    ("Table: $batch on ~index (o| and p| rows)", "the job must be findable by the sweep before anything can strand it"),
    ("Table: insert the job row", "accepts the job; its answer's ETag guards every later job write"),
    ("Table: read the health list", "the accounts in rotation, which another instance may have just changed"),
    ("Table: read the attempt's counter shard", "its ETag guards the counter arithmetic (the handler skips it when it holds the version of its own last write of the shard)"),
    ("Table: $batch attempt row + claim row + counter shard", "in flight equals the active rows, atomically"),
    ("ARM: PUT the output asset", "a job needs its output asset first"),
    ("ARM: PUT the job", "the encoding itself"),
    ("Table: replace the job row (placed)", "GetJob answers where it runs; guarded by the insert's ETag"),
    ("Table: delete the p| marker", "placed, so the sweep no longer places it"),
];

/// The floor SubmitJob, on its own tables.
pub struct Floor {
    jobs: tables::Table,
    health: tables::Table,
    attempts: tables::Table,
    http: reqwest::Client,
    arm: String,
}

impl Floor {
    /// Creates the floor's tables under `prefix` and a health row.
    pub async fn new(service: &TableService, prefix: &str, http: &reqwest::Client, arm: &str) -> anyhow::Result<Floor> {
        for name in ["Jobs", "Health", "Attempts"] {
            service.create_table_if_missing(&format!("{prefix}{name}")).await?;
        }
        let health = service.table(&format!("{prefix}Health"));
        health.upsert("health", "list", &json!({"Record": "{\"removed\":[]}"})).await?;
        Ok(Floor {
            jobs: service.table(&format!("{prefix}Jobs")),
            health,
            attempts: service.table(&format!("{prefix}Attempts")),
            http: http.clone(),
            arm: format!(
                "{arm}/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}/providers/Microsoft.Media/mediaServices/amswesteurope"
            ),
        })
    }

    /// One SubmitJob's floor calls for job `id`, with rows of the handler's sizes.
    pub async fn submit(&self, id: &str) -> anyhow::Result<()> {
        let since = json!({"Since": chrono::Utc::now().to_rfc3339()});
        let index = vec![
            BatchOp::Upsert { rk: format!("o|{id}"), body: since.clone() },
            BatchOp::Upsert { rk: format!("p|{id}"), body: since },
        ];
        self.jobs.transaction("~index", index).await?;
        let record = json!({"Record": "x".repeat(700), "State": "Pending"});
        let etag = self.jobs.insert(id, "job", &record).await?;
        let _: Option<tables::Entity<serde_json::Value>> = self.health.get("health", "list").await?;
        let shard = format!("counter|{}", id.len() % 8);
        let counter: Option<tables::Entity<serde_json::Value>> = self.attempts.get("amswesteurope", &shard).await?;
        let name = format!("{id}-a1");
        let attempt = json!({"Record": "x".repeat(500), "State": "Submitting"});
        let counts = json!({"submitting": 1, "queued": 0, "scheduled": 0, "processing": 0, "canceling": 0, "units": 1});
        let counter_op = match counter {
            Some(row) => BatchOp::Replace { rk: shard, body: counts, if_match: IfMatch::ETag(row.etag) },
            None => BatchOp::Upsert { rk: shard, body: counts },
        };
        let ops = vec![
            BatchOp::Insert { rk: format!("a|{name}"), body: attempt },
            BatchOp::Insert { rk: format!("c|{name}"), body: json!({"Claimed": true}) },
            counter_op,
        ];
        self.attempts.transaction("amswesteurope", ops).await?;
        let asset = format!("{}/assets/{name}-out0?api-version=2023-01-01", self.arm);
        self.http
            .put(asset)
            .json(&json!({"properties": {"description": "encoding output"}}))
            .send()
            .await?
            .error_for_status()?;
        let job = format!("{}/transforms/{TRANSFORM}/jobs/{name}?api-version=2022-07-01", self.arm);
        let body = json!({"properties": {
            "input": {"@odata.type": "#Microsoft.Media.JobInputHttp", "baseUri": "https://media.example/in/", "files": ["movie.mp4"]},
            "outputs": [{"@odata.type": "#Microsoft.Media.JobOutputAsset", "assetName": format!("{name}-out0")}],
            "priority": "Normal", "correlationData": {"jobId": id, "attempt": "1"}}});
        self.http.put(job).json(&body).send().await?.error_for_status()?;
        let placed = json!({"Record": "x".repeat(900), "State": "Queued"});
        self.jobs.replace(id, "job", &placed, IfMatch::ETag(etag)).await?;
        self.jobs.delete("~index", &format!("p|{id}"), IfMatch::Any).await?;
        Ok(())
    }
}

/// Serves `GET /` on `FUNCTIONS_CUSTOMHANDLER_PORT` with the handler's web stack and nothing else.
pub async fn serve() -> anyhow::Result<()> {
    let port: u16 = std::env::var("FUNCTIONS_CUSTOMHANDLER_PORT")
        .context("FUNCTIONS_CUSTOMHANDLER_PORT is not set")?
        .parse()
        .context("FUNCTIONS_CUSTOMHANDLER_PORT is not a port")?;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    let app = axum::Router::new().route("/", axum::routing::get(|| async { "ready" }));
    axum::serve(listener, app).await?;
    Ok(())
}

/// Writes `n` finished jobs the way the handler leaves them into the tables under `prefix`, with progress:
/// first the rows that share partitions with what the sweep reads (the done attempt rows in each account's
/// partition, in transactions of 100), then the ended-jobs index rows, then the job rows, each a
/// partition of its own.
pub async fn write_history(
    service: &TableService,
    prefix: &str,
    n: usize,
    accounts: &[&str],
    progress: fn(&str),
) -> anyhow::Result<()> {
    use futures_util::StreamExt;
    let jobs = service.table(&format!("{prefix}Jobs"));
    let attempts = service.table(&format!("{prefix}Attempts"));
    let day = chrono::Utc::now() - chrono::Duration::days(1);
    let chunks: Vec<(usize, usize)> = (0..n).step_by(100).map(|start| (start, (start + 100).min(n))).collect();
    for part in ["attempt rows", "ended-index rows", "job rows"] {
        let started = std::time::Instant::now();
        let done = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let total = chunks.len();
        let work = futures_util::stream::iter(chunks.iter().copied().map(|(start, end)| {
            let (jobs, attempts, done) = (jobs.clone(), attempts.clone(), done.clone());
            let account = accounts[start / 100 % accounts.len()].to_owned();
            async move {
                // Azurite slows down as a partition grows and may time a transaction out; every write here is
                // an upsert, so trying again is safe.
                let mut tries = 0;
                loop {
                    match write_part(part, &jobs, &attempts, &account, day, start, end).await {
                        Ok(()) => break,
                        Err(e) if tries < 5 => {
                            tries += 1;
                            progress(&format!("  {part} {start}..{end}: {e}; trying again"));
                            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                        }
                        Err(e) => return Err(e),
                    }
                }
                let finished = done.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                if finished % (total / 5).max(1) == 0 {
                    progress(&format!("  {part}: {} of {n}", (finished * 100).min(n)));
                }
                anyhow::Ok(())
            }
        }));
        let results: Vec<anyhow::Result<()>> =
            work.buffer_unordered(if part == "job rows" { 32 } else { 2 }).collect().await;
        results.into_iter().collect::<anyhow::Result<()>>()?;
        progress(&format!("  {part} written in {:.0} s", started.elapsed().as_secs_f64()));
    }
    Ok(())
}

/// One hundred finished jobs' rows of one kind (see [`write_history`]). The ended-index rows spread over ten
/// days, as a steady stream of jobs would.
async fn write_part(
    part: &str,
    jobs: &tables::Table,
    attempts: &tables::Table,
    account: &str,
    day: chrono::DateTime<chrono::Utc>,
    start: usize,
    end: usize,
) -> anyhow::Result<()> {
    match part {
        "attempt rows" => {
            let rows = (start..end)
                .map(|i| BatchOp::Upsert {
                    rk: format!("d|old-{i:07}-a1"),
                    body: json!({"Record": "x".repeat(500), "State": "Finished"}),
                })
                .collect();
            attempts.transaction(account, rows).await?;
        }
        "ended-index rows" => {
            let at = day - chrono::Duration::days((start / 100 % 10) as i64);
            let rows = (start..end)
                .map(|i| {
                    let at = at + chrono::Duration::milliseconds(i as i64);
                    let rk = format!("{}|old-{i:07}", at.format("%Y-%m-%dT%H:%M:%S%.6fZ"));
                    BatchOp::Upsert { rk, body: json!({"State": "Finished", "Summary": "{}"}) }
                })
                .collect();
            jobs.transaction(&format!("~ended|Finished|{}", at.format("%Y%m%d")), rows).await?;
        }
        _ => {
            for i in start..end {
                let record = json!({"Record": "x".repeat(900), "State": "Finished"});
                jobs.upsert(&format!("old-{i:07}"), "job", &record).await?;
            }
        }
    }
    Ok(())
}
