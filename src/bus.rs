//! Service Bus through its REST API (Send Message: `POST {namespace}/{topic}/messages`), with a token from
//! the app's managed identity: the only place that talks to Service Bus directly.
//!
//! Outcome notifications do not use the Functions output binding, as alerts do. From a custom handler the
//! binding takes only the body, never `MessageId`, so duplicate detection cannot recognise a repeat; and the
//! host sends a binding's messages only after the handler has answered, so no write of the handler can
//! follow a confirmed send. Here the message id is ours (`BrokerProperties`), and a `201` is the broker's
//! word that it has the message, after which the outbox row may go.

use crate::config::ArmAuth;
use azure_core::credentials::TokenCredential;
use std::sync::Arc;
use std::time::Duration;
use url::Url;

/// Token scope of Service Bus data-plane calls.
const SERVICE_BUS_SCOPE: &str = "https://servicebus.azure.net/.default";
/// One send's timeout: the broker answers in milliseconds; anything slower is retried by the sweep.
const SEND_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a send did not go through. Either way the message stays in the outbox and is sent again later.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// No answer, a token failure, throttling or a server error.
    #[error("Service Bus is unavailable: {0}")]
    Unavailable(String),
    /// The broker refused the message (missing topic, no send right, message too large).
    #[error("Service Bus refused the message ({status}): {message}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// The broker's answer.
        message: String,
    },
}

/// A Service Bus namespace's REST endpoint.
#[derive(Clone)]
pub struct Bus {
    http: reqwest::Client,
    endpoint: Url,
    credential: Option<Arc<dyn TokenCredential>>,
}

impl std::fmt::Debug for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bus").field("endpoint", &self.endpoint.as_str()).finish_non_exhaustive()
    }
}

impl Bus {
    /// The namespace at `endpoint` (`https://<namespace>.servicebus.windows.net`), authenticated per `auth`
    /// (`ARM_AUTH`: the managed identity in Azure, none for a local endpoint).
    pub fn new(http: reqwest::Client, endpoint: Url, auth: &ArmAuth) -> azure_core::Result<Bus> {
        let credential = match auth {
            ArmAuth::ManagedIdentity { client_id } => Some(crate::identity::managed_identity(client_id.as_deref())?),
            ArmAuth::None => None,
        };
        Ok(Bus { http, endpoint, credential })
    }

    /// Sends one JSON message to `entity` (a queue or topic) under `message_id`, labelled `label` (which
    /// subscription rules can filter on as `sys.Label`).
    pub async fn send(&self, entity: &str, message_id: &str, label: &str, body: &str) -> Result<(), BusError> {
        let url = self
            .endpoint
            .join(&format!("{entity}/messages"))
            .map_err(|e| BusError::Refused { status: 0, message: format!("bad entity name {entity:?}: {e}") })?;
        let properties = serde_json::json!({ "MessageId": message_id, "Label": label }).to_string();
        let mut request = self
            .http
            .post(url)
            .timeout(SEND_TIMEOUT)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("BrokerProperties", properties)
            .body(body.to_owned());
        if let Some(credential) = &self.credential {
            let token = credential
                .get_token(&[SERVICE_BUS_SCOPE], None)
                .await
                .map_err(|e| BusError::Unavailable(format!("could not get a token for Service Bus: {e}")))?;
            request = request.bearer_auth(token.token.secret());
        }
        let response = request.send().await.map_err(|e| BusError::Unavailable(format!("send failed: {e}")))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let message: String = response.text().await.unwrap_or_default().chars().take(300).collect();
        if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            Err(BusError::Unavailable(format!("{status}: {message}")))
        } else {
            Err(BusError::Refused { status: status.as_u16(), message })
        }
    }
}
