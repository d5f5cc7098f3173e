//! Function keys on the local stack: devhost checks them as the Functions host does (`--keys`), with the
//! keys infra creates, `client` on the client API and `operator` on the operator API, in front of the real
//! handler.

mod support;

use reqwest::StatusCode;
use serde_json::json;
use support::{job_body, options, Stack};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_key_submits_and_reads_jobs_but_is_refused_on_the_operator_api() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let keys = dir.path().join("keys.json");
    let functions = json!({
        "SubmitJob": {"client": "client-key-1"},
        "GetJob": {"client": "client-key-1"},
        "ListJobs": {"client": "client-key-1"},
        "GetStatus": {"operator": "operator-key-1"}
    });
    std::fs::write(&keys, json!({ "functionKeys": functions }).to_string())?;
    let mut opts = options();
    opts.devhost_args = vec!["--keys".into(), keys.display().to_string()];
    let stack = Stack::start(opts).await?;
    let url = |path: &str| format!("{}{path}", stack.devhost.url);

    // No key, or the operator's, cannot submit; the client's can.
    let anonymous = stack.http.post(url("/api/jobs")).json(&job_body("keyed-0")).send().await?;
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED, "no key");
    let submit = |key: &'static str, id: &'static str| {
        stack.http.post(url("/api/jobs")).header("x-functions-key", key).json(&job_body(id)).send()
    };
    assert_eq!(submit("operator-key-1", "keyed-1").await?.status(), StatusCode::UNAUTHORIZED);
    let accepted = submit("client-key-1", "keyed-2").await?;
    assert_eq!(accepted.status(), StatusCode::ACCEPTED, "{:?}", accepted.text().await);

    let job = stack.http.get(url("/api/jobs/keyed-2?code=client-key-1")).send().await?;
    assert_eq!(job.status(), StatusCode::OK);
    let refused = stack.http.get(url("/api/jobs/keyed-1?code=client-key-1")).send().await?;
    assert_eq!(refused.status(), StatusCode::NOT_FOUND, "a refused submission changed nothing");

    let list = |key: &'static str| stack.http.get(url("/api/jobs?state=pending")).header("x-functions-key", key).send();
    assert_eq!(list("client-key-1").await?.status(), StatusCode::OK, "the client key lists jobs");
    assert_eq!(list("operator-key-1").await?.status(), StatusCode::UNAUTHORIZED);

    let status = |key: &'static str| stack.http.get(url("/api/status")).header("x-functions-key", key).send();
    assert_eq!(
        status("client-key-1").await?.status(),
        StatusCode::UNAUTHORIZED,
        "the client key cannot read GetStatus"
    );
    let operator = status("operator-key-1").await?;
    assert_eq!(operator.status(), StatusCode::OK);
    let body: serde_json::Value = operator.json().await?;
    assert!(body["accounts"].is_array(), "{body}");
    Ok(())
}
