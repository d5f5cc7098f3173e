//! The Media Services client against the emulator answering as the service documents it: a duplicate
//! create answered with 409 or with 400 is read back and taken only if it is the same resource; a job
//! whose output asset is missing (400, not 404) gets the asset and is created; refusals of the account
//! (401/403, a 409 on an asset PUT, a 404 for the account itself) are the account's fault and are told apart
//! from refusals of the request and from a child resource that does not exist. The blob calls of
//! publication on the SAS URLs the service issues list copy state (asked for with `include=copy`) and names
//! Storage sends percent-encoded, start copies once (a second one onto a pending copy is refused with 409
//! `PendingCopyOperation`, a refusal of the request) and read a blob's properties.
//!
//! Every call goes over HTTP to the real emulator binary; nothing is stubbed.

mod support;

use ams_failover::config::{AccountConfig, ArmAuth, MruMode};
use ams_failover::media::blob::CopyStatus;
use ams_failover::media::streaming::{LocatorCreated, LocatorSpec, SasPermissions};
use ams_failover::media::{JobSpec, MediaClient, MediaError};
use anyhow::{ensure, Context};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;
use support::{options, start_emulator, StackOptions, RESOURCE_GROUP, SUBSCRIPTION};
use testkit::stack::Process;

const ACCOUNT: &str = "amswesteurope";
const TRANSFORM: &str = "encode";

/// The emulator with one account and `args`, the client, and the account as the product configures it.
async fn emulator(args: &[&str]) -> anyhow::Result<(Process, MediaClient, AccountConfig)> {
    let stack_options = StackOptions {
        accounts: vec![(ACCOUNT, "westeurope")],
        emulator_args: args.iter().map(|a| a.to_string()).collect(),
        phases_ms: (600_000, 600_000, 600_000),
        ..options()
    };
    let emulator = start_emulator(&testkit::try_workspace_bin("ams-emulator")?, &stack_options)?;
    let account = account_named(&emulator, ACCOUNT)?;
    let media = MediaClient::new(reqwest::Client::new(), &ArmAuth::None, Duration::from_secs(5))?;
    let transform = json!({"properties": {"outputs": [{"preset": {"@odata.type": "#Microsoft.Media.BuiltInStandardEncoderPreset", "presetName": "AdaptiveStreaming"}}]}});
    media.put_transform(&account, TRANSFORM, &transform).await?;
    Ok((emulator, media, account))
}

fn account_named(emulator: &Process, name: &str) -> anyhow::Result<AccountConfig> {
    Ok(AccountConfig {
        name: name.to_owned(),
        region: "westeurope".to_owned(),
        provider: Default::default(),
        subscription_id: SUBSCRIPTION.to_owned(),
        resource_group: RESOURCE_GROUP.to_owned(),
        arm_endpoint: url::Url::parse(&emulator.url)?,
        mru_mode: MruMode::Automatic,
        max_mru: 10,
        mru_endpoint: None,
        stuck_after: Duration::from_secs(600),
        event_topic: None,
        api_key: None,
        mkio: None,
    })
}

fn spec(job_id: &str, asset: &str) -> JobSpec {
    JobSpec {
        base_uri: Some("https://media.example/in/".to_owned()),
        files: vec!["movie.mp4".to_owned()],
        output_assets: vec![asset.to_owned()],
        priority: "Normal".to_owned(),
        correlation_data: BTreeMap::from([
            ("jobId".to_owned(), job_id.to_owned()),
            ("attempt".to_owned(), "1".to_owned()),
        ]),
    }
}

async fn set_fault(emulator: &Process, fault: Value) -> anyhow::Result<()> {
    let url = format!("{}/_emulator/accounts/{ACCOUNT}/fault", emulator.url);
    let status = reqwest::Client::new().post(url).json(&fault).send().await?.status();
    ensure!(status.is_success(), "setting the fault answered {status}");
    Ok(())
}

async fn a_duplicate_job_create_is_read_back_and_taken_when_it_is_the_same_job(status: &str) -> anyhow::Result<()> {
    let (_emulator, media, account) = emulator(&["--duplicate-create-status", status]).await?;
    media.ensure_asset(&account, "dup-a1-out-0").await?;
    let first = media.create_job(&account, TRANSFORM, "dup-a1", &spec("dup", "dup-a1-out-0")).await?;
    // The same create again, as after a lost answer: the existing job is the answer.
    let again = media.create_job(&account, TRANSFORM, "dup-a1", &spec("dup", "dup-a1-out-0")).await?;
    assert_eq!((again.name.as_str(), again.correlation_data.clone()), (first.name.as_str(), first.correlation_data));
    // Another job under the name is not ours: the refusal stands.
    let other = media.create_job(&account, TRANSFORM, "dup-a1", &spec("someone-else", "dup-a1-out-0")).await;
    assert!(matches!(other, Err(MediaError::Rejected { .. })), "{other:?}");
    Ok(())
}

#[tokio::test]
async fn a_duplicate_job_create_answered_with_409_is_read_back_and_taken() -> anyhow::Result<()> {
    a_duplicate_job_create_is_read_back_and_taken_when_it_is_the_same_job("409").await
}

#[tokio::test]
async fn a_duplicate_job_create_answered_with_400_is_read_back_and_taken() -> anyhow::Result<()> {
    a_duplicate_job_create_is_read_back_and_taken_when_it_is_the_same_job("400").await
}

#[tokio::test]
async fn duplicate_locator_and_streaming_policy_creates_answered_with_400_or_409_read_back_the_existing_one(
) -> anyhow::Result<()> {
    for status in ["400", "409"] {
        let (_emulator, media, account) = emulator(&["--duplicate-create-status", status]).await?;
        media.ensure_asset(&account, "asset-1").await?;
        let locator = LocatorSpec {
            asset_name: "asset-1",
            streaming_policy_name: "Predefined_ClearStreamingOnly",
            streaming_locator_id: "90000000-0000-0000-0000-000000000001",
            content_keys: &[],
        };
        let created = media.create_locator(&account, "asset-1", &locator).await?;
        let LocatorCreated::Created(live) = created else { anyhow::bail!("not created: {created:?}") };
        assert_eq!(media.create_locator(&account, "asset-1", &locator).await?, LocatorCreated::Existing(live));
        // An id taken by another locator is refused with no locator of that name to read back.
        let other = media.create_locator(&account, "asset-2", &locator).await?;
        assert!(matches!(other, LocatorCreated::Refused(MediaError::Rejected { .. })), "{status}: {other:?}");

        let policy = json!({"properties": {"noEncryption": {"enabledProtocols": {"download": true, "dash": true, "hls": true, "smoothStreaming": true}}}});
        assert!(media.create_streaming_policy(&account, "clear", &policy).await?, "{status}: created");
        assert!(!media.create_streaming_policy(&account, "clear", &policy).await?, "{status}: already there");
    }
    Ok(())
}

#[tokio::test]
async fn a_job_whose_output_asset_is_missing_gets_the_asset_and_is_created() -> anyhow::Result<()> {
    let (emulator, media, account) = emulator(&[]).await?;
    // No ensure_asset first: the service answers 400 "Asset '...' is not found under account ...".
    let job = media.create_job(&account, TRANSFORM, "lost-a1", &spec("lost", "lost-a1-out-0")).await?;
    assert_eq!(job.outputs[0].asset_name.as_deref(), Some("lost-a1-out-0"));
    let asset = format!(
        "{}/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}/providers/Microsoft.Media/mediaServices/{ACCOUNT}/assets/lost-a1-out-0?api-version=2023-01-01",
        emulator.url
    );
    assert_eq!(reqwest::get(asset).await?.status(), 200, "the asset was made");
    Ok(())
}

#[tokio::test]
async fn refusals_of_the_account_are_its_fault_and_a_bad_request_is_not() -> anyhow::Result<()> {
    let (emulator, media, account) = emulator(&[]).await?;
    media.ensure_asset(&account, "r-a1-out-0").await?;
    set_fault(
        &emulator,
        json!({"mode": "refuse", "operation": "Jobs_Create", "status": 403, "code": "AuthorizationFailed"}),
    )
    .await?;
    let forbidden = media.create_job(&account, TRANSFORM, "r-a1", &spec("r", "r-a1-out-0")).await;
    let forbidden = forbidden.err().context("a 403 create succeeded")?;
    assert!(matches!(forbidden, MediaError::Account { status: 403, .. }), "{forbidden:?}");
    assert!(forbidden.is_account_fault());

    set_fault(
        &emulator,
        json!({"mode": "refuse", "operation": "Assets_CreateOrUpdate", "status": 409, "code": "Conflict",
               "message": "Media Services cannot access the storage account."}),
    )
    .await?;
    let storage = media.ensure_asset(&account, "r-a2-out-0").await.err().context("the asset PUT succeeded")?;
    assert!(matches!(storage, MediaError::Account { status: 409, .. }), "{storage:?}");

    set_fault(&emulator, json!({"mode": "healthy"})).await?;
    let mut bad = spec("r", "r-a1-out-0");
    bad.priority = "Urgent".to_owned();
    let refused = media.create_job(&account, TRANSFORM, "r-a3", &bad).await.err().context("a bad job was created")?;
    assert!(matches!(refused, MediaError::Rejected { status: 400, .. }), "{refused:?}");
    assert!(!refused.is_account_fault(), "a body the service refuses everywhere is not the account's fault");
    Ok(())
}

#[tokio::test]
async fn an_account_that_is_not_there_fails_the_probe_and_its_jobs_have_not_vanished() -> anyhow::Result<()> {
    let (emulator, media, account) = emulator(&[]).await?;
    // A job that does not exist in an account that does: it has vanished.
    assert_eq!(media.get_job(&account, TRANSFORM, "never-a1").await?, None);
    media.probe(&account, TRANSFORM).await?;

    // The same calls for an account the service does not know (404 ResourceNotFound for the account).
    let gone = account_named(&emulator, "amsdeleted")?;
    let probe = media.probe(&gone, TRANSFORM).await;
    assert!(matches!(probe, Err(MediaError::Account { status: 404, .. })), "{probe:?}");
    let read = media.get_job(&gone, TRANSFORM, "never-a1").await;
    assert!(matches!(read, Err(MediaError::Account { status: 404, .. })), "{read:?}");

    // And for a resource group that is not there (404 ResourceGroupNotFound).
    let wrong_group = AccountConfig { resource_group: "elsewhere-rg".to_owned(), ..account.clone() };
    let probe = media.probe(&wrong_group, TRANSFORM).await;
    assert!(matches!(probe, Err(MediaError::Account { status: 404, .. })), "{probe:?}");
    Ok(())
}

/// Writes `bytes` to `blob` of `asset`'s container with a SAS from listContainerSas, as an encoder would.
async fn upload(emulator: &Process, asset: &str, blob: &str, bytes: &[u8]) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let expiry = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let sas_url = format!(
        "{}/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}/providers/Microsoft.Media/mediaServices/{ACCOUNT}/assets/{asset}/listContainerSas?api-version=2023-01-01",
        emulator.url
    );
    let sas: Value = http
        .post(sas_url)
        .json(&json!({"permissions": "ReadWrite", "expiryTime": expiry}))
        .send()
        .await?
        .json()
        .await?;
    let mut url = url::Url::parse(sas["assetContainerSasUrls"][0].as_str().context("no SAS URL")?)?;
    url.path_segments_mut().map_err(|_| anyhow::anyhow!("not a base URL"))?.extend(blob.split('/'));
    let status = http.put(url).header("x-ms-blob-type", "BlockBlob").body(bytes.to_vec()).send().await?.status();
    ensure!(status == 201, "uploading {blob:?} answered {status}");
    Ok(())
}

#[tokio::test]
async fn blob_calls_list_copy_state_and_encoded_names_start_each_copy_once_and_read_properties() -> anyhow::Result<()> {
    // 40 emulated seconds at scale 20: each copy stays pending for 2 s.
    let (emulator, media, account) = emulator(&["--copy-ms", "40000"]).await?;
    let (source, target) = ("blobs-src", "blobs-dst");
    media.ensure_asset(&account, source).await?;
    media.ensure_asset(&account, target).await?;
    // A name in a virtual directory, one with XML's special characters, and one XML cannot carry, which
    // Storage lists percent-encoded with `Encoded="true"`.
    let names = ["dir/video 1.mp4", "a&b<c>.ism", "ctl\u{1}name.mp4"];
    for (i, name) in names.iter().enumerate() {
        upload(&emulator, source, name, &vec![7u8; 10 + i]).await?;
    }
    let expiry = chrono::Utc::now() + chrono::Duration::hours(1);
    let from = media.container_sas(&account, source, SasPermissions::Read, expiry).await?;
    let to = media.container_sas(&account, target, SasPermissions::ReadWrite, expiry).await?;

    let mut wanted = media.list_blobs(&from).await?;
    wanted.sort_by(|a, b| a.name.cmp(&b.name));
    let mut expected: Vec<(String, u64)> =
        names.iter().enumerate().map(|(i, n)| (n.to_string(), 10 + i as u64)).collect();
    expected.sort();
    assert_eq!(wanted.iter().map(|b| (b.name.clone(), b.length)).collect::<Vec<_>>(), expected);
    assert!(wanted.iter().all(|b| b.copy_status.is_none() && b.copy_source.is_none()), "{wanted:?}");
    assert!(media.list_blobs(&to).await?.is_empty());

    for blob in &wanted {
        media.start_copy(&from, &to, &blob.name).await?;
    }
    let copying = media.list_blobs(&to).await?;
    assert_eq!(copying.len(), names.len());
    for blob in &copying {
        assert_eq!(blob.copy_status, Some(CopyStatus::Pending), "{blob:?}");
        assert!(blob.copied_from(&from, &blob.name), "{blob:?}");
        assert!(!blob.copied_from(&to, &blob.name), "{blob:?}");
    }
    // A copy started again while the first is pending is refused by the service, not by the account.
    let again =
        media.start_copy(&from, &to, names[0]).await.err().context("a second copy onto a pending one started")?;
    assert!(
        matches!(&again, MediaError::Rejected { status: 409, code, .. } if code == "PendingCopyOperation"),
        "{again:?}"
    );
    assert!(!again.is_account_fault());
    assert!(!again.to_string().contains("sig="), "{again}");

    let head = media.head_blob(&to, names[0]).await?.context("the copy target is there")?;
    assert_eq!(head.copy_status, Some(CopyStatus::Pending));
    assert!(head.copied_from(&from, names[0]), "{head:?}");
    assert_eq!(media.head_blob(&to, "missing.mp4").await?, None);

    let landed = support::eventually(Duration::from_secs(30), "the copies to land", || async {
        let listed = media.list_blobs(&to).await?;
        Ok(listed.iter().all(|b| b.copy_status == Some(CopyStatus::Success)).then_some(listed))
    })
    .await?;
    let mut landed: Vec<(String, u64)> = landed.into_iter().map(|b| (b.name, b.length)).collect();
    landed.sort();
    assert_eq!(landed, expected, "every blob landed at its length");
    let head = media.head_blob(&to, names[2]).await?.context("the copy target is there")?;
    assert_eq!((head.copy_status, head.length), (Some(CopyStatus::Success), 12));
    Ok(())
}
