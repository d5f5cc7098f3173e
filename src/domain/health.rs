//! The health list: which accounts are in rotation, and the rules that take one out and let it back in.
//! One record, stored in one Table entity and changed by compare-and-swap, so every instance sees the same
//! list and concurrent sweeps cannot both remove (or re-admit) an account.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// Why and until when an account is out of rotation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Removal {
    /// When it was removed.
    pub since: DateTime<Utc>,
    /// When a probe may bring it back.
    pub until: DateTime<Utc>,
    /// What was seen.
    pub reason: String,
    /// The cool-down it got, in seconds (it grows when an account fails again soon after coming back).
    pub cooldown_secs: u64,
    /// Set when an operator drained the account: it stays out, whatever probes say, until an operator
    /// readmits it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drained: Option<OperatorAction>,
}

/// An operator's hand on an account (drain or readmit): who, why and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OperatorAction {
    /// `drain` or `readmit`.
    pub action: String,
    /// Who asked (the caller's Entra principal, or the name the request gave).
    pub by: String,
    /// Why, as given.
    pub reason: String,
    /// When.
    pub at: DateTime<Utc>,
}

impl OperatorAction {
    fn new(action: &str, by: &str, reason: &str, at: DateTime<Utc>) -> OperatorAction {
        OperatorAction { action: action.to_owned(), by: by.to_owned(), reason: reason.to_owned(), at }
    }
}

/// What the list remembers about an account between removals.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountHealth {
    /// Transient submission failures in a row.
    #[serde(default)]
    pub submit_failures: u32,
    /// When it last came back into rotation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readmitted_at: Option<DateTime<Utc>>,
    /// The cool-down of its last removal, in seconds.
    #[serde(default)]
    pub last_cooldown_secs: u64,
    /// The fingerprint of the API credential operators were last told is expired or refused, so they are
    /// told once per credential; forgotten when the account comes back into rotation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_alerted: Option<String>,
    /// The last drain or readmit an operator asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator: Option<OperatorAction>,
}

/// The cool-down rule: `base`, doubled (up to `max`) for an account removed again within twice its last
/// cool-down after coming back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cooldown {
    /// The normal cool-down.
    pub base: Duration,
    /// The longest one.
    pub max: Duration,
}

/// The health list.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthRecord {
    /// Accounts out of rotation, by name.
    #[serde(default)]
    pub removed: BTreeMap<String, Removal>,
    /// Per-account memory, by name.
    #[serde(default)]
    pub accounts: BTreeMap<String, AccountHealth>,
    /// When operators were last told that no account takes jobs (the rotation is empty, or every account in
    /// it failed a job): one such alert per `ALERT_REPEAT`, however many jobs wait.
    #[serde(default, alias = "emptyAlertedAt", skip_serializing_if = "Option::is_none")]
    pub no_account_alerted_at: Option<DateTime<Utc>>,
    /// The account operators were told is the last one in rotation, while it still is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_account_alerted: Option<String>,
}

fn secs(d: Duration) -> u64 {
    d.as_secs().max(1)
}

fn after(t: DateTime<Utc>, secs: u64) -> DateTime<Utc> {
    t + chrono::Duration::seconds(i64::try_from(secs).unwrap_or(i64::MAX / 1000))
}

impl HealthRecord {
    /// The accounts of `configured` that are in rotation, in configuration order.
    pub fn in_rotation<'a>(&self, configured: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
        configured.into_iter().filter(|name| !self.removed.contains_key(*name)).collect()
    }

    /// The list with `account` removed for `reason`, and the removal; `None` if it is already out.
    pub fn remove(
        &self,
        account: &str,
        reason: &str,
        now: DateTime<Utc>,
        cooldown: Cooldown,
    ) -> Option<(HealthRecord, Removal)> {
        if self.removed.contains_key(account) {
            return None;
        }
        let memory = self.accounts.get(account).cloned().unwrap_or_default();
        // "Soon" is within twice its last cool-down of coming back: long enough for stuck jobs to be noticed.
        let failed_again_soon =
            memory.readmitted_at.is_some_and(|back| now < after(back, memory.last_cooldown_secs.saturating_mul(2)));
        let cooldown_secs = if failed_again_soon {
            (memory.last_cooldown_secs.saturating_mul(2)).clamp(secs(cooldown.base), secs(cooldown.max))
        } else {
            secs(cooldown.base)
        };
        let removal = Removal {
            since: now,
            until: after(now, cooldown_secs),
            reason: reason.to_owned(),
            cooldown_secs,
            drained: None,
        };
        let mut next = self.clone();
        next.removed.insert(account.to_owned(), removal.clone());
        let entry = next.accounts.entry(account.to_owned()).or_default();
        entry.last_cooldown_secs = cooldown_secs;
        entry.submit_failures = 0;
        Some((next, removal))
    }

    /// Removed accounts whose cool-down has passed: candidates for a probe. A drained account is not one.
    pub fn due_for_readmission(&self, now: DateTime<Utc>) -> Vec<String> {
        self.removed
            .iter()
            .filter(|(_, r)| r.until <= now && r.drained.is_none())
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// The list with `account` back in rotation; `None` if it is not out, its cool-down has not passed, or an
    /// operator drained it.
    pub fn readmit(&self, account: &str, now: DateTime<Utc>) -> Option<HealthRecord> {
        let removal = self.removed.get(account)?;
        if removal.until > now || removal.drained.is_some() {
            return None;
        }
        Some(self.back_in_rotation(account, now))
    }

    /// The list with `account` drained by an operator: out of rotation now, and kept out until an operator
    /// readmits it; an automatic removal under way becomes a drain. `None` if it is already drained.
    pub fn drain(&self, account: &str, by: &str, reason: &str, now: DateTime<Utc>) -> Option<(HealthRecord, Removal)> {
        let existing = self.removed.get(account);
        if existing.is_some_and(|r| r.drained.is_some()) {
            return None;
        }
        let action = OperatorAction::new("drain", by, reason, now);
        let removal = match existing {
            Some(r) => Removal { drained: Some(action.clone()), ..r.clone() },
            None => Removal {
                since: now,
                until: now,
                reason: format!("drained by {by}: {reason}"),
                cooldown_secs: 0,
                drained: Some(action.clone()),
            },
        };
        let mut next = self.clone();
        next.removed.insert(account.to_owned(), removal.clone());
        next.accounts.entry(account.to_owned()).or_default().operator = Some(action);
        Some((next, removal))
    }

    /// The list with `account` readmitted by an operator (after a probe the caller made), cool-down or
    /// drain notwithstanding; `None` if it is in rotation.
    pub fn readmit_by_operator(
        &self,
        account: &str,
        by: &str,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Option<HealthRecord> {
        self.removed.get(account)?;
        let mut next = self.back_in_rotation(account, now);
        next.accounts.entry(account.to_owned()).or_default().operator =
            Some(OperatorAction::new("readmit", by, reason, now));
        Some(next)
    }

    fn back_in_rotation(&self, account: &str, now: DateTime<Utc>) -> HealthRecord {
        let mut next = self.clone();
        next.removed.remove(account);
        let entry = next.accounts.entry(account.to_owned()).or_default();
        entry.readmitted_at = Some(now);
        // Its calls work again: a later refusal of the same credential is news.
        entry.credential_alerted = None;
        next
    }

    /// The list noting that operators are told the credential with `fingerprint` of `account` is expired or
    /// refused; `None` when they were already told about that credential.
    pub fn alert_credential(&self, account: &str, fingerprint: &str) -> Option<HealthRecord> {
        let told = self.accounts.get(account).and_then(|a| a.credential_alerted.as_deref());
        (told != Some(fingerprint)).then(|| {
            let mut next = self.clone();
            next.accounts.entry(account.to_owned()).or_default().credential_alerted = Some(fingerprint.to_owned());
            next
        })
    }

    /// The list after a transient submission failure on `account`, and the removal if this failure was the
    /// `threshold`-th in a row. `None` if the account is already out (nothing to count).
    pub fn submit_failed(
        &self,
        account: &str,
        reason: &str,
        threshold: u32,
        now: DateTime<Utc>,
        cooldown: Cooldown,
    ) -> Option<(HealthRecord, Option<Removal>)> {
        if self.removed.contains_key(account) {
            return None;
        }
        let mut next = self.clone();
        let failures = {
            let entry = next.accounts.entry(account.to_owned()).or_default();
            entry.submit_failures += 1;
            entry.submit_failures
        };
        if failures >= threshold {
            let reason = format!("{failures} submissions in a row failed; last: {reason}");
            return next.remove(account, &reason, now, cooldown).map(|(n, r)| (n, Some(r)));
        }
        Some((next, None))
    }

    /// The list after a successful submission on `account`; `None` when there was no failure streak to end.
    pub fn submit_succeeded(&self, account: &str) -> Option<HealthRecord> {
        let failures = self.accounts.get(account).map_or(0, |a| a.submit_failures);
        (failures > 0).then(|| {
            let mut next = self.clone();
            next.accounts.entry(account.to_owned()).or_default().submit_failures = 0;
            next
        })
    }

    /// The list noting an alert about an empty rotation at `now`, if none of `configured` is in rotation and
    /// no such alert went out within `repeat`; `None` otherwise.
    pub fn alert_empty<'a>(
        &self,
        configured: impl IntoIterator<Item = &'a str>,
        now: DateTime<Utc>,
        repeat: Duration,
    ) -> Option<HealthRecord> {
        if !self.in_rotation(configured).is_empty() {
            return None;
        }
        self.alert_no_account(now, repeat)
    }

    /// The list noting an alert that jobs are waiting because no account took them, if no such alert went
    /// out within `repeat`; `None` otherwise.
    pub fn alert_no_account(&self, now: DateTime<Utc>, repeat: Duration) -> Option<HealthRecord> {
        let quiet = self.no_account_alerted_at.is_none_or(|at| now >= after(at, secs(repeat)));
        quiet.then(|| HealthRecord { no_account_alerted_at: Some(now), ..self.clone() })
    }

    /// When more than one account is configured and just one is left in rotation: the list noting it and
    /// that account, once per time it becomes the last. When more are back, the list forgetting it (with no
    /// account to alert about). `None` when nothing changes.
    pub fn alert_last_account<'a>(
        &self,
        configured: impl IntoIterator<Item = &'a str>,
    ) -> Option<(HealthRecord, Option<String>)> {
        let configured: Vec<&str> = configured.into_iter().collect();
        let left = self.in_rotation(configured.iter().copied());
        match left.as_slice() {
            [last] if configured.len() > 1 && self.last_account_alerted.as_deref() != Some(*last) => {
                let last = (*last).to_owned();
                Some((HealthRecord { last_account_alerted: Some(last.clone()), ..self.clone() }, Some(last)))
            }
            [_] => None,
            _ => self
                .last_account_alerted
                .is_some()
                .then(|| (HealthRecord { last_account_alerted: None, ..self.clone() }, None)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + secs, 0).unwrap_or_default()
    }

    const COOLDOWN: Cooldown = Cooldown { base: Duration::from_secs(100), max: Duration::from_secs(350) };

    #[test]
    fn a_drained_account_stays_out_until_an_operator_readmits_it() {
        let now = chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap_or_default();
        let later = now + chrono::Duration::days(30);
        let (drained, removal) = HealthRecord::default().drain("a", "ops@x", "maintenance", now).expect("drained");
        assert_eq!(removal.drained.as_ref().map(|d| d.by.as_str()), Some("ops@x"));
        assert!(drained.in_rotation(["a", "b"]) == ["b"]);
        assert!(drained.drain("a", "ops@x", "again", now).is_none(), "draining twice is one drain");
        assert!(drained.due_for_readmission(later).is_empty(), "no probe brings it back");
        assert!(drained.readmit("a", later).is_none());
        let back = drained.readmit_by_operator("a", "ops@y", "fixed", now).expect("readmitted");
        assert_eq!(back.in_rotation(["a", "b"]), ["a", "b"]);
        assert_eq!(
            back.accounts["a"].operator.as_ref().map(|o| (o.action.as_str(), o.by.as_str())),
            Some(("readmit", "ops@y"))
        );
        assert!(back.readmit_by_operator("a", "ops@y", "fixed", now).is_none(), "already in rotation");
    }

    #[test]
    fn an_operator_readmits_an_automatically_removed_account_before_its_cool_down_and_drains_one_as_it_is() {
        let now = chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap_or_default();
        let rule = Cooldown { base: Duration::from_secs(600), max: Duration::from_secs(3600) };
        let (removed, _) = HealthRecord::default().remove("a", "stuck", now, rule).expect("removed");
        assert!(removed.readmit("a", now).is_none(), "the cool-down holds for probes");
        assert!(removed.readmit_by_operator("a", "ops", "checked", now).is_some(), "not for an operator");
        let (drained, removal) = removed.drain("a", "ops", "keep it out", now).expect("drained");
        assert_eq!(removal.reason, "stuck", "the removal keeps what was seen");
        assert!(drained.due_for_readmission(now + chrono::Duration::hours(2)).is_empty());
    }

    #[test]
    fn operators_hear_once_per_credential_about_a_refused_one_and_again_after_the_account_came_back() {
        let h = HealthRecord::default();
        let told = h.alert_credential("mkwe", "f1").expect("first time");
        assert!(told.alert_credential("mkwe", "f1").is_none(), "the same token again");
        assert!(told.alert_credential("mkwe", "f2").is_some(), "a new token that is refused too");
        assert!(told.alert_credential("mkne", "f1").is_some(), "another account");
        let (out, _) = told.remove("mkwe", "token", t(0), COOLDOWN).expect("removed");
        let back = out.readmit("mkwe", t(200)).expect("back");
        assert!(back.alert_credential("mkwe", "f1").is_some(), "it worked in between");
    }

    #[test]
    fn a_removed_account_leaves_rotation_until_its_cooldown_has_passed() {
        let (h, removal) = HealthRecord::default().remove("a", "stuck", t(0), COOLDOWN).expect("removed");
        assert_eq!(h.in_rotation(["a", "b"]), vec!["b"]);
        assert_eq!(removal.until, t(100));
        assert!(h.remove("a", "again", t(1), COOLDOWN).is_none(), "already out");
        assert_eq!(h.readmit("a", t(99)), None);
        assert!(h.due_for_readmission(t(99)).is_empty());
        assert_eq!(h.due_for_readmission(t(100)), vec!["a".to_owned()]);
        let back = h.readmit("a", t(100)).expect("due");
        assert_eq!(back.in_rotation(["a", "b"]), vec!["a", "b"]);
    }

    #[test]
    fn an_account_that_fails_again_soon_after_coming_back_gets_a_longer_cooldown_up_to_the_cap() {
        let mut h = HealthRecord::default();
        let mut now = t(0);
        let mut cooldowns = vec![];
        for _ in 0..4 {
            let (removed, removal) = h.remove("a", "stuck", now, COOLDOWN).expect("removed");
            cooldowns.push(removal.cooldown_secs);
            now = removal.until;
            h = removed.readmit("a", now).expect("due");
            now += chrono::Duration::seconds(10); // fails again soon
        }
        assert_eq!(cooldowns, vec![100, 200, 350, 350]);
        // Long after coming back, a failure starts from the base again.
        let later = now + chrono::Duration::seconds(10_000);
        assert_eq!(h.remove("a", "stuck", later, COOLDOWN).map(|(_, r)| r.cooldown_secs), Some(100));
    }

    #[test]
    fn consecutive_submission_failures_remove_the_account_at_the_threshold_and_success_resets_them() {
        let h = HealthRecord::default();
        let (h, none) = h.submit_failed("a", "503", 3, t(0), COOLDOWN).expect("counted");
        assert!(none.is_none());
        let h = h.submit_succeeded("a").expect("streak ended");
        assert!(h.submit_succeeded("a").is_none(), "nothing to reset");
        let (h, _) = h.submit_failed("a", "503", 3, t(1), COOLDOWN).expect("counted");
        let (h, _) = h.submit_failed("a", "503", 3, t(2), COOLDOWN).expect("counted");
        let (h, removal) = h.submit_failed("a", "503", 3, t(3), COOLDOWN).expect("counted");
        assert!(removal.is_some_and(|r| r.reason.contains("3 submissions")));
        assert!(h.submit_failed("a", "503", 3, t(4), COOLDOWN).is_none(), "already out");
    }

    #[test]
    fn an_empty_rotation_alerts_once_per_repeat_interval() {
        let (h, _) = HealthRecord::default().remove("a", "stuck", t(0), COOLDOWN).expect("removed");
        let repeat = Duration::from_secs(60);
        let h = h.alert_empty(["a"], t(1), repeat).expect("first alert");
        assert!(h.alert_empty(["a"], t(30), repeat).is_none());
        assert!(h.alert_empty(["a"], t(61), repeat).is_some());
        assert!(h.alert_empty(["a", "b"], t(100), repeat).is_none(), "b is in rotation");
    }

    #[test]
    fn jobs_kept_waiting_alert_once_per_repeat_interval_whatever_their_number() {
        let repeat = Duration::from_secs(60);
        let h = HealthRecord::default().alert_no_account(t(0), repeat).expect("first");
        assert!((1..60).all(|s| h.alert_no_account(t(s), repeat).is_none()));
        assert!(h.alert_no_account(t(60), repeat).is_some());
    }

    #[test]
    fn the_last_account_in_rotation_is_alerted_once_and_forgotten_when_others_come_back() {
        let (h, _) = HealthRecord::default().remove("a", "stuck", t(0), COOLDOWN).expect("removed");
        let (h, last) = h.alert_last_account(["a", "b"]).expect("b is the last");
        assert_eq!(last.as_deref(), Some("b"));
        assert!(h.alert_last_account(["a", "b"]).is_none(), "said once");
        let back = h.readmit("a", t(100)).expect("due");
        let (back, none) = back.alert_last_account(["a", "b"]).expect("forgotten");
        assert_eq!((none, back.last_account_alerted), (None, None));
        assert!(HealthRecord::default().alert_last_account(["only"]).is_none(), "one account configured");
    }
}
