//! Child processes for tests: spawning tied to the test process's life,
//! waiting for a readiness line, and locating (building) workspace binaries.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::{mpsc, Mutex, OnceLock};
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

type SpawnJob = (Command, mpsc::Sender<std::io::Result<Child>>);

/// Spawns `cmd` from one long-lived thread, with `PR_SET_PDEATHSIG` on Linux.
///
/// The death signal fires when the *thread* that forked the child exits, not
/// the process; spawning from a test's own (short-lived) thread or a runtime
/// worker would kill the child early. A thread that lives as long as the test
/// process makes the signal mean "the test process is gone", which is what
/// keeps emulators from outliving a crashed or killed test run.
pub(crate) fn spawn_tied(cmd: Command) -> anyhow::Result<Child> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<SpawnJob>>> = OnceLock::new();
    let sender = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnJob>();
        std::thread::Builder::new()
            .name("testkit-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    tie_to_parent(&mut cmd);
                    // The requester may have given up; nothing to do then.
                    let _ = reply.send(cmd.spawn());
                }
            })
            .map(|_| ())
            .unwrap_or_else(|e| eprintln!("testkit: cannot start spawner thread: {e}"));
        Mutex::new(tx)
    });
    let (reply_tx, reply_rx) = mpsc::channel();
    sender
        .lock()
        .map_err(|_| anyhow!("spawner lock poisoned"))?
        .send((cmd, reply_tx))
        .map_err(|_| anyhow!("spawner thread is not running"))?;
    let child = reply_rx.recv().map_err(|_| anyhow!("spawner thread did not answer"))??;
    Ok(child)
}

#[cfg(target_os = "linux")]
fn tie_to_parent(cmd: &mut Command) {
    use std::os::unix::process::CommandExt as _;
    let parent = std::process::id();
    // SAFETY: the closure runs between fork and exec and only calls
    // async-signal-safe functions (prctl, getppid, _exit).
    unsafe {
        cmd.pre_exec(move || {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            // The parent may have died before prctl took effect.
            if libc::getppid() as u32 != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn tie_to_parent(_cmd: &mut Command) {}

/// Reads `stdout` line by line until a line containing `needle` appears and
/// returns that line. Fails if the stream ends first or `timeout` passes; the
/// error lists the last lines seen.
///
/// After the match the rest of the stream is drained in the background, so
/// the child never blocks on (or dies from) a full or closed pipe.
pub async fn wait_for_line<R>(stdout: R, needle: &str, timeout: Duration) -> anyhow::Result<String>
where
    R: AsyncRead + Unpin + Send + 'static,
{
    let mut lines = BufReader::new(stdout).lines();
    let mut seen: Vec<String> = Vec::new();
    let search = async {
        loop {
            match lines.next_line().await {
                Ok(Some(line)) if line.contains(needle) => return Ok(line),
                Ok(Some(line)) => {
                    if seen.len() == 20 {
                        seen.remove(0);
                    }
                    seen.push(line);
                }
                Ok(None) => return Err(anyhow!("output ended before a line containing `{needle}`")),
                Err(e) => return Err(anyhow!("reading output failed: {e}")),
            }
        }
    };
    let found = tokio::time::timeout(timeout, search).await;
    let found = match found {
        Ok(r) => r,
        Err(_) => Err(anyhow!("no line containing `{needle}` within {timeout:?}")),
    };
    match found {
        Ok(line) => {
            tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
            Ok(line)
        }
        Err(e) => Err(e.context(format!("last lines: {seen:#?}"))),
    }
}

/// The workspace root, found at run time: the nearest ancestor, with a `Cargo.toml` that has a `[workspace]`
/// table, of the current directory, else of `$CARGO_MANIFEST_DIR` (which cargo sets when it runs a test or
/// binary), else of the running executable (a target directory inside the workspace).
///
/// Never a path fixed at compile time: a binary built in one checkout and run in another must work on the
/// checkout it is run in.
pub fn workspace_root() -> anyhow::Result<PathBuf> {
    let starts = [
        std::env::current_dir().ok(),
        std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from),
        std::env::current_exe().ok(),
    ];
    find_workspace_root(starts.iter().flatten().map(PathBuf::as_path))
        .ok_or_else(|| anyhow!("no Cargo.toml with [workspace] above the current directory or {starts:?}"))
}

/// The first directory, among the ancestors of each start in turn, whose `Cargo.toml` has a `[workspace]`.
fn find_workspace_root<'a>(starts: impl IntoIterator<Item = &'a Path>) -> Option<PathBuf> {
    starts.into_iter().flat_map(Path::ancestors).find_map(|dir| {
        let text = std::fs::read_to_string(dir.join("Cargo.toml")).ok()?;
        text.lines().any(|l| l.trim() == "[workspace]").then(|| dir.to_path_buf())
    })
}

/// Path of the workspace binary `name`, next to the running test executable
/// (`target/<profile>/deps/<test>` → `target/<profile>/<name>`).
///
/// Every workspace binary is built once per process with `cargo build --workspace --bins` (a no-op when
/// they are up to date), so a test never runs a stale build of another package. Building the whole
/// workspace, not one package, keeps the features of shared dependencies the same as the project's own
/// build, so nothing is compiled a second time with other features.
///
/// # Panics
/// If the binary cannot be located or built; the message says why. Use
/// [`try_workspace_bin`] to handle that yourself.
pub fn workspace_bin(name: &str) -> PathBuf {
    try_workspace_bin(name).unwrap_or_else(|e| panic!("workspace binary `{name}`: {e:#}"))
}

/// Fallible form of [`workspace_bin`].
pub fn try_workspace_bin(name: &str) -> anyhow::Result<PathBuf> {
    static BUILT: OnceLock<Mutex<bool>> = OnceLock::new();
    let exe = std::env::current_exe().context("current_exe")?;
    let profile_dir = exe
        .parent()
        .filter(|d| d.file_name().is_some_and(|n| n == "deps"))
        .and_then(Path::parent)
        .or_else(|| exe.parent())
        .ok_or_else(|| anyhow!("cannot find the target directory from {}", exe.display()))?
        .to_path_buf();
    let bin = profile_dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));

    // Serialise builds: parallel tests asking for binaries build them once.
    let mut built = BUILT.get_or_init(|| Mutex::new(false)).lock().map_err(|_| anyhow!("build lock poisoned"))?;
    if !*built {
        match build_workspace_bins(&profile_dir) {
            Ok(()) => {}
            // Without cargo (e.g. binaries copied to another machine) existing binaries are still usable.
            Err(e) if bin.exists() => eprintln!("testkit: using existing {}: {e:#}", bin.display()),
            Err(e) => return Err(e),
        }
        *built = true;
    }
    if !bin.exists() {
        bail!("no workspace binary {} (is `{name}` a [[bin]] of a workspace package?)", bin.display());
    }
    Ok(bin)
}

fn build_workspace_bins(profile_dir: &Path) -> anyhow::Result<()> {
    let root = workspace_root()?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(&cargo);
    cmd.current_dir(&root).args(["build", "--quiet", "--workspace", "--bins"]);
    if let Some(target_dir) = profile_dir.parent() {
        cmd.arg("--target-dir").arg(target_dir);
    }
    match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => {}
        Some("release") => {
            cmd.arg("--release");
        }
        Some(other) => {
            cmd.args(["--profile", other]);
        }
    }
    let status = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_workspace_root_has_a_workspace_manifest() {
        let root = workspace_root().unwrap();
        let text = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
        assert!(text.contains("[workspace]"));
        assert!(root.join("crates/testkit").is_dir());
    }

    #[test]
    fn the_workspace_root_is_looked_up_from_each_start_in_turn_at_run_time() {
        let other = tempfile::tempdir().unwrap();
        std::fs::write(other.path().join("Cargo.toml"), "[workspace]\nmembers = []\n").unwrap();
        let nested = other.path().join("a/b");
        std::fs::create_dir_all(&nested).unwrap();
        let outside = tempfile::tempdir().unwrap();
        assert_eq!(find_workspace_root([nested.as_path()]), Some(other.path().to_path_buf()));
        let here = workspace_root().unwrap();
        assert_eq!(find_workspace_root([outside.path(), here.as_path()]), Some(here.clone()));
        assert_eq!(find_workspace_root([outside.path()]), None);
    }

    #[tokio::test]
    async fn wait_for_line_returns_the_matching_line_and_keeps_draining() {
        let mut child = tokio::process::Command::new("sh")
            .args([
                "-c",
                "echo starting; echo 'srv listening on http://127.0.0.1:1234'; for i in $(seq 1 2000); do echo more $i; done",
            ])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let line = wait_for_line(stdout, "listening on", Duration::from_secs(10)).await.unwrap();
        assert_eq!(line, "srv listening on http://127.0.0.1:1234");
        // The child can write the rest of its output and exit normally.
        assert!(child.wait().await.unwrap().success());
    }

    #[tokio::test]
    async fn wait_for_line_fails_when_the_output_ends_first() {
        let mut child = tokio::process::Command::new("sh")
            .args(["-c", "echo nothing useful"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let err = wait_for_line(stdout, "listening on", Duration::from_secs(10)).await.unwrap_err();
        assert!(format!("{err:#}").contains("nothing useful"), "{err:#}");
        child.wait().await.unwrap();
    }

    #[tokio::test]
    async fn wait_for_line_gives_up_after_the_timeout() {
        let mut child = tokio::process::Command::new("sleep")
            .arg("5")
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let err = wait_for_line(stdout, "x", Duration::from_millis(200)).await.unwrap_err();
        assert!(format!("{err:#}").contains("within"), "{err:#}");
    }
}
