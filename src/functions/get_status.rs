//! GetStatus (HTTP `GET /api/status`): for operators, every account's provider, rotation state, in-flight
//! count and active attempts by state, MRUs as cached (or that MRU scaling is off for a provider without
//! reserved units), and what the last sweep repaired. One read of each health row
//! and of each account's counter shards; no scans. With `Accept: text/html` the same answer comes as the
//! status page ([`super::status_page`]).

use crate::domain::credential::CredentialStatus;
use crate::invoke::{HttpRequestData, HttpResponseData, InvokeRequest, InvokeResponse};
use crate::store::StoreError;
use crate::App;
use serde_json::json;
use std::future::Future;
use std::pin::Pin;

/// Runs one GetStatus invocation.
pub fn run(
    app: &App,
    req: InvokeRequest,
) -> Pin<Box<dyn Future<Output = Result<InvokeResponse, StoreError>> + Send + '_>> {
    Box::pin(async move {
        let now = chrono::Utc::now();
        let health = app.store.health().await?;
        let mut accounts = Vec::with_capacity(app.settings.accounts.len());
        for account in &app.settings.accounts {
            let row = app.store.account(&account.name).await?;
            let counters = row.counters;
            let capabilities = account.provider.capabilities();
            let mru = match &row.mru {
                // A provider without reserved units: nothing to scale, whatever mruMode says.
                _ if !capabilities.reserved_units => json!({
                    "mode": account.mru_mode.to_string(), "scaling": false, "unitsInFlight": counters.units,
                    "note": format!("{} has no reserved units: MRU scaling is off", account.provider),
                }),
                Some(cache) => {
                    let ceiling = cache.ceiling(account.max_mru);
                    json!({
                        "mode": account.mru_mode.to_string(), "scaling": account.scales_mru(), "max": ceiling, "current": cache.current,
                        "readAt": cache.read_at, "unitsInFlight": counters.units,
                        "saturated": crate::domain::mru::saturated(counters.units, cache.current, ceiling),
                    })
                }
                None => {
                    json!({ "mode": account.mru_mode.to_string(), "scaling": account.scales_mru(), "max": account.max_mru, "unitsInFlight": counters.units })
                }
            };
            let removal = health.removed.get(&account.name);
            let mut entry = json!({
                "name": account.name,
                "region": account.region,
                "provider": account.provider,
                "inRotation": removal.is_none(),
                "removed": removal,
                "inFlight": counters.in_flight(),
                "activeByState": counters.by_state(),
                "mru": mru,
            });
            if let Some(action) = health.accounts.get(&account.name).and_then(|a| a.operator.as_ref()) {
                // Who last drained or readmitted it, why and when.
                entry["operator"] = json!(action);
            }
            if let Some(mkio) = &account.mkio {
                // A token lasts a year at most and is renewed by hand: say so well before it stops working.
                let status = CredentialStatus::at(mkio.token.expires_at, now);
                let warning = status.warning(&mkio.token.setting);
                if let Some(warning) = &warning {
                    tracing::warn!(account = %account.name, region = %account.region, %warning, "MK.IO token");
                }
                entry["credential"] = json!({ "setting": mkio.token.setting, "status": status, "warning": warning });
                entry["project"] = json!(mkio.project);
            }
            accounts.push(entry);
        }
        let in_rotation = accounts.iter().filter(|a| a["inRotation"] == json!(true)).count();
        // What the last sweep found: open jobs, jobs waiting for an account, and open jobs it had to repair
        // because nothing accounted for them (a crash between two writes).
        let last_sweep = app.store.last_sweep().await?;
        let status = json!({ "accountsInRotation": in_rotation, "accounts": accounts, "lastSweep": last_sweep });
        let http = HttpRequestData::from_invocation(&req, "req").unwrap_or_default();
        let accept = http.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case("accept")).map(|(_, v)| v.join(","));
        let res = if super::status_page::wants_html(accept.as_deref()) {
            HttpResponseData::html(200, super::status_page::render(&status, now))
        } else {
            HttpResponseData::json(200, &status)
        };
        Ok(InvokeResponse::default().output("res", res.to_value()))
    })
}
