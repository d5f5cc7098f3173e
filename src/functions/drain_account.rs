//! DrainAccount (HTTP `POST /api/accounts/{account}/drain[?evacuate=true]`, operator key): takes an account
//! out of rotation now and keeps it out until an operator readmits it; with `evacuate=true` its jobs still
//! waiting there move to other accounts. Body `{"reason": "...", "by"?: "..."}`.

use super::{operator_request, with_alerts};
use crate::invoke::{HttpRequestData, HttpResponseData, InvokeRequest, InvokeResponse};
use crate::store::StoreError;
use crate::App;
use serde_json::json;
use std::future::Future;
use std::pin::Pin;

/// Runs one DrainAccount invocation.
pub fn run(
    app: &App,
    req: InvokeRequest,
) -> Pin<Box<dyn Future<Output = Result<InvokeResponse, StoreError>> + Send + '_>> {
    Box::pin(async move {
        let http = HttpRequestData::from_invocation(&req, "req").unwrap_or_default();
        let (account, by, reason) = match operator_request(app, &http) {
            Ok(parts) => parts,
            Err(res) => return Ok(InvokeResponse::default().output("res", res.to_value())),
        };
        let evacuate = http.query.get("evacuate").is_some_and(|v| v.eq_ignore_ascii_case("true"));
        let now = chrono::Utc::now();
        let drained = crate::workflow::drain_account(app, account, &by, &reason, evacuate, now).await?;
        let body = json!({
            "account": account.name, "region": account.region, "inRotation": false,
            "alreadyDrained": !drained.newly, "movedJobs": drained.moved, "removed": drained.removal,
        });
        let res = HttpResponseData::json(200, &body);
        Ok(with_alerts(InvokeResponse::default().output("res", res.to_value()), &drained.alerts))
    })
}
