//! The ended-jobs index against a real Azurite, with two stores on one set of tables as two handler instances
//! would have: the write that ends a job moves it from the open work to the ended rows, closing it again (a
//! repeated event, a sweep) changes nothing, and the reads of open work never return history.

mod support;

use ams_failover::domain::{JobRecord, JobState};
use ams_failover::store::{JobSummary, OpenIndex};
use chrono::{Duration, Utc};
use support::{job_record, two_stores};
use testkit::Azurite;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_write_that_ends_a_job_moves_it_to_the_ended_rows_and_closing_it_again_changes_nothing(
) -> anyhow::Result<()> {
    let azurite = Azurite::start().await?;
    let (a, b) = two_stores(&azurite).await?;
    let now = Utc::now();
    for (id, state) in [("ends", JobState::Processing), ("runs", JobState::Processing)] {
        a.index_new_job(id, now).await?;
        a.unmark_pending(id).await?;
        assert!(a.insert_job(&job_record(id, state, now)).await?.is_some());
    }

    let later = now + Duration::seconds(1);
    let ended = a
        .update_job("ends", |j| {
            (!j.state.is_final()).then(|| JobRecord { state: JobState::Finished, updated_at: later, ..j.clone() })
        })
        .await?
        .expect("the job exists")
        .value;
    let open = |index: ams_failover::store::JobIndex| index.open.into_iter().map(|(id, _)| id).collect::<Vec<_>>();
    assert_eq!(open(a.index().await?), ["runs"], "the ended job left the open work");
    let listed = a.ended_page(JobState::Finished, None, 10, None).await?.0;
    assert_eq!(listed, vec![JobSummary::from(&ended)]);

    // Another instance closes it again, as a repeated event or a sweep would: its open row is gone already.
    b.close_job(&ended).await?;
    assert_eq!(b.ended_page(JobState::Finished, None, 10, None).await?.0, listed, "still one ended row");
    assert_eq!(open(b.index().await?), ["runs"]);
    let (open_page, _) = b.index_page(OpenIndex::Open, None, 10, None).await?;
    assert_eq!(open_page, ["runs"], "the open listing holds no history");
    assert!(b.ended_page(JobState::Finished, Some(later + Duration::milliseconds(1)), 10, None).await?.0.is_empty());
    assert!(b.ended_page(JobState::Error, None, 10, None).await?.0.is_empty(), "ended rows are by outcome");
    Ok(())
}
