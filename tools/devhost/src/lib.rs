//! devhost: a local Azure Functions host for custom handlers. It reads the
//! function app like Core Tools, starts the handler with the host's
//! environment, and speaks the custom-handler protocol to it, so `func start`
//! can replace it without changes to the app.

pub mod config;
pub mod eventgrid;
pub mod http;
pub mod invoke;
pub mod keys;
pub mod ncrontab;
pub mod outputs;
pub mod process;
pub mod route;
pub mod server;
pub mod timer;

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;

use crate::config::ConfigError;
use crate::invoke::Invoker;
use crate::outputs::OutputWriter;
use crate::process::{LaunchSpec, ProcessError};
use crate::server::App;

/// How long the handler may take to answer its first HTTP request.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Command-line options.
#[derive(Debug, Clone, Parser)]
#[command(name = "devhost", version, about = "Local Azure Functions host for custom handlers")]
pub struct Cli {
    /// Function app root (holds host.json and the function folders).
    #[arg(long, default_value = ".")]
    pub app_root: PathBuf,
    /// Port to listen on; 0 picks a free one.
    #[arg(long, default_value_t = 7071)]
    pub port: u16,
    /// Handler executable, overriding host.json's defaultExecutablePath.
    #[arg(long)]
    pub handler: Option<PathBuf>,
    /// Where output-binding messages are written (default {app-root}/.local/outputs).
    #[arg(long)]
    pub outputs_dir: Option<PathBuf>,
    /// Function keys to enforce, a JSON file (see the README); without it no key is checked.
    #[arg(long)]
    pub keys: Option<PathBuf>,
}

/// Why devhost stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The app root does not exist.
    #[error("app root {path} is not a directory: {source}")]
    AppRoot {
        /// The path given.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// host.json, function.json or local.settings.json is wrong.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The handler could not be started or never became ready.
    #[error(transparent)]
    Process(#[from] ProcessError),
    /// The HTTP client could not be built.
    #[error("cannot create the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
    /// The async runtime or a signal handler could not be set up.
    #[error("runtime error: {0}")]
    Runtime(std::io::Error),
    /// devhost's port is taken or not bindable.
    #[error("cannot listen on 127.0.0.1:{port}: {source}")]
    Bind {
        /// The port.
        port: u16,
        /// The I/O error.
        source: std::io::Error,
    },
    /// devhost's server stopped.
    #[error("server error: {0}")]
    Serve(std::io::Error),
    /// The handler process exited while devhost was running.
    #[error("the handler exited: {0}")]
    HandlerExited(String),
}

/// Runs devhost until a signal arrives (`Ok`) or something fails.
pub fn run(cli: Cli) -> Result<(), RunError> {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(RunError::Runtime)?;
    // block_on polls this future on the calling (main) thread, so the handler
    // is spawned by a thread that lives as long as the process; PR_SET_PDEATHSIG
    // fires when the spawning thread exits, not only the process.
    let result = rt.block_on(run_async(cli));
    rt.shutdown_timeout(Duration::from_secs(1));
    result
}

fn handler_program(cli: &Cli, config: &config::AppConfig, app_root: &Path) -> PathBuf {
    match &cli.handler {
        // A path given on the command line is relative to where devhost runs.
        Some(p) if p.is_file() => std::path::absolute(p).unwrap_or_else(|_| p.clone()),
        Some(p) => process::resolve_executable(&p.to_string_lossy(), app_root),
        None => process::resolve_executable(&config.host.executable, app_root),
    }
}

async fn run_async(cli: Cli) -> Result<(), RunError> {
    let app_root = std::fs::canonicalize(&cli.app_root)
        .map_err(|source| RunError::AppRoot { path: cli.app_root.clone(), source })?;
    let process_env: HashMap<String, String> = std::env::vars_os()
        .map(|(k, v)| (k.to_string_lossy().into_owned(), v.to_string_lossy().into_owned()))
        .collect();
    let config = config::load(&app_root, process_env, cli.handler.is_some())?;
    let keys = match &cli.keys {
        Some(path) => {
            let keys = keys::Keys::load(path)?;
            for name in keys.functions() {
                if !config.functions.iter().any(|f| f.name.eq_ignore_ascii_case(name)) {
                    eprintln!("warning: {}: no function '{name}' in this app; its keys open nothing", path.display());
                }
            }
            eprintln!("Function keys from {} are enforced", path.display());
            Some(keys)
        }
        None => None,
    };
    let (mut env, skipped) = config.settings.handler_env();
    for name in skipped {
        eprintln!(
            "Skipping '{name}' from local.settings.json as it's already defined in current environment variables"
        );
    }
    let handler_port = process::free_port()?;
    let worker_id = uuid::Uuid::new_v4().to_string();
    let root_text = app_root.to_string_lossy().into_owned();
    env.extend([
        ("FUNCTIONS_CUSTOMHANDLER_PORT".to_string(), handler_port.to_string()),
        ("FUNCTIONS_CUSTOMHANDLER_WORKER_ID".to_string(), worker_id.clone()),
        ("FUNCTIONS_HTTPWORKER_PORT".to_string(), handler_port.to_string()),
        ("FUNCTIONS_HTTPWORKER_ID".to_string(), worker_id),
        ("FUNCTIONS_APP_ROOT_PATH".to_string(), root_text),
    ]);
    let wd = &config.host.working_directory;
    let cwd = if wd.is_empty() { app_root.clone() } else { app_root.join(wd) };
    let spec = LaunchSpec {
        program: handler_program(&cli, &config, &app_root),
        args: config.host.arguments.clone(),
        cwd,
        env,
    };
    eprintln!("Starting the handler: {} (port {handler_port})", spec.program.display());
    let mut child = process::spawn(&spec)?;
    process::wait_ready(&mut child, handler_port, READY_TIMEOUT).await?;

    let listener = tokio::net::TcpListener::bind(("127.0.0.1", cli.port))
        .await
        .map_err(|source| RunError::Bind { port: cli.port, source })?;
    let port = listener.local_addr().map_err(RunError::Runtime)?.port();
    let outputs_dir = cli.outputs_dir.clone().unwrap_or_else(|| app_root.join(".local").join("outputs"));
    let invoker = Arc::new(Invoker::new(handler_port, OutputWriter::new(outputs_dir), config.host.function_timeout)?);
    let app = Arc::new(App::new(config, invoker, port).with_keys(keys));

    {
        let mut stdout = std::io::stdout().lock();
        // Test harnesses wait for exactly this line.
        let _ = writeln!(stdout, "devhost listening on http://127.0.0.1:{port}");
        let _ = stdout.flush();
    }
    eprintln!("{}", app.function_list(port));
    eprintln!("Output bindings are written to {}", app.invoker.writer.dir().display());
    app.start_timers();

    let server = axum::serve(listener, server::router(app.clone()));
    let mut server = std::pin::pin!(std::future::IntoFuture::into_future(server));
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    tokio::select! {
        status = child.wait() => {
            let status = status.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string());
            eprintln!("The handler process exited ({status}); stopping");
            Err(RunError::HandlerExited(status))
        }
        res = &mut server => {
            stop_child(&mut child).await;
            match res {
                Ok(()) => Ok(()),
                Err(e) => Err(RunError::Serve(e)),
            }
        }
        sig = &mut shutdown => {
            sig.map_err(RunError::Runtime)?;
            eprintln!("Stopping devhost and the handler");
            stop_child(&mut child).await;
            Ok(())
        }
    }
}

async fn stop_child(child: &mut tokio::process::Child) {
    let _ = child.start_kill();
    let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
}

async fn shutdown_signal() -> Result<(), std::io::Error> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        Ok(())
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await
    }
}
