//! Integration tests of the table client against a real Azurite, one
//! emulator and one table-name prefix per test.

use serde::{Deserialize, Serialize};
use serde_json::json;
use tables::{filter_string_literal, BatchOp, IfMatch, Table, TableError, TableService};
use testkit::{unique_prefix, Azurite};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Job {
    #[serde(rename = "PartitionKey", default, skip_serializing)]
    pk: String,
    #[serde(rename = "RowKey", default, skip_serializing)]
    rk: String,
    #[serde(rename = "Timestamp", default, skip_serializing)]
    timestamp: Option<String>,
    state: String,
    attempts: i32,
    ratio: f64,
    urgent: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    note: Option<String>,
}

fn job(state: &str, attempts: i32) -> Job {
    Job {
        pk: String::new(),
        rk: String::new(),
        timestamp: None,
        state: state.into(),
        attempts,
        ratio: 0.5,
        urgent: false,
        note: None,
    }
}

/// A fresh Azurite, a client on it and a created table named after a unique prefix.
async fn setup(suffix: &str) -> anyhow::Result<(Azurite, TableService, Table)> {
    let azurite = Azurite::start().await?;
    let svc = TableService::from_connection_string(&azurite.connection_string(), reqwest::Client::new())?;
    let name = format!("{}{suffix}", unique_prefix());
    svc.create_table_if_missing(&name).await?;
    let table = svc.table(&name);
    Ok((azurite, svc, table))
}

#[tokio::test]
async fn entities_can_be_created_read_updated_and_deleted() -> anyhow::Result<()> {
    let (_az, _svc, t) = setup("crud").await?;

    assert!(t.get::<Job>("p1", "r1").await?.is_none());
    let e1 = t.insert("p1", "r1", &job("queued", 0)).await?;

    let got = t.get::<Job>("p1", "r1").await?.expect("inserted entity");
    assert_eq!(got.etag, e1);
    assert_eq!(got.value.pk, "p1");
    assert_eq!(got.value.rk, "r1");
    assert!(got.value.timestamp.is_some());
    assert_eq!(got.value.state, "queued");
    assert_eq!(got.value.ratio, 0.5);

    let e2 = t.replace("p1", "r1", &job("running", 1), IfMatch::ETag(e1.clone())).await?;
    assert_ne!(e1, e2);

    let e3 = t.merge("p1", "r1", &json!({"note": "half way"}), IfMatch::ETag(e2)).await?;
    let got = t.get::<Job>("p1", "r1").await?.expect("merged entity");
    assert_eq!(got.etag, e3);
    assert_eq!(got.value.state, "running", "merge keeps other properties");
    assert_eq!(got.value.attempts, 1);
    assert_eq!(got.value.note.as_deref(), Some("half way"));

    let e4 = t.upsert("p1", "r1", &job("done", 2)).await?;
    let got = t.get::<Job>("p1", "r1").await?.expect("upserted entity");
    assert_eq!(got.etag, e4);
    assert_eq!(got.value.note, None, "upsert replaces the whole entity");
    t.upsert("p1", "r2", &job("new", 0)).await?;

    t.delete("p1", "r1", IfMatch::ETag(e4)).await?;
    t.delete("p1", "r2", IfMatch::Any).await?;
    assert!(t.get::<Job>("p1", "r1").await?.is_none());
    Ok(())
}

#[tokio::test]
async fn stale_etags_and_duplicate_inserts_are_reported_by_kind() -> anyhow::Result<()> {
    let (_az, _svc, t) = setup("conflicts").await?;
    let first = t.insert("p", "r", &job("queued", 0)).await?;

    let dup = t.insert("p", "r", &job("queued", 0)).await.unwrap_err();
    assert!(matches!(dup, TableError::AlreadyExists), "{dup:?}");

    let second = t.replace("p", "r", &job("running", 1), IfMatch::ETag(first.clone())).await?;
    let stale = t.replace("p", "r", &job("lost", 9), IfMatch::ETag(first.clone())).await.unwrap_err();
    assert!(matches!(stale, TableError::PreconditionFailed), "{stale:?}");
    let stale = t.merge("p", "r", &json!({"state": "lost"}), IfMatch::ETag(first.clone())).await.unwrap_err();
    assert!(matches!(stale, TableError::PreconditionFailed), "{stale:?}");
    let stale = t.delete("p", "r", IfMatch::ETag(first)).await.unwrap_err();
    assert!(matches!(stale, TableError::PreconditionFailed), "{stale:?}");
    assert!(!stale.is_retryable());

    let missing = t.replace("p", "absent", &job("x", 0), IfMatch::Any).await.unwrap_err();
    assert!(matches!(missing, TableError::NotFound), "{missing:?}");
    let missing = t.delete("p", "absent", IfMatch::Any).await.unwrap_err();
    assert!(matches!(missing, TableError::NotFound), "{missing:?}");

    let got = t.get::<Job>("p", "r").await?.expect("entity");
    assert_eq!(got.etag, second);
    assert_eq!(got.value.state, "running");
    Ok(())
}

#[tokio::test]
async fn queries_follow_continuation_tokens_past_a_thousand_entities() -> anyhow::Result<()> {
    let (_az, _svc, t) = setup("paging").await?;
    const TOTAL: usize = 1150;
    for chunk in 0..TOTAL.div_ceil(100) {
        let ops: Vec<BatchOp> = (chunk * 100..((chunk + 1) * 100).min(TOTAL))
            .map(|i| BatchOp::Insert { rk: format!("{i:05}"), body: json!({"n": i as i32}) })
            .collect();
        let etags = t.transaction("bulk", ops).await?;
        assert!(etags.iter().all(Option::is_some));
    }
    t.insert("other", "x", &json!({"n": -1})).await?;

    let all: Vec<tables::Entity<serde_json::Value>> =
        t.query(&format!("PartitionKey eq {}", filter_string_literal("bulk"))).await?;
    assert_eq!(all.len(), TOTAL);
    let mut ns: Vec<i64> = all.iter().map(|e| e.value["n"].as_i64().unwrap()).collect();
    ns.sort_unstable();
    assert_eq!(ns, (0..TOTAL as i64).collect::<Vec<_>>());
    assert!(all.iter().all(|e| !e.etag.0.is_empty()));

    let everything: Vec<tables::Entity<serde_json::Value>> = t.query("").await?;
    assert_eq!(everything.len(), TOTAL + 1);
    Ok(())
}

#[tokio::test]
async fn a_page_holds_at_most_top_entities_and_its_continuation_reaches_the_rest_in_key_order() -> anyhow::Result<()> {
    let (_az, _svc, t) = setup("pages").await?;
    let ops: Vec<BatchOp> = (0..25).map(|i| BatchOp::Insert { rk: format!("{i:03}"), body: json!({"n": i}) }).collect();
    t.transaction("p", ops).await?;
    t.insert("q", "000", &json!({"n": 99})).await?;

    let filter = format!("PartitionKey eq {}", filter_string_literal("p"));
    let mut seen = Vec::new();
    let mut from = None;
    let mut pages = 0;
    loop {
        let page: tables::Page<serde_json::Value> = t.query_page(&filter, Some(10), from.as_ref()).await?;
        assert!(page.entities.len() <= 10);
        seen.extend(page.entities.iter().map(|e| e.value["RowKey"].as_str().unwrap_or_default().to_string()));
        pages += 1;
        match page.next {
            Some(next) => from = Some(next),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, (0..25).map(|i| format!("{i:03}")).collect::<Vec<_>>());

    let first: tables::Page<serde_json::Value> = t.query_page(&filter, Some(25), None).await?;
    assert_eq!(first.entities.len(), 25);
    Ok(())
}

#[tokio::test]
async fn a_transaction_applies_all_its_operations() -> anyhow::Result<()> {
    let (_az, _svc, t) = setup("txok").await?;
    let e_replace = t.insert("p", "replace", &json!({"v": 1})).await?;
    let e_merge = t.insert("p", "merge", &json!({"v": 1, "keep": "yes"})).await?;
    t.insert("p", "delete", &json!({"v": 1})).await?;

    let etags = t
        .transaction(
            "p",
            vec![
                BatchOp::Insert { rk: "insert".into(), body: json!({"v": 2}) },
                BatchOp::Replace { rk: "replace".into(), body: json!({"v": 2}), if_match: IfMatch::ETag(e_replace) },
                BatchOp::Merge { rk: "merge".into(), body: json!({"v": 2}), if_match: IfMatch::ETag(e_merge) },
                BatchOp::Upsert { rk: "upsert".into(), body: json!({"v": 2}) },
                BatchOp::Delete { rk: "delete".into(), if_match: IfMatch::Any },
            ],
        )
        .await?;
    assert_eq!(etags.len(), 5);
    assert!(etags[..4].iter().all(Option::is_some));
    assert!(etags[4].is_none());

    for (rk, etag) in ["insert", "replace", "merge", "upsert"].iter().zip(&etags) {
        let got = t.get::<serde_json::Value>("p", rk).await?.expect(rk);
        assert_eq!(got.value["v"], 2, "{rk}");
        assert_eq!(Some(&got.etag), etag.as_ref(), "{rk}");
    }
    let merged = t.get::<serde_json::Value>("p", "merge").await?.expect("merge");
    assert_eq!(merged.value["keep"], "yes");
    assert!(t.get::<serde_json::Value>("p", "delete").await?.is_none());
    Ok(())
}

#[tokio::test]
async fn a_failed_transaction_names_the_operation_and_applies_nothing() -> anyhow::Result<()> {
    let (_az, _svc, t) = setup("txfail").await?;
    let stale = t.insert("p", "existing", &json!({"v": 1})).await?;
    t.replace("p", "existing", &json!({"v": 2}), IfMatch::Any).await?;

    // Operation 2 carries an outdated ETag.
    let err = t
        .transaction(
            "p",
            vec![
                BatchOp::Insert { rk: "a".into(), body: json!({"v": 1}) },
                BatchOp::Upsert { rk: "b".into(), body: json!({"v": 1}) },
                BatchOp::Replace { rk: "existing".into(), body: json!({"v": 3}), if_match: IfMatch::ETag(stale) },
            ],
        )
        .await
        .unwrap_err();
    match &err {
        TableError::Batch { index, source } => {
            assert_eq!(*index, 2);
            assert!(matches!(**source, TableError::PreconditionFailed), "{source:?}");
        }
        other => panic!("expected a batch error, got {other:?}"),
    }
    assert!(!err.is_retryable());
    assert!(t.get::<serde_json::Value>("p", "a").await?.is_none());
    assert!(t.get::<serde_json::Value>("p", "b").await?.is_none());
    assert_eq!(t.get::<serde_json::Value>("p", "existing").await?.expect("kept").value["v"], 2);

    // Operation 1 inserts a row that exists.
    let err = t
        .transaction(
            "p",
            vec![
                BatchOp::Insert { rk: "c".into(), body: json!({}) },
                BatchOp::Insert { rk: "existing".into(), body: json!({}) },
            ],
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, TableError::Batch { index: 1, source } if matches!(**source, TableError::AlreadyExists)),
        "{err:?}"
    );
    assert!(t.get::<serde_json::Value>("p", "c").await?.is_none());

    // Operation 0 deletes a row that does not exist.
    let err = t
        .transaction(
            "p",
            vec![
                BatchOp::Delete { rk: "absent".into(), if_match: IfMatch::Any },
                BatchOp::Upsert { rk: "d".into(), body: json!({}) },
            ],
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, TableError::Batch { index: 0, source } if matches!(**source, TableError::NotFound)),
        "{err:?}"
    );
    assert!(t.get::<serde_json::Value>("p", "d").await?.is_none());
    Ok(())
}

#[tokio::test]
async fn filters_and_keys_with_quotes_round_trip() -> anyhow::Result<()> {
    let (_az, _svc, t) = setup("quotes").await?;
    let tricky = "O'Brien's \"job\" & 50% + more";
    t.insert("it's", "row 'one'", &json!({"name": tricky})).await?;
    t.insert("it's", "row two", &json!({"name": "plain"})).await?;

    let got = t.get::<serde_json::Value>("it's", "row 'one'").await?.expect("entity with quoted keys");
    assert_eq!(got.value["name"], tricky);
    assert_eq!(got.value["PartitionKey"], "it's");

    let filter =
        format!("PartitionKey eq {} and name eq {}", filter_string_literal("it's"), filter_string_literal(tricky));
    let found: Vec<tables::Entity<serde_json::Value>> = t.query(&filter).await?;
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].value["RowKey"], "row 'one'");

    t.merge("it's", "row 'one'", &json!({"more": true}), IfMatch::ETag(found[0].etag.clone())).await?;
    t.delete("it's", "row 'one'", IfMatch::Any).await?;
    assert!(t.get::<serde_json::Value>("it's", "row 'one'").await?.is_none());
    Ok(())
}

#[tokio::test]
async fn tables_are_created_idempotently_and_deleted() -> anyhow::Result<()> {
    let (_az, svc, t) = setup("lifecycle").await?;
    svc.create_table_if_missing(t.name()).await?;
    t.insert("p", "r", &json!({})).await?;
    svc.delete_table(t.name()).await?;

    let missing = t.get::<serde_json::Value>("p", "r").await.unwrap_err();
    assert!(matches!(missing, TableError::NotFound), "{missing:?}");
    let missing = svc.delete_table(t.name()).await.unwrap_err();
    assert!(matches!(missing, TableError::NotFound), "{missing:?}");

    let bad = svc.create_table_if_missing("no-dashes").await.unwrap_err();
    assert!(matches!(bad, TableError::Config(_)), "{bad:?}");
    Ok(())
}

#[tokio::test]
async fn a_wrong_account_key_is_rejected_as_an_authentication_failure() -> anyhow::Result<()> {
    let az = Azurite::start().await?;
    let cs = format!(
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=d3Jvbmcta2V5;TableEndpoint={};",
        az.table_endpoint()
    );
    let svc = TableService::from_connection_string(&cs, reqwest::Client::new())?;
    let err = svc.create_table_if_missing("denied").await.unwrap_err();
    assert!(matches!(&err, TableError::Rejected { status: 403, .. }), "{err:?}");
    Ok(())
}

#[tokio::test]
async fn an_unreachable_service_is_a_transient_error() -> anyhow::Result<()> {
    let port = testkit::free_port();
    let cs = format!(
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={};TableEndpoint=http://127.0.0.1:{port}/devstoreaccount1;",
        testkit::DEV_ACCOUNT_KEY
    );
    let svc = TableService::from_connection_string(&cs, reqwest::Client::new())?;
    let err = svc.table("nothere").insert("p", "r", &json!({})).await.unwrap_err();
    assert!(matches!(err, TableError::Transient(_)), "{err:?}");
    assert!(err.is_retryable());
    Ok(())
}
