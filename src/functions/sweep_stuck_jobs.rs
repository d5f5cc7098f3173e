//! SweepStuckJobs (timer): runs the sweep (see `crate::sweep`) and sends and logs its alerts.

use super::with_alerts;
use crate::invoke::{InvokeRequest, InvokeResponse, TimerInfo};
use crate::store::StoreError;
use crate::App;
use chrono::Utc;
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
        let report = crate::sweep::sweep(app, Utc::now()).await?;
        for line in report.log {
            response = response.log(line);
        }
        Ok(with_alerts(response, &report.alerts))
    })
}
