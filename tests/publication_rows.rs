//! Publication rows against a real Azurite: a repeated Finished event must not open a second publication,
//! even after the first one was published and moved to the done range.

use ams_failover::domain::publication::{AssetPublication, PublicationRecord, PublicationState};
use ams_failover::store::Store;
use chrono::Utc;
use tables::TableService;
use testkit::Azurite;

fn record(locator_id: &str) -> PublicationRecord {
    let asset = AssetPublication {
        asset: "j-a1-out0".into(),
        locator_name: "j-a1-out0".into(),
        streaming_locator_id: locator_id.into(),
        content_keys: vec![],
        paths: None,
    };
    PublicationRecord::source("j", "amswesteurope", "westeurope", "vod-envelope-v1", vec![asset], Utc::now())
}

#[tokio::test]
async fn a_publication_is_opened_once_even_after_it_was_published_and_moved() -> anyhow::Result<()> {
    let azurite = Azurite::start().await?;
    let store = Store::with_service(
        TableService::from_connection_string(&azurite.connection_string(), reqwest::Client::new())?,
        &testkit::unique_prefix(),
    );
    store.ensure_ready().await?;

    assert!(store.insert_publication(&record("11111111-1111-1111-1111-111111111111")).await?);
    assert!(!store.insert_publication(&record("22222222-2222-2222-2222-222222222222")).await?, "still open");
    let now = Utc::now();
    let done =
        store.update_publication("amswesteurope", "j", |r| r.progressed(PublicationState::Published, now)).await?;
    assert!(done.is_some_and(|d| d.changed));
    assert!(store.open_publications("amswesteurope").await?.is_empty(), "moved to the done range");

    // A late, repeated Finished event with a fresh locator id changes nothing.
    assert!(!store.insert_publication(&record("33333333-3333-3333-3333-333333333333")).await?);
    assert!(store.open_publications("amswesteurope").await?.is_empty());
    let kept = store.get_publication("amswesteurope", "j").await?.map(|r| r.assets[0].streaming_locator_id.clone());
    assert_eq!(kept.as_deref(), Some("11111111-1111-1111-1111-111111111111"));
    Ok(())
}
