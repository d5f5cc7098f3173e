//! `ams-emulator` binary: parse the command line, bind, announce the address
//! on stdout (test harnesses wait for that line), serve until interrupted.

use std::io::{IsTerminal, Write};

use ams_emulator::{Cli, Config};
use anyhow::Context;
use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        // Colour codes only help a terminal; harnesses capture stderr into files.
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let config = Config::from_cli(&cli)?;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", cli.port))
        .await
        .with_context(|| format!("cannot bind 127.0.0.1:{}", cli.port))?;
    let addr = listener.local_addr().context("cannot read the bound address")?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "ams-emulator listening on http://127.0.0.1:{}", addr.port())?;
        out.flush()?;
    }
    tracing::info!(
        accounts = ?config.accounts.iter().map(|a| format!("{}:{}", a.name, a.region)).collect::<Vec<_>>(),
        time_scale = config.time_scale,
        "emulator started"
    );
    ams_emulator::serve(config, listener, shutdown_signal()).await.context("server failed")
}

/// Resolves on Ctrl-C or, on Unix, SIGTERM (what process managers send).
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down");
}
