//! SweepStuckJobs (timer): the periodic pass over each account's active attempts.
//!
//! This version reports what it sees (each account's active attempts by state, read from the counters);
//! stuck-region detection, resubmission and re-admission build on it.

use crate::invoke::{InvokeRequest, InvokeResponse, TimerInfo};
use crate::store::StoreError;
use crate::App;
use std::future::Future;
use std::pin::Pin;

/// Runs one SweepStuckJobs invocation.
pub fn run(
    app: &App,
    req: InvokeRequest,
) -> Pin<Box<dyn Future<Output = Result<InvokeResponse, StoreError>> + Send + '_>> {
    Box::pin(async move {
        let timer: TimerInfo = req.input("timer").and_then(|v| serde_json::from_value(v).ok()).unwrap_or_default();
        let mut response = InvokeResponse::default();
        if timer.is_past_due {
            response = response.log("the sweep is running later than scheduled");
        }
        for account in &app.settings.accounts {
            let counters = app.store.counters(&account.name).await?.value;
            tracing::info!(account = %account.name, region = %account.region, in_flight = counters.in_flight(), "sweep");
            response =
                response.log(format!("{} ({}): {} in flight", account.name, account.region, counters.in_flight()));
        }
        Ok(response)
    })
}
