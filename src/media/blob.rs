//! The blob calls that copy an asset between regions, made with Microsoft's `azure_storage_blob` client on
//! the container SAS URLs from `listContainerSas`: List Blobs (with `include=copy`), Copy Blob (server to
//! server, from a SAS URL) and Get Blob Properties. No blob bytes pass through the handler.
//!
//! The callers see only SAS URLs, blob names and [`BlobItem`]s, so the same three calls serve any pair of
//! containers, in Media Services accounts or plain storage accounts.
//!
//! The clients carry no credential (the SAS is the authorisation), use the handler's HTTP client (its pool
//! settings, one connection pool) and never retry: publication is driven by the sweep, which already retries
//! each step on its own schedule, and every step can run again safely. A hidden retry loop would only hold a
//! sweep up (the crate's default retries for up to a minute) and hide failures from the retry schedule.
//!
//! SAS URLs are secrets: errors carry the storage error code and the blob name, never a URL or a message
//! the service wrote (messages may quote the string that was signed).

use super::streaming::SasUrl;
use super::{MediaClient, MediaError};
use azure_core::error::ErrorKind;
use azure_core::http::{ClientOptions, RetryOptions, StatusCode, Transport};
use azure_storage_blob::models::{
    BlobClientGetPropertiesResultHeaders, BlobContainerClientListBlobsOptions, CopyStatus as StorageCopyStatus,
    ListBlobsIncludeItem,
};
use azure_storage_blob::{BlobClient, BlobClientOptions, BlobContainerClient, BlobContainerClientOptions};
use futures_util::TryStreamExt;
use std::future::Future;
use std::sync::Arc;
use url::Url;

/// Where a blob's last copy stands (`x-ms-copy-status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyStatus {
    /// Still copying.
    Pending,
    /// Landed.
    Success,
    /// Aborted or failed: copy again.
    Failed,
}

impl From<StorageCopyStatus> for CopyStatus {
    fn from(status: StorageCopyStatus) -> CopyStatus {
        match status {
            StorageCopyStatus::Pending => CopyStatus::Pending,
            StorageCopyStatus::Success => CopyStatus::Success,
            StorageCopyStatus::Aborted | StorageCopyStatus::Failed => CopyStatus::Failed,
        }
    }
}

/// One blob as List Blobs or Get Blob Properties reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobItem {
    /// Blob name (may contain `/`), decoded when the listing sent it `Encoded="true"`.
    pub name: String,
    /// Bytes.
    pub length: u64,
    /// The last copy into this blob, if it came from one.
    pub copy_status: Option<CopyStatus>,
    /// Where that copy came from: scheme, host, port and decoded path, without the query string.
    pub copy_source: Option<String>,
}

impl BlobItem {
    /// Whether this blob's last copy came from `blob` of the `container` (whatever SAS either URL carried, and
    /// however the service chose to percent-encode the path it reports).
    pub fn copied_from(&self, container: &SasUrl, blob: &str) -> bool {
        self.copy_source.as_deref() == Some(blob_identity(&blob_url(container, blob)).as_str())
    }
}

/// The URL of `blob` in the container of `container` (SAS included), one path segment per `/` of the name as
/// Storage addresses virtual directories.
fn blob_url(container: &SasUrl, blob: &str) -> Url {
    let mut url = container.0.clone();
    if let Ok(mut segments) = url.path_segments_mut() {
        segments.pop_if_empty().extend(blob.split('/'));
    }
    url
}

/// What identifies a blob in a URL: scheme, host, port and the decoded path. The query (a SAS) is dropped, and
/// `dir%2Fa.mp4` and `dir/a.mp4` name the same blob, as they do for Storage.
fn blob_identity(url: &Url) -> String {
    let path = percent_encoding::percent_decode_str(url.path()).decode_utf8_lossy();
    format!("{}{path}", url.origin().ascii_serialization())
}

/// A reported `x-ms-copy-source` / `CopySource`, reduced to [`blob_identity`]; `None` if it is not a URL.
fn copy_source_identity(source: &str) -> Option<String> {
    Url::parse(source).ok().map(|u| blob_identity(&u))
}

impl MediaClient {
    fn blob_client_options(&self) -> ClientOptions {
        client_options(&self.http)
    }

    fn container_client(&self, container: &SasUrl, what: &str) -> Result<BlobContainerClient, MediaError> {
        let options = BlobContainerClientOptions { client_options: self.blob_client_options(), ..Default::default() };
        BlobContainerClient::new(container.0.clone(), None, Some(options)).map_err(|e| storage_error(&e, what))
    }

    fn blob_client(&self, container: &SasUrl, blob: &str) -> Result<BlobClient, MediaError> {
        let options = BlobClientOptions { client_options: self.blob_client_options(), ..Default::default() };
        BlobClient::new(blob_url(container, blob), None, Some(options)).map_err(|e| storage_error(&e, blob))
    }

    async fn within_timeout<T>(
        &self,
        what: &str,
        call: impl Future<Output = azure_core::Result<T>>,
    ) -> Result<T, MediaError> {
        within(self.timeout, what, call).await
    }

    /// Every blob of the container with its copy state, following `NextMarker`.
    pub async fn list_blobs(&self, container: &SasUrl) -> Result<Vec<BlobItem>, MediaError> {
        const WHAT: &str = "a container listing";
        let client = self.container_client(container, WHAT)?;
        // Copy state is in a listing only when asked for (List Blobs: `include=copy`); without it every blob
        // would look uncopied and every sweep would start its copy again.
        let options = BlobContainerClientListBlobsOptions {
            include: Some(vec![ListBlobsIncludeItem::Copy]),
            ..Default::default()
        };
        let mut pager = client.list_blobs(Some(options)).map_err(|e| storage_error(&e, WHAT))?;
        let mut blobs = Vec::new();
        // Each step either yields a blob of the page in hand or fetches the next page: the timeout bounds
        // each request, as for every other call.
        while let Some(item) = self.within_timeout(WHAT, pager.try_next()).await? {
            let Some(name) = item.name else { continue };
            let properties = item.properties.unwrap_or_default();
            blobs.push(BlobItem {
                name,
                length: properties.content_length.unwrap_or(0),
                copy_status: properties.copy_status.map(CopyStatus::from),
                copy_source: properties.copy_source.as_deref().and_then(copy_source_identity),
            });
        }
        Ok(blobs)
    }

    /// Starts a server-side copy of `blob` from the `source` container into the `target` container.
    pub async fn start_copy(&self, source: &SasUrl, target: &SasUrl, blob: &str) -> Result<(), MediaError> {
        let what = format!("copying {blob}");
        let client = self.blob_client(target, blob)?;
        let source_url = blob_url(source, blob).to_string();
        self.within_timeout(&what, client.start_copy_from_url(source_url, None)).await.map(drop)
    }

    /// A blob's length and copy status (Get Blob Properties), or `None` if it does not exist.
    pub async fn head_blob(&self, container: &SasUrl, blob: &str) -> Result<Option<BlobItem>, MediaError> {
        let client = self.blob_client(container, blob)?;
        let response = match self.within_timeout(blob, client.get_properties(None)).await {
            Ok(response) => response,
            Err(MediaError::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let unreadable = |e: azure_core::Error| storage_error(&e, blob);
        Ok(Some(BlobItem {
            name: blob.to_owned(),
            length: response.content_length().map_err(unreadable)?.unwrap_or(0),
            copy_status: response.copy_status().map_err(unreadable)?.map(CopyStatus::from),
            copy_source: response.copy_source().map_err(unreadable)?.as_deref().and_then(copy_source_identity),
        }))
    }
}

/// Client options for a storage call: the handler's HTTP client and no retries (see the module docs).
pub(super) fn client_options(http: &reqwest::Client) -> ClientOptions {
    ClientOptions {
        transport: Some(Transport::new(Arc::new(http.clone()))),
        retry: RetryOptions::none(),
        ..ClientOptions::default()
    }
}

/// Runs one storage request within `timeout`, its failure sorted by [`storage_error`].
pub(super) async fn within<T>(
    timeout: std::time::Duration,
    what: &str,
    call: impl Future<Output = azure_core::Result<T>>,
) -> Result<T, MediaError> {
    match tokio::time::timeout(timeout, call).await {
        Ok(answer) => answer.map_err(|e| storage_error(&e, what)),
        Err(_) => Err(MediaError::Transient(format!("storage call for {what} timed out"))),
    }
}

/// Sorts a failed storage call as the SAS-URL calls always have been: 404 is "not there", 429 is throttling,
/// 5xx and 408 are transient, any other refusal is [`MediaError::Rejected`] (a 409 `PendingCopyOperation`
/// among them); a connection error or an answer that cannot be read is transient.
pub(super) fn storage_error(error: &azure_core::Error, what: &str) -> MediaError {
    match error.kind() {
        ErrorKind::HttpResponse { status, error_code, .. } => {
            // Only the error code is kept: messages may quote the string that was signed.
            let code = error_code.clone().unwrap_or_else(|| "Unknown".to_owned());
            let number = u16::from(*status);
            let message = format!("storage answered {number} {code} for {what}");
            match *status {
                StatusCode::NotFound => MediaError::NotFound { code, message },
                StatusCode::TooManyRequests => MediaError::Throttled { retry_after: None },
                StatusCode::RequestTimeout => MediaError::Transient(message),
                _ if number >= 500 => MediaError::Transient(message),
                _ => MediaError::Rejected { status: number, code, message },
            }
        }
        kind => MediaError::Transient(format!("storage call for {what} failed ({kind}){}", transport_detail(error))),
    }
}

/// What the HTTP client said about a failed request, without the URL: reqwest's errors quote it, and the URL
/// carries the signature. The pipeline may have wrapped the client's error, so the chain of causes is searched.
fn transport_detail(error: &azure_core::Error) -> String {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(error);
    while let Some(e) = cause {
        if let Some(http) = e.downcast_ref::<reqwest::Error>() {
            let mut text = http.to_string();
            if let Some(url) = http.url() {
                text = text.replace(url.as_str(), "<url>");
            }
            // The cause below reqwest's (refused, reset, DNS) is what an operator needs; it names no URL.
            if let Some(below) = std::error::Error::source(http) {
                text = format!("{text}: {below}");
            }
            return format!(": {text}");
        }
        cause = e.source();
    }
    String::new()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn container() -> SasUrl {
        SasUrl(Url::parse("http://127.0.0.1:1/blob/s/asset-1?sv=1&sig=x").expect("url"))
    }

    #[test]
    fn blob_urls_keep_the_sas_and_encode_each_name_segment() {
        let url = blob_url(&container(), "dir/a b.mp4");
        assert_eq!(url.as_str(), "http://127.0.0.1:1/blob/s/asset-1/dir/a%20b.mp4?sv=1&sig=x");
        assert_eq!(blob_identity(&url), "http://127.0.0.1:1/blob/s/asset-1/dir/a b.mp4");
    }

    #[test]
    fn a_copy_source_counts_as_ours_whatever_sas_or_path_encoding_it_was_reported_with() {
        let item = |source: &str| BlobItem {
            name: "dir/a b.mp4".into(),
            length: 1,
            copy_status: Some(CopyStatus::Success),
            copy_source: copy_source_identity(source),
        };
        let ours = [
            "http://127.0.0.1:1/blob/s/asset-1/dir/a%20b.mp4",
            "http://127.0.0.1:1/blob/s/asset-1/dir%2Fa%20b.mp4?sig=y",
        ];
        for source in ours {
            assert!(item(source).copied_from(&container(), "dir/a b.mp4"), "{source}");
        }
        let theirs = [
            "http://127.0.0.1:1/blob/t/asset-1/dir/a%20b.mp4",
            "http://127.0.0.1:2/blob/s/asset-1/dir/a%20b.mp4",
            "not a url",
        ];
        for source in theirs {
            assert!(!item(source).copied_from(&container(), "dir/a b.mp4"), "{source}");
        }
    }

    #[test]
    fn storage_refusals_are_sorted_as_before() {
        let answered = |status: StatusCode, code: &str| {
            let error = azure_core::Error::with_message(
                ErrorKind::HttpResponse { status, error_code: Some(code.to_owned()), raw_response: None },
                "refused",
            );
            storage_error(&error, "copying a.mp4")
        };
        assert!(
            matches!(answered(StatusCode::NotFound, "BlobNotFound"), MediaError::NotFound { code, .. } if code == "BlobNotFound")
        );
        assert!(matches!(
            answered(StatusCode::Conflict, "PendingCopyOperation"),
            MediaError::Rejected { status: 409, code, .. } if code == "PendingCopyOperation"
        ));
        assert!(matches!(
            answered(StatusCode::Forbidden, "AuthenticationFailed"),
            MediaError::Rejected { status: 403, .. }
        ));
        assert_eq!(answered(StatusCode::TooManyRequests, "ServerBusy"), MediaError::Throttled { retry_after: None });
        assert!(answered(StatusCode::ServiceUnavailable, "ServerBusy").is_transient());
        assert!(answered(StatusCode::RequestTimeout, "OperationTimedOut").is_transient());
        let io = azure_core::Error::with_message(ErrorKind::Io, "connection reset");
        assert!(storage_error(&io, "a container listing").is_transient());
    }

    #[tokio::test]
    async fn a_storage_call_that_cannot_connect_is_transient_and_names_no_url() {
        let media = MediaClient::new(reqwest::Client::new(), &crate::config::ArmAuth::None, Duration::from_secs(5))
            .expect("a client without credentials");
        // Nothing listens on port 1 of the loopback address: the connection is refused at once.
        let nowhere = SasUrl(Url::parse("http://127.0.0.1:1/blob/s/asset-1?sv=1&sig=secret").expect("url"));
        let error = media.list_blobs(&nowhere).await.expect_err("nothing listens there");
        assert!(error.is_transient(), "{error:?}");
        let text = error.to_string();
        assert!(!text.contains("sig=") && !text.contains("127.0.0.1"), "{text}");
        let error = media.start_copy(&nowhere, &nowhere, "a.mp4").await.expect_err("nothing listens there");
        assert!(error.is_transient() && !error.to_string().contains("sig="), "{error}");
    }

    #[test]
    fn storage_errors_never_carry_the_message_the_service_wrote() {
        let error = azure_core::Error::with_message(
            ErrorKind::HttpResponse {
                status: StatusCode::Forbidden,
                error_code: Some("AuthenticationFailed".into()),
                raw_response: None,
            },
            "Signature did not match. String to sign used was r\n2026-01-01",
        );
        let text = storage_error(&error, "a.mp4").to_string();
        assert!(!text.contains("String to sign"), "{text}");
        assert!(text.contains("403 AuthenticationFailed"), "{text}");
    }
}
