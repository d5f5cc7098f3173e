//! Blob storage behind assets: container SAS from listContainerSas, the Blob
//! REST subset, SAS refusals in Azure's XML shape, and asynchronous copies.

use reqwest::Method;
use serde_json::{json, Value};

use crate::common::{eventually, Emulator, WAIT};

/// A raw HTTP answer; blob bodies are bytes or XML, not JSON.
pub struct Raw {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Vec<u8>,
}

impl Raw {
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Asserts an Azure Storage error: status, `x-ms-error-code` and the XML `<Code>`.
    pub fn assert_storage_error(&self, status: u16, code: &str) {
        assert_eq!(self.status, status, "{}", self.text());
        assert_eq!(self.header("x-ms-error-code"), code, "{}", self.text());
        assert!(self.header("content-type").starts_with("application/xml"));
        assert!(self.text().contains(&format!("<Error><Code>{code}</Code><Message>")), "{}", self.text());
    }
}

pub async fn raw(emu: &Emulator, method: Method, url: &str, headers: &[(&str, &str)], body: Option<Vec<u8>>) -> Raw {
    let mut req = emu.http.request(method, url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    if let Some(b) = body {
        req = req.body(b);
    }
    let resp = tokio::time::timeout(WAIT, req.send()).await.expect("answer in time").expect("sent");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.bytes().await.expect("body").to_vec();
    Raw { status, headers, body }
}

/// `{container}/{blob}?{sas}` from a container SAS URL.
pub fn blob_url(container_sas: &str, blob: &str) -> String {
    let (base, query) = container_sas.split_once('?').expect("SAS URL has a query");
    format!("{base}/{blob}?{query}")
}

pub fn list_url(container_sas: &str) -> String {
    format!("{container_sas}&restype=container&comp=list")
}

pub fn in_hours(h: i64) -> String {
    (chrono::Utc::now() + chrono::Duration::hours(h)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The two container SAS URLs of an asset.
pub async fn container_sas(emu: &Emulator, account: &str, asset: &str, permissions: &str, expiry: &str) -> Vec<String> {
    let url = format!("{}/assets/{asset}/listContainerSas?api-version=2023-01-01", emu.account_url(account));
    let r = emu.post(&url, Some(json!({"permissions": permissions, "expiryTime": expiry}))).await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.body["assetContainerSasUrls"].as_array().expect("urls").iter().map(|u| u.as_str().unwrap().to_string()).collect()
}

pub async fn put_blob(emu: &Emulator, url: &str, bytes: &[u8]) -> Raw {
    raw(emu, Method::PUT, url, &[("x-ms-blob-type", "BlockBlob"), ("content-type", "video/mp4")], Some(bytes.to_vec()))
        .await
}

pub async fn account_entry(emu: &Emulator, name: &str) -> Value {
    let list = emu.get(&format!("{}/_emulator/accounts", emu.base)).await.body;
    list.as_array().expect("list").iter().find(|a| a["name"] == name).expect("account listed").clone()
}

#[tokio::test]
async fn an_asset_is_a_container_that_its_sas_can_write_read_and_list() {
    let emu = Emulator::start_fast(&[]).await;
    let asset = emu.create_asset("east", "in").await;
    let container = asset.body["properties"]["container"].as_str().unwrap().to_string();
    assert_eq!(container, format!("asset-{}", asset.body["properties"]["assetId"].as_str().unwrap()));

    let urls = container_sas(&emu, "east", "in", "ReadWrite", &in_hours(1)).await;
    assert_eq!(urls.len(), 2);
    assert!(urls[0].starts_with(&format!("{}/blob/eaststorage/{container}?", emu.base)), "{}", urls[0]);
    assert!(urls[0].contains("sr=c") && urls[0].contains("sp=rwl") && urls[0].contains("sig="));
    assert_ne!(urls[0], urls[1], "one URL per storage key");

    let put = put_blob(&emu, &blob_url(&urls[0], "dir/source.mp4"), b"source bytes").await;
    assert_eq!(put.status, 201, "{}", put.text());
    assert!(put.header("etag").starts_with("\"0x"));

    // The second key's URL reads what the first wrote.
    let got = raw(&emu, Method::GET, &blob_url(&urls[1], "dir/source.mp4"), &[], None).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.body, b"source bytes");
    assert_eq!(got.header("content-type"), "video/mp4");
    assert_eq!(got.header("x-ms-blob-type"), "BlockBlob");
    let head = raw(&emu, Method::HEAD, &blob_url(&urls[1], "dir/source.mp4"), &[], None).await;
    assert_eq!((head.status, head.header("content-length")), (200, "12"));
    assert!(head.body.is_empty());

    let list = raw(&emu, Method::GET, &list_url(&urls[0]), &[], None).await;
    assert_eq!(list.status, 200);
    let xml = list.text();
    assert!(xml.starts_with("<?xml version=\"1.0\" encoding=\"utf-8\"?><EnumerationResults"), "{xml}");
    assert!(xml.contains(&format!("ContainerName=\"{container}\"")));
    assert!(xml.contains("<Blob><Name>dir/source.mp4</Name><Properties>"));
    assert!(xml.contains("<Content-Length>12</Content-Length>") && xml.contains("<BlobType>BlockBlob</BlobType>"));

    raw(&emu, Method::GET, &blob_url(&urls[0], "missing.mp4"), &[], None)
        .await
        .assert_storage_error(404, "BlobNotFound");
    // A client's request id comes back on every answer, errors included.
    let ids = [("x-ms-client-request-id", "client-1")];
    assert_eq!(
        raw(&emu, Method::GET, &list_url(&urls[0]), &ids, None).await.header("x-ms-client-request-id"),
        "client-1"
    );
    let missing = raw(&emu, Method::HEAD, &blob_url(&urls[0], "missing.mp4"), &ids, None).await;
    assert_eq!((missing.status, missing.header("x-ms-client-request-id")), (404, "client-1"));
    let rwd = container_sas(&emu, "east", "in", "ReadWriteDelete", &in_hours(23)).await;
    assert!(rwd[0].contains("sp=rwdl"));
    assert_eq!(raw(&emu, Method::DELETE, &blob_url(&rwd[0], "dir/source.mp4"), &[], None).await.status, 202);
    raw(&emu, Method::GET, &blob_url(&urls[0], "dir/source.mp4"), &[], None)
        .await
        .assert_storage_error(404, "BlobNotFound");
}

#[tokio::test]
async fn list_container_sas_refuses_bad_permissions_and_expiries_a_day_ahead() {
    let emu = Emulator::start_fast(&[]).await;
    emu.create_asset("east", "a").await;
    let url = format!("{}/assets/a/listContainerSas?api-version=2023-01-01", emu.account_url("east"));
    emu.post(&url, Some(json!({"permissions": "Read", "expiryTime": in_hours(25)})))
        .await
        .assert_arm_error(400, "BadRequest");
    emu.post(&url, Some(json!({"permissions": "Everything", "expiryTime": in_hours(1)})))
        .await
        .assert_arm_error(400, "BadRequest");
    emu.post(&url, Some(json!({"permissions": "Read"}))).await.assert_arm_error(400, "BadRequest");
    let ghost = format!("{}/assets/ghost/listContainerSas?api-version=2023-01-01", emu.account_url("east"));
    emu.post(&ghost, Some(json!({"permissions": "Read", "expiryTime": in_hours(1)})))
        .await
        .assert_arm_error(404, "NotFound");
    // Another storage account than the attached one cannot back an asset.
    let other = format!("{}/assets/b?api-version=2023-01-01", emu.account_url("east"));
    emu.put(&other, json!({"properties": {"storageAccountName": "someoneelse"}}))
        .await
        .assert_arm_error(400, "BadRequest");
}

#[tokio::test]
async fn missing_wrong_expired_and_insufficient_sas_tokens_are_refused_with_403() {
    let emu = Emulator::start_fast(&[]).await;
    emu.create_asset("east", "a").await;
    emu.create_asset("east", "b").await;
    let rw = container_sas(&emu, "east", "a", "ReadWrite", &in_hours(1)).await;
    assert_eq!(put_blob(&emu, &blob_url(&rw[0], "x.mp4"), b"x").await.status, 201);
    let read = container_sas(&emu, "east", "a", "Read", &in_hours(1)).await;

    put_blob(&emu, &blob_url(&read[0], "y.mp4"), b"y")
        .await
        .assert_storage_error(403, "AuthorizationPermissionMismatch");
    let no_delete = raw(&emu, Method::DELETE, &blob_url(&rw[0], "x.mp4"), &[], None).await;
    no_delete.assert_storage_error(403, "AuthorizationPermissionMismatch");

    let (base, _) = read[0].split_once('?').unwrap();
    let missing = raw(&emu, Method::GET, &format!("{base}/x.mp4"), &[], None).await;
    missing.assert_storage_error(403, "AuthenticationFailed");
    assert!(missing.text().contains("<AuthenticationErrorDetail>"));

    let widened = blob_url(&read[0].replace("sp=rl", "sp=rwl"), "y.mp4");
    put_blob(&emu, &widened, b"y").await.assert_storage_error(403, "AuthenticationFailed");

    let expired = container_sas(&emu, "east", "a", "Read", &in_hours(-1)).await;
    raw(&emu, Method::GET, &blob_url(&expired[0], "x.mp4"), &[], None)
        .await
        .assert_storage_error(403, "AuthenticationFailed");

    // A SAS for container a does not open container b.
    let b_container = emu.get(&format!("{}/assets/b?api-version=2023-01-01", emu.account_url("east"))).await.body
        ["properties"]["container"]
        .as_str()
        .unwrap()
        .to_string();
    let (a_base, query) = rw[0].split_once('?').unwrap();
    let other = format!("{}/{b_container}/x.mp4?{query}", a_base.rsplit_once('/').unwrap().0);
    put_blob(&emu, &other, b"x").await.assert_storage_error(403, "AuthenticationFailed");

    let head = raw(&emu, Method::HEAD, &format!("{base}/x.mp4"), &[], None).await;
    assert_eq!((head.status, head.header("x-ms-error-code")), (403, "AuthenticationFailed"));
    assert!(head.body.is_empty());
}

#[tokio::test]
async fn a_copy_from_one_account_to_another_lands_asynchronously_and_is_counted_once() {
    // 20 s of emulated copy time is 0.1 s real at scale 200: the copy is surely pending when the 202 comes back.
    let emu = Emulator::start_fast(&["--copy-ms", "20000"]).await;
    emu.create_asset("east", "src").await;
    emu.create_asset("west", "dst").await;
    let src_rw = container_sas(&emu, "east", "src", "ReadWrite", &in_hours(1)).await;
    let payload: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
    assert_eq!(put_blob(&emu, &blob_url(&src_rw[0], "video.mp4"), &payload).await.status, 201);
    let src_read = container_sas(&emu, "east", "src", "Read", &in_hours(1)).await;
    let dst_rw = container_sas(&emu, "west", "dst", "ReadWrite", &in_hours(1)).await;
    let source = blob_url(&src_read[0], "video.mp4");
    let dest = blob_url(&dst_rw[0], "copied.mp4");

    let copy = raw(&emu, Method::PUT, &dest, &[("x-ms-copy-source", &source)], None).await;
    assert_eq!(copy.status, 202, "{}", copy.text());
    assert_eq!(copy.header("x-ms-copy-status"), "pending");
    let copy_id = copy.header("x-ms-copy-id").to_string();
    assert!(!copy_id.is_empty());

    eventually("the copy succeeds", || async {
        raw(&emu, Method::HEAD, &dest, &[], None).await.header("x-ms-copy-status") == "success"
    })
    .await;
    let head = raw(&emu, Method::HEAD, &dest, &[], None).await;
    assert_eq!(head.header("x-ms-copy-id"), copy_id);
    assert_eq!(head.header("x-ms-copy-progress"), "10000/10000");
    assert!(!head.header("x-ms-copy-source").contains("sig="), "the source SAS is not echoed");
    assert_eq!(raw(&emu, Method::GET, &dest, &[], None).await.body, payload);

    let west = account_entry(&emu, "west").await;
    assert_eq!(west["copies"], json!({"copies": 1, "copiesCompleted": 1, "copiedBytes": 10000}));

    // A listing reports the copy only when asked for it with `include=copy`, as List Blobs documents.
    let plain = raw(&emu, Method::GET, &list_url(&dst_rw[0]), &[], None).await.text();
    assert!(plain.contains("<Name>copied.mp4</Name>") && !plain.contains("<CopyStatus>"), "{plain}");
    let with_copy = raw(&emu, Method::GET, &format!("{}&include=metadata,copy", list_url(&dst_rw[0])), &[], None).await;
    let with_copy = with_copy.text();
    assert!(with_copy.contains("<CopyStatus>success</CopyStatus>"), "{with_copy}");
    assert!(with_copy.contains(&format!("<CopyId>{copy_id}</CopyId>")), "{with_copy}");
    assert_eq!(account_entry(&emu, "east").await["copies"]["copies"], 0);
}

#[tokio::test]
async fn a_copy_onto_a_blob_whose_copy_is_still_pending_is_refused_with_409_pending_copy_operation() {
    // An emulated hour is 18 s real at scale 200: the first copy is still pending when the second comes.
    let emu = Emulator::start_fast(&["--copy-ms", "3600000"]).await;
    emu.create_asset("east", "src").await;
    emu.create_asset("west", "dst").await;
    let src_rw = container_sas(&emu, "east", "src", "ReadWrite", &in_hours(1)).await;
    put_blob(&emu, &blob_url(&src_rw[0], "v.mp4"), b"v").await;
    let dst_rw = container_sas(&emu, "west", "dst", "ReadWrite", &in_hours(1)).await;
    let (source, dest) = (blob_url(&src_rw[0], "v.mp4"), blob_url(&dst_rw[0], "v.mp4"));

    let first = raw(&emu, Method::PUT, &dest, &[("x-ms-copy-source", &source)], None).await;
    assert_eq!((first.status, first.header("x-ms-copy-status")), (202, "pending"), "{}", first.text());
    raw(&emu, Method::PUT, &dest, &[("x-ms-copy-source", &source)], None)
        .await
        .assert_storage_error(409, "PendingCopyOperation");
    let head = raw(&emu, Method::HEAD, &dest, &[], None).await;
    assert_eq!(head.header("x-ms-copy-id"), first.header("x-ms-copy-id"), "the pending copy goes on");
    assert_eq!(account_entry(&emu, "west").await["copies"]["copies"], 1, "the refused copy is not counted");
}

#[tokio::test]
async fn a_copy_needs_a_readable_source_and_a_writable_destination() {
    let emu = Emulator::start_fast(&[]).await;
    emu.create_asset("east", "src").await;
    emu.create_asset("west", "dst").await;
    let src_rw = container_sas(&emu, "east", "src", "ReadWrite", &in_hours(1)).await;
    put_blob(&emu, &blob_url(&src_rw[0], "v.mp4"), b"v").await;
    let dst_rw = container_sas(&emu, "west", "dst", "ReadWrite", &in_hours(1)).await;
    let dst_read = container_sas(&emu, "west", "dst", "Read", &in_hours(1)).await;
    let good_source = blob_url(&src_rw[0], "v.mp4");
    let (src_base, _) = src_rw[0].split_once('?').unwrap();

    let unsigned = format!("{src_base}/v.mp4");
    raw(&emu, Method::PUT, &blob_url(&dst_rw[0], "c.mp4"), &[("x-ms-copy-source", &unsigned)], None)
        .await
        .assert_storage_error(403, "CannotVerifyCopySource");
    let missing = blob_url(&src_rw[0], "nope.mp4");
    raw(&emu, Method::PUT, &blob_url(&dst_rw[0], "c.mp4"), &[("x-ms-copy-source", &missing)], None)
        .await
        .assert_storage_error(404, "CannotVerifyCopySource");
    raw(&emu, Method::PUT, &blob_url(&dst_read[0], "c.mp4"), &[("x-ms-copy-source", &good_source)], None)
        .await
        .assert_storage_error(403, "AuthorizationPermissionMismatch");
    raw(
        &emu,
        Method::PUT,
        &blob_url(&dst_rw[0], "c.mp4"),
        &[("x-ms-copy-source", "https://elsewhere.example/x/y")],
        None,
    )
    .await
    .assert_storage_error(400, "CannotVerifyCopySource");
    assert_eq!(account_entry(&emu, "west").await["copies"]["copies"], 0, "refused copies are not counted");
}
