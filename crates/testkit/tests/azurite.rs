//! Tests of the Azurite helper against the real emulator.

use std::time::Duration;

use testkit::Azurite;

async fn answers(url: &str) -> bool {
    let http = reqwest::Client::builder().timeout(Duration::from_secs(2)).build().unwrap();
    http.get(url).send().await.is_ok()
}

#[tokio::test]
async fn azurite_starts_on_its_own_port_and_stops_when_dropped() {
    let az = Azurite::start().await.unwrap();
    let endpoint = az.table_endpoint();
    assert_eq!(endpoint, format!("http://127.0.0.1:{}/devstoreaccount1", az.table_port()));
    let cs = az.connection_string();
    assert!(cs.starts_with("DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey="));
    assert!(cs.contains(&format!("TableEndpoint={endpoint};")));
    assert!(az.blob_endpoint().is_none());
    assert!(answers(&endpoint).await);

    let second = Azurite::start().await.unwrap();
    assert_ne!(second.table_port(), az.table_port());

    drop(az);
    assert!(!answers(&endpoint).await, "the emulator outlived its handle");
    assert!(answers(&second.table_endpoint()).await);
}

#[tokio::test]
async fn azurite_can_also_run_a_blob_service() {
    let az = Azurite::start_with_blob().await.unwrap();
    let blob = az.blob_endpoint().unwrap();
    assert!(az.connection_string().contains(&format!("BlobEndpoint={blob};")));
    assert!(answers(&blob).await);
    assert!(answers(&az.table_endpoint()).await);
}
