//! MK.IO's rate limits, kept on the client side: per project at most 2,000 reads and 1,000 writes a minute,
//! answered with 429 beyond them, and no documented `Retry-After`. Each project gets two token buckets
//! (reads, writes) sized so that no minute window sees more calls than its budget, and a back-off that
//! follows a schedule kept as data after every 429 the service still answers.
//!
//! Nothing here blocks for long: a call whose turn is further away than the caller's bound is refused at
//! once, so a submission moves to another region instead of holding its invocation. Pure: time comes in as
//! an [`Instant`].

use std::time::{Duration, Instant};

/// Waits after consecutive 429s without `Retry-After`, as MediaKind's own migration tool backs off; the last
/// repeats. A success starts the schedule again.
pub const BACKOFF_SCHEDULE: [Duration; 7] = [
    Duration::from_secs(1),
    Duration::from_secs(5),
    Duration::from_secs(10),
    Duration::from_secs(15),
    Duration::from_secs(25),
    Duration::from_secs(30),
    Duration::from_secs(45),
];

/// What MK.IO counts a call as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallKind {
    /// GET.
    Read,
    /// PUT, POST, PATCH, DELETE.
    Write,
}

/// A token bucket whose budget holds for every minute window: it starts with a tenth of the budget (the
/// burst) and refills the other nine tenths over the minute, so any 60 s see at most `per_minute` calls.
/// A reservation may take the bucket below zero: the caller then waits until its token would have arrived,
/// which keeps concurrent callers in order without a lock held across the wait.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    capacity: f64,
    per_sec: f64,
    tokens: f64,
    at: Instant,
}

impl TokenBucket {
    /// A full bucket for a budget of `per_minute` calls in any minute.
    pub fn per_minute(per_minute: u32, now: Instant) -> TokenBucket {
        let budget = f64::from(per_minute.max(1));
        let capacity = (budget / 10.0).floor().max(1.0);
        TokenBucket { capacity, per_sec: (budget - capacity).max(1.0) / 60.0, tokens: capacity, at: now }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_sec).min(self.capacity);
        self.at = self.at.max(now);
    }

    /// How long until a token is free for a call made at `now` (zero when one is there).
    pub fn wait(&mut self, now: Instant) -> Duration {
        self.refill(now);
        if self.tokens >= 1.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64((1.0 - self.tokens) / self.per_sec)
        }
    }

    /// Takes a token for a call to be sent after [`TokenBucket::wait`].
    pub fn take(&mut self, now: Instant) {
        self.refill(now);
        self.tokens -= 1.0;
    }
}

/// The back-off after 429s.
#[derive(Debug, Clone, Default)]
pub struct Backoff {
    strikes: usize,
    until: Option<Instant>,
}

impl Backoff {
    /// Records a 429 at `now`; returns how long the project is to be left alone: `Retry-After` when the
    /// service gave one, else the next step of [`BACKOFF_SCHEDULE`].
    pub fn throttled(&mut self, now: Instant, retry_after: Option<Duration>) -> Duration {
        let step = BACKOFF_SCHEDULE[self.strikes.min(BACKOFF_SCHEDULE.len() - 1)];
        let wait = retry_after.unwrap_or(step);
        self.strikes += 1;
        self.until = Some(now + wait);
        wait
    }

    /// A call went through: the next 429 starts the schedule again.
    pub fn succeeded(&mut self) {
        self.strikes = 0;
        self.until = None;
    }

    /// How long a call made at `now` still has to wait.
    pub fn remaining(&self, now: Instant) -> Duration {
        self.until.map_or(Duration::ZERO, |until| until.saturating_duration_since(now))
    }
}

/// Why a call was not sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The budget of this kind of call has no token within the bound.
    Budget {
        /// What the call was.
        kind: CallKind,
        /// How long it would have had to wait.
        wait: Duration,
    },
    /// The project is backing off after a 429.
    BackingOff {
        /// How long is left.
        wait: Duration,
    },
}

/// One project's budgets and back-off.
#[derive(Debug, Clone)]
pub struct ProjectBudget {
    reads: TokenBucket,
    writes: TokenBucket,
    /// The back-off after 429s.
    pub backoff: Backoff,
}

impl ProjectBudget {
    /// Full budgets of `reads` and `writes` per minute.
    pub fn new(reads: u32, writes: u32, now: Instant) -> ProjectBudget {
        ProjectBudget {
            reads: TokenBucket::per_minute(reads, now),
            writes: TokenBucket::per_minute(writes, now),
            backoff: Backoff::default(),
        }
    }

    /// Whether a call of `kind` made at `now` would be admitted within `bound` (nothing is taken).
    pub fn has_room(&mut self, kind: CallKind, now: Instant, bound: Duration) -> bool {
        let bucket = match kind {
            CallKind::Read => &mut self.reads,
            CallKind::Write => &mut self.writes,
        };
        self.backoff.remaining(now) <= bound && bucket.wait(now) <= bound
    }

    /// Admits a call of `kind` at `now` if it can be sent within `bound`: the wait before sending it (its
    /// token is taken), or why not (nothing is taken).
    pub fn admit(&mut self, kind: CallKind, now: Instant, bound: Duration) -> Result<Duration, Refusal> {
        let backing_off = self.backoff.remaining(now);
        if backing_off > bound {
            return Err(Refusal::BackingOff { wait: backing_off });
        }
        let bucket = match kind {
            CallKind::Read => &mut self.reads,
            CallKind::Write => &mut self.writes,
        };
        let wait = bucket.wait(now);
        if wait > bound {
            return Err(Refusal::Budget { kind, wait });
        }
        bucket.take(now);
        Ok(wait.max(backing_off))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sends calls as fast as `admit` lets them for `seconds`, and returns when each was sent.
    fn sends(budget: &mut ProjectBudget, kind: CallKind, start: Instant, seconds: u64) -> Vec<Instant> {
        let mut sent = Vec::new();
        let mut now = start;
        let end = start + Duration::from_secs(seconds);
        while now < end {
            match budget.admit(kind, now, Duration::from_millis(10)) {
                Ok(wait) => sent.push(now + wait),
                Err(_) => now += Duration::from_millis(10),
            }
        }
        sent
    }

    #[test]
    fn no_minute_window_ever_sees_more_writes_than_the_budget() {
        let start = Instant::now();
        let mut budget = ProjectBudget::new(1800, 900, start);
        let sent = sends(&mut budget, CallKind::Write, start, 180);
        for (i, first) in sent.iter().enumerate() {
            let in_window = sent[i..].iter().take_while(|t| t.duration_since(*first) < Duration::from_secs(60)).count();
            assert!(in_window <= 900, "{in_window} writes within a minute of call {i}");
        }
        // And the budget is used: close to 900 a minute once the burst is spent.
        assert!(sent.len() >= 2 * 810 + 90, "only {} writes in three minutes", sent.len());
    }

    #[test]
    fn reads_and_writes_have_budgets_of_their_own() {
        let now = Instant::now();
        let mut budget = ProjectBudget::new(20, 10, now);
        let bound = Duration::ZERO;
        assert!(budget.admit(CallKind::Write, now, bound).is_ok(), "a tenth of 10 is one write of burst");
        assert!(matches!(
            budget.admit(CallKind::Write, now, bound),
            Err(Refusal::Budget { kind: CallKind::Write, .. })
        ));
        assert!(budget.admit(CallKind::Read, now, bound).is_ok(), "reads are not held up by writes");
    }

    #[test]
    fn a_call_whose_turn_is_within_the_bound_waits_for_it_and_one_beyond_is_refused_untaken() {
        let now = Instant::now();
        // 60 a minute: a burst of 6, then one every 54/60 s... (54 refilled over 60 s).
        let mut bucket = ProjectBudget::new(60, 60, now);
        for _ in 0..6 {
            assert_eq!(bucket.admit(CallKind::Read, now, Duration::ZERO), Ok(Duration::ZERO));
        }
        let next = bucket.admit(CallKind::Read, now, Duration::from_secs(2)).expect("within 2 s");
        assert!(next > Duration::from_millis(1000) && next < Duration::from_millis(1200), "{next:?}");
        let refused = bucket.admit(CallKind::Read, now, Duration::from_secs(2));
        assert!(matches!(refused, Err(Refusal::Budget { wait, .. }) if wait > Duration::from_secs(2)), "{refused:?}");
        // The refused call took nothing: the one after it is not pushed further out.
        let again = bucket.admit(CallKind::Read, now, Duration::from_secs(3)).expect("within 3 s");
        assert!(again < Duration::from_millis(2300), "{again:?}");
    }

    #[test]
    fn throttling_backs_off_along_the_schedule_and_a_success_starts_it_again() {
        let now = Instant::now();
        let mut backoff = Backoff::default();
        let waits: Vec<u64> = (0..9).map(|_| backoff.throttled(now, None).as_secs()).collect();
        assert_eq!(waits, [1, 5, 10, 15, 25, 30, 45, 45, 45]);
        assert_eq!(backoff.remaining(now + Duration::from_secs(40)), Duration::from_secs(5));
        backoff.succeeded();
        assert_eq!(backoff.remaining(now), Duration::ZERO);
        assert_eq!(backoff.throttled(now, None), Duration::from_secs(1));
        assert_eq!(backoff.throttled(now, Some(Duration::from_secs(3))), Duration::from_secs(3), "Retry-After wins");
    }

    #[test]
    fn asking_for_room_takes_nothing() {
        let now = Instant::now();
        let mut budget = ProjectBudget::new(10, 10, now);
        for _ in 0..5 {
            assert!(budget.has_room(CallKind::Write, now, Duration::ZERO));
        }
        assert!(budget.admit(CallKind::Write, now, Duration::ZERO).is_ok());
        assert!(!budget.has_room(CallKind::Write, now, Duration::ZERO), "the one write of burst is taken");
        assert!(budget.has_room(CallKind::Write, now, Duration::from_secs(10)), "the next comes within 10 s");
    }

    #[test]
    fn a_project_backing_off_refuses_calls_at_once_unless_the_rest_is_short() {
        let now = Instant::now();
        let mut budget = ProjectBudget::new(100, 100, now);
        budget.backoff.throttled(now, None);
        budget.backoff.throttled(now, None);
        assert_eq!(
            budget.admit(CallKind::Write, now, Duration::from_secs(2)),
            Err(Refusal::BackingOff { wait: Duration::from_secs(5) })
        );
        let later = now + Duration::from_secs(4);
        assert_eq!(budget.admit(CallKind::Write, later, Duration::from_secs(2)), Ok(Duration::from_secs(1)));
    }
}
