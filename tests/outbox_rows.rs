//! The outbox rows against a real Azurite, with two stores on one set of tables as two handler instances
//! would have: only the write that ends a job creates its delivery state, and a writer that loses the race
//! to end it, even after the winner's messages went out, leaves nothing behind for a sweep to find.

mod support;

use ams_failover::domain::{JobRecord, JobState};
use chrono::{DateTime, Utc};
use std::sync::{mpsc, Mutex};
use support::{job_record, two_stores};
use testkit::Azurite;

/// A decision that ends a job that is not final yet.
fn end(state: JobState, now: DateTime<Utc>) -> impl Fn(&JobRecord) -> Option<JobRecord> {
    move |j| (!j.state.is_final()).then(|| JobRecord { state, updated_at: now, ..j.clone() })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_that_loses_the_race_to_end_a_job_after_its_messages_went_out_leaves_no_pointer() -> anyhow::Result<()>
{
    let azurite = Azurite::start().await?;
    let (a, b) = two_stores(&azurite).await?;
    let now = Utc::now();
    assert!(a.insert_job(&job_record("raced", JobState::Processing, now)).await?.is_some());

    // `b` reads the job while it is open and decides to end it; it is held there while `a` ends the job
    // and delivers its messages, as a slow instance would be.
    let (go_on, held) = mpsc::channel::<()>();
    let (read, has_read) = tokio::sync::oneshot::channel::<()>();
    let (held, read) = (Mutex::new(Some(held)), Mutex::new(Some(read)));
    let loser = {
        let b = b.clone();
        tokio::spawn(async move {
            let decide = end(JobState::Error, now);
            b.update_job("raced", |current| {
                let first = held.lock().ok().and_then(|mut h| h.take());
                if let Some(held) = first {
                    if let Some(read) = read.lock().ok().and_then(|mut r| r.take()) {
                        let _ = read.send(());
                    }
                    tokio::task::block_in_place(|| held.recv().ok());
                }
                decide(current)
            })
            .await
        })
    };
    has_read.await?;

    let won = a.update_job("raced", end(JobState::Finished, now)).await?.expect("the job exists");
    assert!(won.changed, "a ended the job");
    let state = a.job_outbox("raced").await?.outbox.expect("the final write created the delivery state");
    assert_eq!(a.index().await?.outbox.len(), 1, "and the sweep's pointer went before it");
    assert!(a.close_outbox("raced", state.etag).await?, "a delivered everything");
    assert!(a.index().await?.outbox.is_empty());

    go_on.send(())?;
    let lost = loser.await??.expect("the job exists");
    assert!(!lost.changed, "b's write lost");
    assert_eq!(lost.value.state, JobState::Finished, "and b sees a's outcome");
    let after = a.job_outbox("raced").await?;
    assert!(after.outbox.is_none(), "the losing write created no delivery state");
    assert!(a.index().await?.outbox.is_empty(), "nor left a pointer for a sweep to find");
    Ok(())
}

#[tokio::test]
async fn the_write_that_ends_a_job_creates_its_delivery_state_and_later_writes_keep_it() -> anyhow::Result<()> {
    let azurite = Azurite::start().await?;
    let (a, b) = two_stores(&azurite).await?;
    let now = Utc::now();
    assert!(a.insert_job(&job_record("ended", JobState::Processing, now)).await?.is_some());
    assert!(a.job_outbox("ended").await?.outbox.is_none(), "an open job has none");

    let ended = b.update_job("ended", end(JobState::Canceled, now)).await?.expect("the job exists");
    assert!(ended.changed);
    let read = a.job_outbox("ended").await?;
    assert_eq!(read.job.map(|j| j.value.state), Some(JobState::Canceled));
    let state = read.outbox.expect("delivery state");
    assert!(state.value.deliveries.is_empty(), "nothing delivered yet");

    // A second try at ending it (a repeated event) changes nothing, and does not reset the delivery state.
    let mut claimed = state.value.clone();
    claimed.lease_until = Some(now);
    let etag = a.replace_outbox("ended", &claimed, state.etag).await?.expect("still at the version read");
    let again = a.update_job("ended", end(JobState::Error, now)).await?.expect("the job exists");
    assert!(!again.changed);
    let kept = a.job_outbox("ended").await?.outbox.expect("still there");
    assert_eq!((kept.value.lease_until, kept.etag), (Some(now), etag));
    assert_eq!(a.index().await?.outbox.len(), 1, "one pointer");
    Ok(())
}

#[tokio::test]
async fn the_first_delivery_starts_from_the_rows_the_ending_write_left_and_a_moved_on_start_is_refused(
) -> anyhow::Result<()> {
    let azurite = Azurite::start().await?;
    let (a, b) = two_stores(&azurite).await?;
    let now = Utc::now();
    for id in ["fresh", "moved"] {
        assert!(a.insert_job(&job_record(id, JobState::Processing, now)).await?.is_some());
        assert!(a.update_job(id, end(JobState::Finished, now)).await?.is_some_and(|j| j.changed));
    }

    let fresh = a.ended_here("fresh").expect("held by the instance that ended it");
    assert_eq!(fresh, a.job_outbox("fresh").await?, "the rows as stored");
    assert!(a.ended_here("fresh").is_none(), "taken by one delivery only");
    assert!(b.ended_here("fresh").is_none(), "and held by that instance only");

    // Another instance's sweep claims the second job's delivery state first.
    let stored = b.job_outbox("moved").await?.outbox.expect("delivery state");
    assert!(b.replace_outbox("moved", &stored.value, stored.etag).await?.is_some());
    let stale = a.ended_here("moved").and_then(|held| held.outbox).expect("held");
    assert!(a.replace_outbox("moved", &stale.value, stale.etag).await?.is_none(), "a moved-on start is refused");
    Ok(())
}

#[tokio::test]
async fn without_a_topic_only_a_job_with_a_callback_url_gets_delivery_state_when_it_ends() -> anyhow::Result<()> {
    let azurite = Azurite::start().await?;
    let (a, b) = two_stores(&azurite).await?;
    let (a, b) = (a.announcing_to_topic(false), b.announcing_to_topic(false));
    let now = Utc::now();
    let quiet = job_record("quiet", JobState::Processing, now);
    let called = JobRecord {
        request: r#"{"jobId":"called","callbackUrl":"https://app.example/hook"}"#.into(),
        ..job_record("called", JobState::Processing, now)
    };
    for job in [&quiet, &called] {
        assert!(a.insert_job(job).await?.is_some());
        assert!(b.update_job(&job.job_id, end(JobState::Finished, now)).await?.is_some_and(|j| j.changed));
    }

    let read = a.job_outbox("quiet").await?;
    assert_eq!(read.job.map(|j| j.value.state), Some(JobState::Finished), "the job ended");
    assert!(read.outbox.is_none(), "with nothing to announce, no delivery state");
    assert!(b.ended_here("quiet").is_none(), "and nothing for a first delivery to start from");
    assert!(a.job_outbox("called").await?.outbox.is_some(), "its callback still hears of it");
    let pointers: Vec<String> = a.index().await?.outbox.into_iter().map(|(id, _)| id).collect();
    assert_eq!(pointers, ["called"], "the sweep is pointed only at the job with something to deliver");
    Ok(())
}
