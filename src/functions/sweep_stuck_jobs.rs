//! SweepStuckJobs (timer): the periodic pass over each account's active attempts.
//!
//! For each account: report what is in flight, and with `MRU_SCALE_DOWN=periodic` bring a managed account's
//! MRUs down to what is in flight (the guidance's remedy for thrashing).

use crate::config::ScaleDown;
use crate::invoke::{InvokeRequest, InvokeResponse, TimerInfo};
use crate::scaling;
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
            if app.settings.mru.scale_down == ScaleDown::Periodic {
                scaling::scale_down_account(app, account).await?;
            }
            let counters = app.store.counters(&account.name).await?.value;
            tracing::info!(account = %account.name, region = %account.region, in_flight = counters.in_flight(), "sweep");
            response =
                response.log(format!("{} ({}): {} in flight", account.name, account.region, counters.in_flight()));
        }
        Ok(response)
    })
}
