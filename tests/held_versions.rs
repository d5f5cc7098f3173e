//! Two instances of the store on one Azurite and one set of tables, each starting its writes from the
//! versions its own last writes returned: a version the other instance has moved on from costs a failed
//! write and a read, never a lost update, a decision taken on an old row, or a wrong count.

mod support;

use ams_failover::domain::JobState;
use ams_failover::store::AttemptChange;
use chrono::Utc;
use support::{assert_counters_exact, job_record, two_stores};
use testkit::Azurite;

const ACCOUNT: &str = "amswesteurope";

#[tokio::test]
async fn attempts_another_instance_moved_on_are_changed_from_the_stored_rows_and_count_exactly() -> anyhow::Result<()> {
    let azurite = Azurite::start().await?;
    let (a, b) = two_stores(&azurite).await?;
    let now = Utc::now();
    // Twelve attempts over 32 shards: some share a shard, so the shards' held versions go stale too.
    let mut names = vec![];
    for i in 0..12 {
        let (_, attempt) =
            job_record(&format!("held-{i}"), JobState::Pending, now).begin_attempt(ACCOUNT, "westeurope", 1, now);
        assert!(a.open_attempt(&attempt).await?, "opened by a");
        names.push(attempt.ams_job_name);
    }
    for name in &names {
        let queued = b.change_attempt(ACCOUNT, name, |x| x.observe(JobState::Queued, now, None, now)).await?;
        assert!(matches!(queued, Some(AttemptChange::Applied { before: JobState::Submitting, .. })));
    }
    assert_counters_exact(&a, &[ACCOUNT]).await?;
    assert_eq!(a.counters(ACCOUNT).await?.queued, 12);

    // `a` still holds every attempt at Submitting and the shards as it left them.
    for name in &names {
        let finished = a.change_attempt(ACCOUNT, name, |x| x.observe(JobState::Finished, now, None, now)).await?;
        let Some(AttemptChange::Applied { before, after }) = finished else { panic!("{name}: {finished:?}") };
        assert_eq!((before, after.state), (JobState::Queued, JobState::Finished), "{name} moved from the stored row");
    }
    assert_counters_exact(&a, &[ACCOUNT]).await?;
    assert_eq!(a.counters(ACCOUNT).await?.in_flight(), 0);
    assert_eq!(b.counters(ACCOUNT).await?.in_flight(), 0);
    Ok(())
}

#[tokio::test]
async fn nothing_to_change_is_decided_on_the_stored_attempt_not_on_an_old_held_one() -> anyhow::Result<()> {
    let azurite = Azurite::start().await?;
    let (a, b) = two_stores(&azurite).await?;
    let now = Utc::now();
    let (_, attempt) = job_record("held-repeat", JobState::Pending, now).begin_attempt(ACCOUNT, "westeurope", 1, now);
    let name = attempt.ams_job_name.clone();
    a.open_attempt(&attempt).await?;
    a.change_attempt(ACCOUNT, &name, |x| x.observe(JobState::Queued, now, None, now)).await?;
    b.change_attempt(ACCOUNT, &name, |x| x.observe(JobState::Processing, now, None, now)).await?;

    // A repeated Queued event on `a`, which holds the attempt at Queued: nothing to change, said of the
    // stored attempt (Processing), so the caller syncs the job with what is true.
    let repeat = a.change_attempt(ACCOUNT, &name, |x| x.observe(JobState::Queued, now, None, now)).await?;
    let Some(AttemptChange::Unchanged(current)) = repeat else { panic!("{repeat:?}") };
    assert_eq!(current.state, JobState::Processing);
    assert_counters_exact(&a, &[ACCOUNT]).await?;
    assert_eq!(a.counters(ACCOUNT).await?.processing, 1);
    Ok(())
}

#[tokio::test]
async fn a_job_another_instance_changed_is_decided_on_as_stored() -> anyhow::Result<()> {
    let azurite = Azurite::start().await?;
    let (a, b) = two_stores(&azurite).await?;
    let now = Utc::now();
    let pending = job_record("held-job", JobState::Pending, now);
    a.insert_job(&pending).await?;
    let (claimed_by_b, _) = pending.begin_attempt("amsnortheurope", "northeurope", 1, now);
    let by_b = b.update_job("held-job", |j| (j.state == JobState::Pending).then(|| claimed_by_b.clone())).await?;
    assert!(by_b.is_some_and(|c| c.changed));

    // `a` holds the job as it inserted it (Pending) and would claim it; the stored job is claimed already.
    let (claimed_by_a, _) = pending.begin_attempt(ACCOUNT, "westeurope", 1, now);
    let by_a = a.update_job("held-job", |j| (j.state == JobState::Pending).then(|| claimed_by_a.clone())).await?;
    let by_a = by_a.expect("the job exists");
    assert!(!by_a.changed, "the claim was decided on the stored job");
    assert_eq!(by_a.value.account.as_deref(), Some("amsnortheurope"));
    let stored = a.get_job("held-job").await?.expect("the job exists").value;
    assert_eq!(stored, claimed_by_b);
    Ok(())
}
