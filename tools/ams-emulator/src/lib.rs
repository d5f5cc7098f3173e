//! Azure Media Services emulator.
//!
//! AMS was retired in 2024, so the project tests and demos against this
//! emulator. It speaks the real wire contracts: the ARM REST subset for
//! transforms, assets, jobs and VOD publication (`arm`, `streaming`), blob
//! storage behind the assets (`storage`, `blob`, `outputs`), AMS job events delivered the way Event
//! Grid delivers them (`events`), a job lifecycle driven by one ticker
//! (`lifecycle`), Media Reserved Units through the v2 endpoint (`mru`), plus a
//! control API for fault injection and inspection (`control`). Accounts started
//! with the `mkio` provider speak as MediaKind MK.IO projects instead (`mkio`).

pub mod arm;
pub mod blob;
pub mod config;
pub mod control;
pub mod events;
pub mod filter;
pub mod lifecycle;
pub mod mkio;
pub mod model;
pub mod mru;
pub mod outputs;
pub mod state;
pub mod storage;
pub mod streaming;
pub mod timefmt;

use std::future::Future;
use std::sync::Arc;

use axum::routing::{any, get};
use axum::Router;
use tokio::net::TcpListener;

pub use config::{Cli, Config, ConfigError};
pub use state::Emulator;

/// The full HTTP surface: control API, the v2 MRU endpoints, everything else goes to ARM.
pub fn router(emulator: Arc<Emulator>) -> Router {
    control::router()
        .merge(mkio::control::router())
        .route(&format!("{}{{*rest}}", mru::PREFIX), any(mru::handle))
        .route(&format!("{}{{*rest}}", mkio::PREFIX), any(mkio::handle))
        .route(&format!("{}{{*rest}}", blob::PREFIX), any(blob::handle))
        .route(&format!("{}{{account}}", streaming::KEY_DELIVERY_PREFIX), get(streaming::key_delivery))
        .route(&format!("{}{{account}}/{{*rest}}", streaming::STREAM_PREFIX), get(streaming::stream))
        .fallback(arm::handle)
        .with_state(emulator)
}

/// Serves the emulator on `listener` until `shutdown` resolves, with the job ticker running.
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let base_url = format!("http://127.0.0.1:{}", listener.local_addr()?.port());
    let emulator = Emulator::new(config, base_url);
    let ticker = lifecycle::spawn_ticker(emulator.clone());
    let result = axum::serve(listener, router(emulator)).with_graceful_shutdown(shutdown).await;
    ticker.abort();
    result
}
