//! The demos as a newcomer meets them: `./dev` lists every demo the drill has, the drill works on the
//! checkout it is run in (not the one it was built in) and each demo writes its own folder, and the MRU
//! benchmark shows progress while it replays.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Bounds a whole demo run, stack start-up included; only stops a hung run on a loaded machine.
const LIMIT: Duration = Duration::from_secs(300);

/// The repository this test belongs to.
fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs `cmd` to the end (killing it after [`LIMIT`]): success, stdout, stderr.
fn run(mut cmd: Command) -> (bool, String, String) {
    let mut child: Child =
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("starting");
    let collect = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let out = collect(Box::new(child.stdout.take().expect("stdout")));
    let err = collect(Box::new(child.stderr.take().expect("stderr")));
    let deadline = Instant::now() + LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting") {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let (out, err) = (out.join().unwrap_or_default(), err.join().unwrap_or_default());
    assert!(status.is_some(), "did not end within {LIMIT:?}\nstdout:\n{out}\nstderr:\n{err}");
    (status.is_some_and(|s| s.success()), out, err)
}

/// The drill's subcommands, from its own `--help`.
fn drill_demos() -> Vec<String> {
    let (ok, help, err) = run({
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_drill"));
        cmd.arg("--help");
        cmd
    });
    assert!(ok, "{err}");
    let commands = help.split("Commands:").nth(1).expect("the drill lists its commands");
    commands
        .lines()
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_owned)
        .collect()
}

#[test]
fn dev_without_or_with_an_unknown_command_lists_every_demo() {
    let demos = drill_demos();
    assert!(!demos.is_empty());
    for args in [&[][..], &["frobnicate"][..], &["demo", "no-such-demo"][..]] {
        let (ok, out, err) = run({
            let mut cmd = Command::new(repo().join("dev"));
            cmd.args(args);
            cmd
        });
        let text = format!("{out}{err}");
        assert_eq!(ok, args.is_empty(), "./dev {args:?}: {text}");
        assert!(text.contains("./dev demo "), "./dev {args:?} shows the failover drill: {text}");
        for demo in &demos {
            assert!(text.contains(&format!("./dev demo {demo}")), "./dev {args:?} lists {demo}: {text}");
        }
    }
}

#[test]
fn the_drill_writes_into_the_checkout_it_is_run_in_and_each_demo_into_its_own_folder() {
    // Another checkout: a workspace manifest and the function app, nothing built. The drill must use it for
    // the function app and its output, and the binaries next to itself.
    let other = tempfile::tempdir().expect("temp dir");
    let root = other.path();
    std::fs::write(root.join("Cargo.toml"), "[workspace]\nmembers = []\n").expect("Cargo.toml");
    for file in ["host.json", "local.settings.json"] {
        std::fs::copy(repo().join(file), root.join(file)).expect(file);
    }
    for entry in std::fs::read_dir(repo()).expect("repo") {
        let dir = entry.expect("entry").path();
        if dir.join("function.json").is_file() {
            let name = dir.file_name().expect("name").to_owned();
            std::fs::create_dir_all(root.join(&name)).expect("function dir");
            std::fs::copy(dir.join("function.json"), root.join(&name).join("function.json")).expect("function.json");
        }
    }
    let (ok, out, err) = run({
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_drill"));
        cmd.args(["lifecycle", "--jobs", "2"])
            .current_dir(root)
            .env_remove("CARGO_MANIFEST_DIR")
            .env("AZURITE_BIN", repo().join("node_modules/.bin"));
        cmd
    });
    assert!(ok, "stdout:\n{out}\nstderr:\n{err}");
    let log = root.join(".local/lifecycle/stack.log");
    let text = std::fs::read_to_string(&log).unwrap_or_else(|e| panic!("{}: {e}\n{out}\n{err}", log.display()));
    assert!(text.contains("[devhost]"), "the stack's log is in the checkout the drill ran in");
    assert!(!root.join(".local/drill").exists(), "the lifecycle demo leaves the failover drill's folder alone");
}

#[test]
fn the_mru_benchmark_prints_progress_while_it_replays() {
    let out_dir = tempfile::tempdir().expect("temp dir");
    let (ok, out, err) = run({
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_drill"));
        cmd.args(["mru-bench", "--jobs", "3", "--time-scale", "60", "--out"]).arg(out_dir.path());
        cmd
    });
    assert!(ok, "stdout:\n{out}\nstderr:\n{err}");
    let replay = out.split("MRU_SCALE_DOWN ").next().unwrap_or_default();
    for mode in ["on-final", "periodic"] {
        let progress = replay.lines().filter(|l| l.contains(&format!("[{mode}]")) && l.contains("submitted")).count();
        assert!(progress >= 1, "{mode} shows progress before the table:\n{out}");
        assert!(out_dir.path().join(mode).is_dir(), "{mode} keeps its alerts in its own folder");
    }
    assert!(out_dir.path().join("result.json").is_file());
}
