//! ReadmitAccount (HTTP `POST /api/accounts/{account}/readmit`, operator key): probes the account now and,
//! if it answers, puts it back in rotation, skipping its cool-down or drain. Body `{"reason": "...", "by"?}`.
//! A failed probe answers 409 and changes nothing.

use super::{operator_request, with_alerts};
use crate::invoke::{HttpRequestData, HttpResponseData, InvokeRequest, InvokeResponse};
use crate::store::StoreError;
use crate::App;
use serde_json::json;
use std::future::Future;
use std::pin::Pin;

/// Runs one ReadmitAccount invocation.
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
        let now = chrono::Utc::now();
        let (res, alerts) = match crate::workflow::readmit_account(app, account, &by, &reason, now).await? {
            Err(error) => (
                HttpResponseData::error(
                    409,
                    "probe_failed",
                    &format!("{} did not answer the probe, so it stays out of rotation: {error}", account.name),
                ),
                vec![],
            ),
            Ok(readmitted) => {
                let body = json!({
                    "account": account.name, "region": account.region, "inRotation": true,
                    "wasInRotation": readmitted.is_none(),
                });
                (HttpResponseData::json(200, &body), readmitted.unwrap_or_default())
            }
        };
        Ok(with_alerts(InvokeResponse::default().output("res", res.to_value()), &alerts))
    })
}
