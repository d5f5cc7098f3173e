//! MK.IO's per-project rate limits and the request counts tests read to prove a client stays within them.
//!
//! MK.IO admits 2,000 GET and 1,000 DELETE/PATCH/POST/PUT requests a minute per project and answers 429
//! past that, with its usual error body and no `Retry-After` (docs, api-guides "Rate limits"). How the
//! minute is measured is not documented; the emulator uses a **sliding** window (the stricter reading: a
//! burst straddling a minute boundary is still a burst). The window is real time, since clients budget
//! against the wall clock.
//!
//! Two things are kept per class: the admitted requests (what the budget applies to) and every request
//! sent, refused ones included (what tests compare against the budget: `peak` is the most requests seen in
//! any window, so a client that ever sent more than its budget shows it even if some were refused).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use axum::http::Method;
use chrono::{DateTime, DurationRound, Utc};
use serde::Serialize;

/// Which budget a request draws on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// GET (and HEAD).
    Read,
    /// DELETE, PATCH, POST, PUT.
    Write,
}

impl Class {
    /// The class of a request method.
    pub fn of(method: &Method) -> Class {
        if method == Method::GET || method == Method::HEAD {
            Class::Read
        } else {
            Class::Write
        }
    }

    fn index(self) -> usize {
        match self {
            Class::Read => 0,
            Class::Write => 1,
        }
    }
}

/// Requests of one calendar minute (UTC), for humans reading the control API.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Minute {
    /// Start of the minute, `2026-01-01T10:00:00Z`.
    pub minute: String,
    /// GETs sent.
    pub reads: u64,
    /// Writes sent.
    pub writes: u64,
    /// Requests refused with 429 by the rate limit.
    pub throttled: u64,
}

/// Counts as the control API shows them.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MeterView {
    /// Budget per window: reads.
    pub reads_per_window: u32,
    /// Budget per window: writes.
    pub writes_per_window: u32,
    /// Window length in real milliseconds.
    pub window_ms: u64,
    /// Every GET sent to the project since start.
    pub reads: u64,
    /// Every write sent to the project since start.
    pub writes: u64,
    /// GETs refused with 429 by the rate limit.
    pub throttled_reads: u64,
    /// Writes refused with 429 by the rate limit.
    pub throttled_writes: u64,
    /// Requests refused with 401.
    pub unauthorized: u64,
    /// GETs sent within the last window.
    pub window_reads: usize,
    /// Writes sent within the last window.
    pub window_writes: usize,
    /// Most GETs sent within any one window.
    pub peak_reads: usize,
    /// Most writes sent within any one window.
    pub peak_writes: usize,
    /// The last 60 calendar minutes that saw requests, oldest first.
    pub per_minute: Vec<Minute>,
}

/// One project's request accounting.
#[derive(Debug, Clone)]
pub struct RequestMeter {
    budget: [u32; 2],
    window: Duration,
    admitted: [VecDeque<Instant>; 2],
    sent: [VecDeque<Instant>; 2],
    totals: [u64; 2],
    throttled: [u64; 2],
    unauthorized: u64,
    peak: [usize; 2],
    minutes: VecDeque<Minute>,
}

/// How many calendar minutes the control API keeps.
const MINUTES_KEPT: usize = 60;

impl RequestMeter {
    /// A meter admitting `reads` and `writes` per `window`.
    pub fn new(reads: u32, writes: u32, window: Duration) -> RequestMeter {
        RequestMeter {
            budget: [reads, writes],
            window,
            admitted: Default::default(),
            sent: Default::default(),
            totals: [0; 2],
            throttled: [0; 2],
            unauthorized: 0,
            peak: [0; 2],
            minutes: VecDeque::new(),
        }
    }

    /// Changes the budgets (control API); what was admitted so far still counts.
    pub fn set_budget(&mut self, reads: Option<u32>, writes: Option<u32>) {
        if let Some(r) = reads {
            self.budget[0] = r;
        }
        if let Some(w) = writes {
            self.budget[1] = w;
        }
    }

    fn expire(&mut self, now: Instant) {
        let window = self.window;
        for q in self.admitted.iter_mut().chain(self.sent.iter_mut()) {
            while q.front().is_some_and(|t| now.duration_since(*t) >= window) {
                q.pop_front();
            }
        }
    }

    fn minute_mut(&mut self, at: DateTime<Utc>) -> Option<&mut Minute> {
        let key =
            at.duration_trunc(chrono::Duration::minutes(1)).unwrap_or(at).format("%Y-%m-%dT%H:%M:%SZ").to_string();
        if self.minutes.back().is_none_or(|m| m.minute != key) {
            self.minutes.push_back(Minute { minute: key, reads: 0, writes: 0, throttled: 0 });
            while self.minutes.len() > MINUTES_KEPT {
                self.minutes.pop_front();
            }
        }
        self.minutes.back_mut()
    }

    /// Counts a request the project received, whatever its fate.
    pub fn record(&mut self, class: Class, now: Instant, at: DateTime<Utc>) {
        self.expire(now);
        let i = class.index();
        self.totals[i] += 1;
        self.sent[i].push_back(now);
        self.peak[i] = self.peak[i].max(self.sent[i].len());
        if let Some(m) = self.minute_mut(at) {
            match class {
                Class::Read => m.reads += 1,
                Class::Write => m.writes += 1,
            }
        }
    }

    /// Counts a request refused for want of a valid token.
    pub fn record_unauthorized(&mut self) {
        self.unauthorized += 1;
    }

    /// Whether a request fits the budget; an admitted request uses it up, a refused one does not.
    pub fn admit(&mut self, class: Class, now: Instant, at: DateTime<Utc>) -> bool {
        self.expire(now);
        let i = class.index();
        if self.admitted[i].len() < self.budget[i] as usize {
            self.admitted[i].push_back(now);
            return true;
        }
        self.throttled[i] += 1;
        if let Some(m) = self.minute_mut(at) {
            m.throttled += 1;
        }
        false
    }

    /// The counts as of `now`.
    pub fn view(&mut self, now: Instant) -> MeterView {
        self.expire(now);
        MeterView {
            reads_per_window: self.budget[0],
            writes_per_window: self.budget[1],
            window_ms: u64::try_from(self.window.as_millis()).unwrap_or(u64::MAX),
            reads: self.totals[0],
            writes: self.totals[1],
            throttled_reads: self.throttled[0],
            throttled_writes: self.throttled[1],
            unauthorized: self.unauthorized,
            window_reads: self.sent[0].len(),
            window_writes: self.sent[1].len(),
            peak_reads: self.peak[0],
            peak_writes: self.peak[1],
            per_minute: self.minutes.iter().cloned().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_class_admits_its_budget_per_window_and_refuses_the_rest() {
        let t0 = Instant::now();
        let at = Utc::now();
        let mut m = RequestMeter::new(2, 1, Duration::from_secs(60));
        let mut admitted = Vec::new();
        for _ in 0..3 {
            m.record(Class::Read, t0, at);
            admitted.push(m.admit(Class::Read, t0, at));
        }
        assert_eq!(admitted, [true, true, false]);
        // Writes have their own budget.
        m.record(Class::Write, t0, at);
        assert!(m.admit(Class::Write, t0, at));
        let v = m.view(t0);
        assert_eq!((v.reads, v.throttled_reads, v.peak_reads, v.window_reads), (3, 1, 3, 3));
        assert_eq!(v.per_minute.len(), 1);
        assert_eq!(v.per_minute[0].throttled, 1);
    }

    #[test]
    fn the_window_slides_so_old_requests_free_the_budget_but_the_peak_stays() {
        let t0 = Instant::now();
        let at = Utc::now();
        let mut m = RequestMeter::new(1, 1, Duration::from_millis(100));
        m.record(Class::Read, t0, at);
        assert!(m.admit(Class::Read, t0, at));
        let t1 = t0 + Duration::from_millis(50);
        m.record(Class::Read, t1, at);
        assert!(!m.admit(Class::Read, t1, at), "still inside the window");
        let t2 = t0 + Duration::from_millis(100);
        m.record(Class::Read, t2, at);
        assert!(m.admit(Class::Read, t2, at), "the first request has left the window");
        let v = m.view(t2);
        assert_eq!(v.peak_reads, 2);
        assert_eq!(v.window_reads, 2);
    }
}
