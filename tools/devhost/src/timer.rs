//! Timer triggers: schedules, `TimerInfo` payloads (contracts 1.4(c)) and the
//! no-overlap rule of the timer listener.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

use crate::config::{FunctionDef, Trigger};
use crate::invoke::{self, InvocationError};
use crate::ncrontab::Schedule;
use crate::server::App;

/// What the schedule monitor would have stored for one timer.
#[derive(Debug, Clone)]
struct Status {
    last: Option<DateTime<Utc>>,
    next: DateTime<Utc>,
    last_updated: DateTime<Utc>,
}

/// Per-timer runtime state.
#[derive(Debug)]
pub struct TimerState {
    running: AtomicBool,
    status: Mutex<Status>,
}

/// Formats a time as Newtonsoft writes a `DateTime` from the monitor: seconds
/// fraction trimmed of zeros, `+00:00` offset.
fn dotnet_time(t: DateTime<Utc>) -> String {
    let frac = format!("{:07}", t.timestamp_subsec_nanos() / 100);
    let frac = frac.trim_end_matches('0');
    let dot = if frac.is_empty() { "" } else { "." };
    format!("{}{dot}{frac}+00:00", t.format("%Y-%m-%dT%H:%M:%S"))
}

impl TimerState {
    /// Fresh state: never run, next occurrence computed from `now`.
    pub fn new(schedule: &Schedule, now: DateTime<Utc>) -> Self {
        TimerState {
            running: AtomicBool::new(false),
            status: Mutex::new(Status { last: None, next: schedule.next_after(now).unwrap_or(now), last_updated: now }),
        }
    }

    /// The `TimerInfo` object for the next invocation.
    pub fn timer_info(&self, use_monitor: bool) -> Value {
        let status = if use_monitor {
            let s = match self.status.lock() {
                Ok(g) => g.clone(),
                Err(p) => p.into_inner().clone(),
            };
            json!({
                // A never-run timer reports default(DateTime).
                "Last": s.last.map(dotnet_time).unwrap_or_else(|| "0001-01-01T00:00:00".to_string()),
                "Next": dotnet_time(s.next),
                "LastUpdated": dotnet_time(s.last_updated),
            })
        } else {
            Value::Null
        };
        json!({
            "Schedule": { "AdjustForDST": true },
            "ScheduleStatus": status,
            "IsPastDue": false,
        })
    }

    fn record_run(&self, occurrence: DateTime<Utc>, schedule: &Schedule) {
        let mut s = match self.status.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let now = Utc::now();
        *s = Status {
            last: Some(occurrence),
            next: schedule.next_after(occurrence.max(now)).unwrap_or(now),
            last_updated: now,
        };
    }
}

/// Runs a timer function once with the current `TimerInfo`.
pub async fn invoke_timer(
    app: &Arc<App>,
    function: &FunctionDef,
    state: &TimerState,
    reason: &str,
) -> Result<(), InvocationError> {
    let use_monitor = matches!(function.trigger, Trigger::Timer { use_monitor: true, .. });
    let mut data = Map::new();
    data.insert(function.trigger_name.clone(), state.timer_info(use_monitor));
    let mut metadata = Map::new();
    metadata.insert("sys".into(), invoke::sys_metadata(&function.name));
    app.invoker.invoke(function, reason, Ok(data), metadata, |_| Ok(())).await
}

/// Runs a scheduled (or start-up) occurrence unless the previous one is still going.
async fn run_occurrence(
    app: Arc<App>,
    function: FunctionDef,
    state: Arc<TimerState>,
    schedule: Schedule,
    occurrence: DateTime<Utc>,
    reason: &'static str,
) {
    if state.running.swap(true, Ordering::SeqCst) {
        eprintln!(
            "Timer '{}': skipping the occurrence at {} because the previous run is still in progress",
            function.name,
            dotnet_time(occurrence)
        );
        return;
    }
    // A failed run is only logged: timers do not retry (contracts 1.7).
    let _ = invoke_timer(&app, &function, &state, reason).await;
    state.record_run(occurrence, &schedule);
    state.running.store(false, Ordering::SeqCst);
}

/// Drives one timer forever: optional start-up run, then every occurrence.
pub async fn drive(app: Arc<App>, function: FunctionDef, state: Arc<TimerState>) {
    let Trigger::Timer { schedule, run_on_startup, .. } = function.trigger.clone() else {
        return;
    };
    if run_on_startup {
        tokio::spawn(run_occurrence(
            app.clone(),
            function.clone(),
            state.clone(),
            schedule.clone(),
            Utc::now(),
            "Timer fired at startup",
        ));
    }
    let mut cursor = Utc::now();
    loop {
        let Some(next) = schedule.next_after(cursor) else {
            eprintln!("Timer '{}': the schedule has no further occurrences", function.name);
            return;
        };
        // Sleep in steps so a wall-clock jump never makes a tick fire early.
        loop {
            let now = Utc::now();
            if now >= next {
                break;
            }
            let wait = (next - now).to_std().unwrap_or_default();
            tokio::time::sleep(wait.min(std::time::Duration::from_secs(60))).await;
        }
        tokio::spawn(run_occurrence(
            app.clone(),
            function.clone(),
            state.clone(),
            schedule.clone(),
            next,
            "Timer fired",
        ));
        // If devhost fell behind (e.g. the machine slept), continue from now.
        cursor = next.max(Utc::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn times_are_written_like_newtonsoft_datetimes() {
        let t = Utc.with_ymd_and_hms(2016, 10, 4, 10, 15, 0).single().unwrap();
        assert_eq!(dotnet_time(t), "2016-10-04T10:15:00+00:00");
        let t2 = t + chrono::Duration::microseconds(123_400);
        assert_eq!(dotnet_time(t2), "2016-10-04T10:15:00.1234+00:00");
    }

    #[test]
    fn schedule_status_is_null_without_the_monitor() {
        let s = Schedule::parse("0 */5 * * * *").unwrap();
        let state = TimerState::new(&s, Utc::now());
        let info = state.timer_info(false);
        assert_eq!(info["ScheduleStatus"], Value::Null);
        assert_eq!(info["Schedule"], json!({"AdjustForDST": true}));
        assert_eq!(info["IsPastDue"], json!(false));
        let with = state.timer_info(true);
        assert_eq!(with["ScheduleStatus"]["Last"], json!("0001-01-01T00:00:00"));
    }
}
