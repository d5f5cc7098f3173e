//! The custom handler: reads settings, prepares the tables, and serves the function routes on
//! `127.0.0.1:$FUNCTIONS_CUSTOMHANDLER_PORT`.

use ams_failover::config::Settings;
use ams_failover::media::MediaClient;
use ams_failover::notify::Notifier;
use ams_failover::store::Store;
use ams_failover::{functions, telemetry, App};
use anyhow::Context;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

/// How long start-up keeps trying to reach Table Storage; the host gives a custom handler about 30 s.
const STORAGE_START_ATTEMPTS: u32 = 10;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // The handler takes no arguments: the Functions host starts it with settings in the environment. Someone
    // trying it by hand asks for help first, and should get it rather than a complaint about a missing setting.
    if std::env::args().skip(1).any(|arg| matches!(arg.as_str(), "-h" | "--help")) {
        print!("{}", ams_failover::config::help());
        return Ok(());
    }
    telemetry::init();
    let settings = Arc::new(Settings::from_env()?);
    let port: u16 =
        match std::env::var("FUNCTIONS_CUSTOMHANDLER_PORT").or_else(|_| std::env::var("FUNCTIONS_HTTPWORKER_PORT")) {
            Ok(port) => port.parse().context("FUNCTIONS_CUSTOMHANDLER_PORT is not a port number")?,
            Err(_) => 3000,
        };

    let http = ams_failover::tls::client_builder()
        // Below the keep-alive of the services we call (Azurite closes idle connections after 5 s), so a pooled
        // connection is never reused just as the server closes it.
        .pool_idle_timeout(Duration::from_secs(4))
        .connect_timeout(Duration::from_secs(5))
        .build()
        .context("building the HTTP client")?;
    let store = Store::connect(&settings, http.clone())?;
    let notifier = Notifier::new(&settings, http.clone()).context("setting up outcome notifications")?;
    let media =
        MediaClient::new(http, &settings.arm_auth, settings.arm_timeout).context("setting up ARM authentication")?;

    let mut attempt = 1;
    while let Err(error) = store.ensure_ready().await {
        if !error.is_retryable() || attempt >= STORAGE_START_ATTEMPTS {
            return Err(error).context("preparing the tables");
        }
        tracing::warn!(%error, attempt, "Table Storage not reachable yet; retrying");
        attempt += 1;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }

    let app = App::new(settings.clone(), store, media, notifier);
    let listener = tokio::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
        .await
        .with_context(|| format!("binding 127.0.0.1:{port}"))?;
    let accounts: Vec<&str> = settings.accounts.iter().map(|a| a.name.as_str()).collect();
    match &settings.notify.service_bus {
        Some(endpoint) => {
            tracing::info!(%endpoint, topic = %settings.notify.topic, "outcome notifications go to the topic")
        }
        None => tracing::warn!("SERVICE_BUS_ENDPOINT is not set: outcome notifications go to callbacks only"),
    }
    tracing::info!(port, accounts = ?accounts, "handler ready");
    axum::serve(listener, functions::router(app)).await.context("serving")?;
    Ok(())
}
