//! Control plane for cross-region Media Services encoding, served as an Azure Functions custom handler.
//!
//! `domain` holds the pure rules, `store` and `media` own all I/O, `workflow` combines them, and
//! `functions` adapts each function folder's invocation to them; `notify` and `bus` send the outcome
//! notifications.

pub mod bus;
pub mod config;
pub mod domain;
pub mod functions;
pub mod identity;
pub mod invoke;
pub mod media;
pub mod notify;
pub mod publish;
pub mod scaling;
pub mod store;
pub mod sweep;
pub mod telemetry;
pub mod tls;
pub mod workflow;

use std::sync::Arc;

/// Everything a function invocation needs, shared by all of them.
#[derive(Clone)]
pub struct App {
    /// Validated settings.
    pub settings: Arc<config::Settings>,
    /// Table Storage.
    pub store: store::Store,
    /// Media Services.
    pub media: media::MediaClient,
    /// Where outcome notifications go.
    pub notifier: notify::Notifier,
    /// Held while this instance reads MRUs from the service, so a burst that finds the cache stale reads
    /// the service once instead of once per submission.
    pub mru_refresh: Arc<tokio::sync::Mutex<()>>,
}

impl App {
    /// The shared state of an instance.
    pub fn new(
        settings: Arc<config::Settings>,
        store: store::Store,
        media: media::MediaClient,
        notifier: notify::Notifier,
    ) -> App {
        App { settings, store, media, notifier, mru_refresh: Arc::default() }
    }
}
