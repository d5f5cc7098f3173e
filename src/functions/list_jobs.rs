//! ListJobs (HTTP `GET /api/jobs?state=open|pending|failed|finished|canceled&since=...&pageSize=...
//! &continuationToken=...`): one page of jobs and a token for the next.
//!
//! Open and pending jobs come from the open-jobs index (job id order), ended ones from the ended-jobs index
//! (oldest first), so a page costs one query plus, for open and pending jobs, one read per job on the page,
//! however long the history. A page may hold fewer jobs than asked and still have a next one (the service
//! stops at partition boundaries): only a missing `continuationToken` means the end.

use crate::domain::JobState;
use crate::invoke::{HttpRequestData, HttpResponseData, InvokeRequest, InvokeResponse};
use crate::store::{JobSummary, OpenIndex, StoreError};
use crate::App;
use base64::Engine;
use chrono::{DateTime, Utc};
use futures_util::future::try_join_all;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::future::Future;
use std::pin::Pin;
use tables::Continuation;

const DEFAULT_PAGE: u32 = 50;
const MAX_PAGE: u32 = 200;

/// Which jobs a listing holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listed {
    /// Not final yet (the default).
    Open,
    /// Waiting for an account.
    Pending,
    /// Ended `Error`.
    Failed,
    /// Ended `Finished`.
    Finished,
    /// Ended `Canceled`.
    Canceled,
}

impl Listed {
    const ALL: [(&'static str, Listed); 5] = [
        ("open", Listed::Open),
        ("pending", Listed::Pending),
        ("failed", Listed::Failed),
        ("finished", Listed::Finished),
        ("canceled", Listed::Canceled),
    ];

    fn name(self) -> &'static str {
        Self::ALL.iter().find(|(_, l)| *l == self).map_or("open", |(n, _)| n)
    }

    /// The listing a name (any case) stands for.
    fn named(text: &str) -> Option<Listed> {
        Self::ALL.iter().find(|(n, _)| n.eq_ignore_ascii_case(text)).map(|(_, l)| *l)
    }
}

/// A listing request, read from the query string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery {
    /// Which jobs.
    pub listed: Listed,
    /// Only jobs indexed (open, pending) or ended (the others) at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// At most this many jobs.
    pub page_size: u32,
    /// Where this page starts.
    pub from: Option<Continuation>,
}

/// What a continuation token holds: the listing it continues and where. Opaque to callers.
#[derive(Serialize, Deserialize)]
struct Token {
    state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    since: Option<DateTime<Utc>>,
    pk: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rk: Option<String>,
}

fn encode_token(listed: Listed, since: Option<DateTime<Utc>>, next: &Continuation) -> String {
    let token =
        Token { state: listed.name().to_owned(), since, pk: next.partition_key.clone(), rk: next.row_key.clone() };
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(&token).unwrap_or_default())
}

/// The listing a token continues, and the token.
fn decode_token(text: &str) -> Option<(Listed, Token)> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text.trim()).ok()?;
    let token: Token = serde_json::from_slice(&bytes).ok()?;
    Some((Listed::named(&token.state)?, token))
}

/// A bad query: (code, message) for a 400.
type Refusal = (&'static str, String);

impl ListQuery {
    /// Reads the query string (names case-insensitive, as the host's are). A continuation token carries the
    /// state and `since` of the listing it continues; given again, they must match it.
    pub fn parse(query: &std::collections::BTreeMap<String, String>) -> Result<ListQuery, Refusal> {
        let get = |name: &str| {
            query.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.trim()).filter(|v| !v.is_empty())
        };
        let listed = match get("state") {
            None => None,
            Some(text) => Some(Listed::named(text).ok_or_else(|| {
                (
                    "invalid_state",
                    format!("state must be one of open, pending, failed, finished, canceled; got {text:?}"),
                )
            })?),
        };
        let since = match get("since") {
            None => None,
            Some(text) => Some(DateTime::parse_from_rfc3339(text).map(|t| t.with_timezone(&Utc)).map_err(|_| {
                ("invalid_since", format!("since must be an RFC 3339 time such as 2026-12-03T10:00:00Z; got {text:?}"))
            })?),
        };
        let page_size = match get("pageSize") {
            None => DEFAULT_PAGE,
            Some(text) => text.parse::<u32>().ok().filter(|n| (1..=MAX_PAGE).contains(n)).ok_or_else(|| {
                ("invalid_page_size", format!("pageSize must be a whole number from 1 to {MAX_PAGE}; got {text:?}"))
            })?,
        };
        let Some(text) = get("continuationToken") else {
            return Ok(ListQuery { listed: listed.unwrap_or(Listed::Open), since, page_size, from: None });
        };
        let refused = || {
            (
                "invalid_continuation_token",
                "continuationToken is not one this API returned; start again without it".to_owned(),
            )
        };
        let (state, token) = decode_token(text).ok_or_else(refused)?;
        if listed.is_some_and(|l| l != state) || since.is_some_and(|s| Some(s) != token.since) {
            return Err((
                "invalid_continuation_token",
                "continuationToken continues a listing with another state or since; pass it alone".to_owned(),
            ));
        }
        Ok(ListQuery {
            listed: state,
            since: token.since,
            page_size,
            from: Some(Continuation { partition_key: token.pk, row_key: token.rk }),
        })
    }
}

/// Runs one ListJobs invocation.
pub fn run(
    app: &App,
    req: InvokeRequest,
) -> Pin<Box<dyn Future<Output = Result<InvokeResponse, StoreError>> + Send + '_>> {
    Box::pin(async move {
        let http = HttpRequestData::from_invocation(&req, "req").unwrap_or_default();
        let res = match ListQuery::parse(&http.query) {
            Err((code, message)) => HttpResponseData::error(400, code, &message),
            Ok(query) => {
                let (jobs, next) = page(app, &query).await?;
                let token = next.map(|n| encode_token(query.listed, query.since, &n));
                let next_link = token.as_ref().map(|t| format!("/api/jobs?continuationToken={t}"));
                HttpResponseData::json(
                    200,
                    &json!({
                        "state": query.listed.name(), "since": query.since, "jobs": jobs,
                        "continuationToken": token, "nextLink": next_link,
                    }),
                )
            }
        };
        Ok(InvokeResponse::default().output("res", res.to_value()))
    })
}

async fn page(app: &App, query: &ListQuery) -> Result<(Vec<JobSummary>, Option<Continuation>), StoreError> {
    let ended = |state| app.store.ended_page(state, query.since, query.page_size, query.from.as_ref());
    let (which, wanted): (OpenIndex, fn(JobState) -> bool) = match query.listed {
        Listed::Failed => return ended(JobState::Error).await,
        Listed::Finished => return ended(JobState::Finished).await,
        Listed::Canceled => return ended(JobState::Canceled).await,
        Listed::Open => (OpenIndex::Open, |s| !s.is_final()),
        Listed::Pending => (OpenIndex::Pending, |s| s == JobState::Pending),
    };
    let (ids, next) = app.store.index_page(which, query.since, query.page_size, query.from.as_ref()).await?;
    // The index may be a moment ahead of the job rows (written first) or behind them (removed after): the
    // job row decides, and a job that is not what the listing asks for is left out.
    let jobs = try_join_all(ids.iter().map(|id| app.store.get_job(id))).await?;
    let jobs = jobs.into_iter().flatten().map(|j| j.value).filter(|j| wanted(j.state)).map(|j| JobSummary::from(&j));
    Ok((jobs.collect(), next))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn query(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn without_parameters_a_listing_is_the_first_page_of_open_jobs() {
        let q = ListQuery::parse(&BTreeMap::new()).unwrap();
        assert_eq!(q, ListQuery { listed: Listed::Open, since: None, page_size: DEFAULT_PAGE, from: None });
    }

    #[test]
    fn names_and_states_are_read_case_insensitively() {
        let q = ListQuery::parse(&query(&[("STATE", "Failed"), ("pagesize", "7")])).unwrap();
        assert_eq!((q.listed, q.page_size), (Listed::Failed, 7));
    }

    #[test]
    fn an_unknown_state_a_bad_time_or_a_page_size_out_of_range_is_refused_by_name() {
        for (pairs, code) in [
            (vec![("state", "running")], "invalid_state"),
            (vec![("since", "yesterday")], "invalid_since"),
            (vec![("pageSize", "0")], "invalid_page_size"),
            (vec![("pageSize", "201")], "invalid_page_size"),
            (vec![("continuationToken", "not-a-token")], "invalid_continuation_token"),
        ] {
            let refused = ListQuery::parse(&query(&pairs)).unwrap_err();
            assert_eq!(refused.0, code, "{pairs:?}: {}", refused.1);
        }
    }

    #[test]
    fn a_token_carries_its_listing_and_refuses_to_continue_another() {
        let since = "2026-12-03T10:00:00Z".parse().ok();
        let next = Continuation { partition_key: "~ended|Error|20261203".into(), row_key: Some("x|job-1".into()) };
        let token = encode_token(Listed::Failed, since, &next);

        let q = ListQuery::parse(&query(&[("continuationToken", &token), ("pageSize", "3")])).unwrap();
        assert_eq!(q, ListQuery { listed: Listed::Failed, since, page_size: 3, from: Some(next) });
        let same = ListQuery::parse(&query(&[("continuationToken", &token), ("state", "failed")]));
        assert!(same.is_ok());
        let other = ListQuery::parse(&query(&[("continuationToken", &token), ("state", "open")])).unwrap_err();
        assert_eq!(other.0, "invalid_continuation_token");
    }
}
