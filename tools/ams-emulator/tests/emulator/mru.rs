//! Media Reserved Units: discovery through ARM, the v2 OData endpoint, the
//! concurrency gate and the accounting counters.

use reqwest::Method;
use serde_json::{json, Value};

use crate::common::{eventually, Emulator, Reply, WAIT};

/// `managed` (MRUs matter) and `auto` (scales by itself), fast phases, long enough processing to overlap.
async fn start() -> Emulator {
    Emulator::start(&[
        "--account",
        "managed:eastus:managed",
        "--account",
        "auto:westus",
        "--time-scale",
        "200",
        "--max-mru",
        "10",
    ])
    .await
}

/// Discovers the v2 endpoint the way azure-cli does: ARM at api-version 2015-10-01.
async fn discover(emu: &Emulator, account: &str) -> (String, Value) {
    let r = emu.get(&format!("{}?api-version=2015-10-01", emu.account_url(account))).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let endpoints = r.body["properties"]["apiEndpoints"].as_array().expect("apiEndpoints").clone();
    let v2 = endpoints.iter().find(|e| e["majorVersion"] == "2").unwrap_or(&endpoints[0]);
    (v2["endpoint"].as_str().expect("endpoint").to_string(), r.body)
}

async fn v2(emu: &Emulator, method: Method, url: &str, body: Option<&str>) -> Reply {
    let mut req = emu
        .http
        .request(method.clone(), url)
        .header("accept", "application/json;odata=minimalmetadata")
        .header("content-type", "application/json;odata=verbose");
    if let Some(b) = body {
        req = req.body(b.to_string());
    }
    let resp = tokio::time::timeout(WAIT, req.send()).await.expect("answer in time").expect("sent");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.expect("body");
    let body = if text.is_empty() { Value::Null } else { serde_json::from_str(&text).expect("JSON body") };
    Reply { status, headers, body }
}

fn assert_odata_error(r: &Reply, status: u16, code: &str) {
    assert_eq!(r.status, status, "{}", r.body);
    assert_eq!(r.body["odata.error"]["code"], code, "{}", r.body);
    assert_eq!(r.body["odata.error"]["message"]["lang"], "en-US");
    assert!(r.body["odata.error"]["message"]["value"].as_str().is_some_and(|m| !m.is_empty()));
}

async fn account_entry(emu: &Emulator, name: &str) -> Value {
    let list = emu.get(&format!("{}/_emulator/accounts", emu.base)).await.body;
    list.as_array().expect("list").iter().find(|a| a["name"] == name).expect("account listed").clone()
}

async fn set_mru(emu: &Emulator, account: &str, current: u32) -> Reply {
    emu.post(&format!("{}/_emulator/accounts/{account}/mru", emu.base), Some(json!({"current": current}))).await
}

#[tokio::test]
async fn the_v2_endpoint_is_discovered_through_the_2015_account_resource() {
    let emu = start().await;
    let (endpoint, account) = discover(&emu, "managed").await;
    assert_eq!(endpoint, format!("{}/mru/managed/api/", emu.base), "trailing slash kept");
    let id = account["properties"]["mediaServiceId"].as_str().expect("mediaServiceId");
    assert!(uuid::Uuid::parse_str(id).is_ok());
    assert!(account["properties"].get("encryption").is_none(), "managed accounts carry no encryption");
    assert_eq!(account["name"], "managed");
    assert_eq!(account["type"], "Microsoft.Media/mediaservices");

    let (_, auto) = discover(&emu, "auto").await;
    assert_eq!(auto["properties"]["encryption"], json!({"type": "SystemKey"}));
    // Stable per account, across api-versions.
    let again = emu.get(&format!("{}?api-version=2023-01-01", emu.account_url("MANAGED"))).await;
    assert_eq!(again.body["properties"]["mediaServiceId"], id);
    assert_ne!(auto["properties"]["mediaServiceId"], id);
}

#[tokio::test]
async fn reserved_units_round_trip_through_get_and_put() {
    let emu = start().await;
    let (endpoint, account) = discover(&emu, "managed").await;
    let id = account["properties"]["mediaServiceId"].as_str().unwrap().to_string();

    let got = v2(&emu, Method::GET, &format!("{endpoint}EncodingReservedUnitTypes?api-version=2.19"), None).await;
    assert_eq!(got.status, 200, "{}", got.body);
    assert!(got.headers["content-type"].to_str().unwrap().starts_with("application/json"));
    assert!(got.body["odata.metadata"].as_str().unwrap().ends_with("$metadata#EncodingReservedUnitTypes"));
    assert_eq!(
        got.body["value"],
        json!([{"AccountId": id, "ReservedUnitType": 0, "MaxReservableUnits": 10, "CurrentReservedUnits": 0}])
    );

    let key = format!("{endpoint}EncodingReservedUnitTypes(guid'{id}')?api-version=2.19");
    let put = v2(&emu, Method::PUT, &key, Some(r#"{"ReservedUnitType":1, "CurrentReservedUnits":4}"#)).await;
    assert_eq!(put.status, 204, "{}", put.body);
    assert_eq!(put.body, Value::Null, "no body");
    // x-ms-version instead of the query parameter, PATCH with only the count, the reference's bare-key body.
    let patch = emu
        .http
        .patch(format!("{endpoint}EncodingReservedUnitTypes(guid'{id}')"))
        .header("x-ms-version", "2.19")
        .body("{CurrentReservedUnits:7}")
        .send()
        .await
        .unwrap();
    assert_eq!(patch.status(), 204);

    let got = v2(&emu, Method::GET, &format!("{endpoint}EncodingReservedUnitTypes?api-version=2.19"), None).await;
    assert_eq!(got.body["value"][0]["ReservedUnitType"], 1, "a missing field keeps its value");
    assert_eq!(got.body["value"][0]["CurrentReservedUnits"], 7);

    let m = account_entry(&emu, "managed").await["mru"].clone();
    assert_eq!(m["mode"], "managed");
    assert_eq!(m["current"], 7);
    assert_eq!(m["max"], 10);
    assert_eq!(m["updates"], 2);
    assert_eq!(m["calls"], 4);
}

#[tokio::test]
async fn every_refused_mru_call_answers_in_the_odata_error_shape() {
    let emu = start().await;
    let (endpoint, account) = discover(&emu, "managed").await;
    let id = account["properties"]["mediaServiceId"].as_str().unwrap().to_string();
    let key = format!("{endpoint}EncodingReservedUnitTypes(guid'{id}')?api-version=2.19");

    let too_many = v2(&emu, Method::PUT, &key, Some(r#"{"CurrentReservedUnits":11}"#)).await;
    assert_odata_error(&too_many, 400, "BadRequest");
    assert_odata_error(&v2(&emu, Method::PUT, &key, Some(r#"{"CurrentReservedUnits":-1}"#)).await, 400, "BadRequest");
    assert_odata_error(&v2(&emu, Method::PUT, &key, Some(r#"{"ReservedUnitType":3}"#)).await, 400, "BadRequest");
    assert_odata_error(&v2(&emu, Method::PUT, &key, Some("{not json")).await, 400, "BadRequest");

    let other = format!("{endpoint}EncodingReservedUnitTypes(guid'{}')?api-version=2.19", uuid::Uuid::new_v4());
    assert_odata_error(
        &v2(&emu, Method::PUT, &other, Some(r#"{"CurrentReservedUnits":1}"#)).await,
        404,
        "ResourceNotFound",
    );

    let unversioned = v2(&emu, Method::GET, &format!("{endpoint}EncodingReservedUnitTypes"), None).await;
    assert_odata_error(&unversioned, 400, "MissingApiVersion");
    let collection = format!("{endpoint}EncodingReservedUnitTypes?api-version=2.19");
    assert_odata_error(&v2(&emu, Method::PUT, &collection, Some("{}")).await, 405, "MethodNotAllowed");

    // Accounts that scale by themselves refuse with the azure-cli wording.
    let (auto_endpoint, auto) = discover(&emu, "auto").await;
    let auto_id = auto["properties"]["mediaServiceId"].as_str().unwrap();
    for r in [
        v2(&emu, Method::GET, &format!("{auto_endpoint}EncodingReservedUnitTypes?api-version=2.19"), None).await,
        v2(
            &emu,
            Method::PUT,
            &format!("{auto_endpoint}EncodingReservedUnitTypes(guid'{auto_id}')?api-version=2.19"),
            Some(r#"{"CurrentReservedUnits":1}"#),
        )
        .await,
    ] {
        assert_odata_error(&r, 400, "BadRequest");
        let text = r.body["odata.error"]["message"]["value"].as_str().unwrap();
        assert!(text.contains("created with the 2020-05-01 version of the API or later"), "{text}");
    }

    // Faults apply to the v2 endpoint too.
    emu.set_fault("managed", json!({"mode": "throttle", "retryAfterSeconds": 2, "count": 1})).await;
    let throttled = v2(&emu, Method::GET, &collection, None).await;
    assert_odata_error(&throttled, 429, "TooManyRequests");
    assert_eq!(throttled.headers["retry-after"], "2");
    assert_eq!(v2(&emu, Method::GET, &collection, None).await.status, 200, "healed after the count");
    emu.set_fault("managed", json!({"mode": "outage"})).await;
    assert_odata_error(&v2(&emu, Method::GET, &collection, None).await, 503, "ServiceUnavailable");

    let m = account_entry(&emu, "managed").await["mru"].clone();
    assert_eq!(m["current"], 0, "nothing refused changed the units");
    assert_eq!(m["updates"], 0);
    assert_eq!(m["calls"], 10);
}

/// Number of jobs of `account` in Processing according to the control API.
async fn processing(emu: &Emulator, account: &str) -> u64 {
    account_entry(emu, account).await["jobs"]["Processing"].as_u64().unwrap()
}

#[tokio::test]
async fn reserved_units_cap_the_jobs_processing_at_once_and_raising_them_releases_waiting_jobs() {
    // 60 s of processing is 0.3 s real at scale 200: long enough to overlap, short enough to drain.
    let emu = Emulator::start(&[
        "--account",
        "managed:eastus:managed",
        "--account",
        "auto:westus",
        "--time-scale",
        "200",
        "--processing-ms",
        "60000",
    ])
    .await;
    assert_eq!(set_mru(&emu, "managed", 2).await.status, 200);
    for i in 0..5 {
        assert_eq!(emu.submit("managed", "encode", &format!("m{i}")).await.status, 201);
        assert_eq!(emu.submit("auto", "encode", &format!("a{i}")).await.status, 201);
    }
    eventually("two managed jobs process", || async { processing(&emu, "managed").await == 2 }).await;
    eventually("all automatic jobs process at once", || async { processing(&emu, "auto").await == 5 }).await;

    let mut most = 0;
    let mut finished = 0;
    let deadline = tokio::time::Instant::now() + WAIT;
    while finished < 2 {
        assert!(tokio::time::Instant::now() < deadline, "two managed jobs finish in time");
        let entry = account_entry(&emu, "managed").await;
        most = most.max(entry["jobs"]["Processing"].as_u64().unwrap());
        finished = entry["jobs"]["Finished"].as_u64().unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        assert!(most <= 2, "never more than the reserved units");
    }
    assert_eq!(set_mru(&emu, "managed", 5).await.status, 200);
    for i in 0..5 {
        emu.wait_for_state("managed", &format!("m{i}"), "Finished").await;
    }
    let m = account_entry(&emu, "managed").await["mru"].clone();
    assert_eq!(m["updates"], 0, "control changes are not v2 updates");
    assert!(m["provisionedMruSeconds"].as_f64().unwrap() > 0.0);
    let busy = m["busyMruSeconds"].as_f64().unwrap();
    // Five 60 s jobs each held a unit for their whole processing time.
    assert!(busy >= 5.0 * 60.0 * 0.99, "{m}");
    assert!(busy <= m["provisionedMruSeconds"].as_f64().unwrap(), "{m}");
    let auto = account_entry(&emu, "auto").await["mru"].clone();
    assert_eq!(auto["mode"], "automatic");
    assert_eq!(auto["provisionedMruSeconds"], 0.0);
}

#[tokio::test]
async fn zero_reserved_units_run_one_job_at_a_time() {
    let emu =
        Emulator::start(&["--account", "solo:eastus:managed", "--time-scale", "200", "--processing-ms", "40000"]).await;
    for i in 0..3 {
        assert_eq!(emu.submit("solo", "encode", &format!("s{i}")).await.status, 201);
    }
    let mut finished = 0;
    let deadline = tokio::time::Instant::now() + WAIT;
    while finished < 3 {
        assert!(tokio::time::Instant::now() < deadline, "the jobs finish in time");
        let entry = account_entry(&emu, "solo").await;
        assert!(entry["jobs"]["Processing"].as_u64().unwrap() <= 1, "{entry}");
        finished = entry["jobs"]["Finished"].as_u64().unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    // Nothing was reserved, so nothing counts as provisioned or busy.
    let m = account_entry(&emu, "solo").await["mru"].clone();
    assert_eq!((m["provisionedMruSeconds"].as_f64(), m["busyMruSeconds"].as_f64()), (Some(0.0), Some(0.0)));
}

#[tokio::test]
async fn the_control_api_refuses_mru_changes_it_cannot_apply() {
    let emu = start().await;
    set_mru(&emu, "auto", 1).await.assert_arm_error(400, "BadRequest");
    set_mru(&emu, "managed", 11).await.assert_arm_error(400, "BadRequest");
    set_mru(&emu, "ghost", 1).await.assert_arm_error(404, "ResourceNotFound");
    let ok = set_mru(&emu, "Managed", 3).await;
    assert_eq!(ok.body["mru"]["current"], 3);
}
