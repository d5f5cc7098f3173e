//! Starts the custom handler process with the host's environment, forwards its
//! output, and waits until it answers HTTP (contracts 1.2).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};

/// Problems starting the handler.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// The executable could not be started.
    #[error("cannot start the handler '{program}': {source}")]
    Spawn {
        /// What was run.
        program: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// No free port could be found.
    #[error("cannot pick a free port: {0}")]
    Port(std::io::Error),
    /// The handler exited before it became ready.
    #[error("the handler exited before it answered on port {port}: {status}")]
    ExitedEarly {
        /// Port it should have listened on.
        port: u16,
        /// Its exit status.
        status: String,
    },
    /// The handler did not answer in time.
    #[error("the handler did not answer HTTP on 127.0.0.1:{port} within {secs} s (it must listen on FUNCTIONS_CUSTOMHANDLER_PORT)")]
    NotReady {
        /// Port polled.
        port: u16,
        /// Timeout in seconds.
        secs: u64,
    },
    /// Waiting on the child failed.
    #[error("cannot watch the handler process: {0}")]
    Wait(std::io::Error),
}

/// How to launch the handler.
#[derive(Debug, Clone)]
pub struct LaunchSpec {
    /// Executable (absolute path, or a command looked up on PATH).
    pub program: PathBuf,
    /// Arguments.
    pub args: Vec<String>,
    /// Working directory.
    pub cwd: PathBuf,
    /// Variables added to devhost's environment.
    pub env: Vec<(String, String)>,
}

/// Asks the OS for a free TCP port on the loopback interface.
pub fn free_port() -> Result<u16, ProcessError> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(ProcessError::Port)?;
    Ok(l.local_addr().map_err(ProcessError::Port)?.port())
}

/// Resolves `defaultExecutablePath`: relative paths count only if the file
/// exists under `base`, otherwise the value is a command on PATH (as the host does).
pub fn resolve_executable(value: &str, base: &Path) -> PathBuf {
    let p = Path::new(value);
    if p.is_absolute() {
        return p.to_path_buf();
    }
    let joined = base.join(p);
    if joined.is_file() {
        return joined;
    }
    p.to_path_buf()
}

/// Starts the handler. Must be called from a thread that lives as long as
/// devhost: on Linux the child gets SIGKILL when the *spawning thread* exits.
pub fn spawn(spec: &LaunchSpec) -> Result<Child, ProcessError> {
    let mut cmd = Command::new(&spec.program);
    cmd.args(&spec.args)
        .current_dir(&spec.cwd)
        .envs(spec.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    #[cfg(target_os = "linux")]
    {
        let parent = std::process::id();
        // SAFETY: the closure runs between fork and exec and only calls
        // async-signal-safe functions (prctl, getppid, last_os_error).
        unsafe {
            cmd.pre_exec(move || {
                // Die with devhost even if it is SIGKILLed and cannot clean up.
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // devhost may have died before prctl took effect.
                if libc::getppid() as u32 != parent {
                    return Err(std::io::Error::other("devhost exited while starting the handler"));
                }
                Ok(())
            });
        }
    }
    let mut child =
        cmd.spawn().map_err(|source| ProcessError::Spawn { program: spec.program.display().to_string(), source })?;
    if let Some(out) = child.stdout.take() {
        tokio::spawn(forward_lines(out));
    }
    if let Some(err) = child.stderr.take() {
        tokio::spawn(forward_lines(err));
    }
    Ok(child)
}

async fn forward_lines(stream: impl AsyncRead + Unpin) {
    let mut reader = BufReader::new(stream);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                let line = String::from_utf8_lossy(&buf);
                eprintln!("[handler] {}", line.trim_end_matches(['\r', '\n']));
            }
        }
    }
}

/// Polls `GET http://127.0.0.1:{port}/` every 25 ms until any HTTP response.
pub async fn wait_ready(child: &mut Child, port: u16, timeout: Duration) -> Result<(), ProcessError> {
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(2))
        .build()
        .map_err(|e| ProcessError::Wait(std::io::Error::other(e)))?;
    let url = format!("http://127.0.0.1:{port}/");
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().map_err(ProcessError::Wait)? {
            return Err(ProcessError::ExitedEarly { port, status: status.to_string() });
        }
        if client.get(&url).send().await.is_ok() {
            return Ok(());
        }
        if started.elapsed() >= timeout {
            return Err(ProcessError::NotReady { port, secs: timeout.as_secs() });
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
