//! `scripts/package.sh` stages what host.json describes: the handler at `defaultExecutablePath` and
//! executable, every function folder with its function.json, nothing else, and never local.settings.json.
//! It stages the binary this test run already built (`--binary`), so no second build is needed.

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!("{name}-{}-{}", std::process::id(), rand::random::<u32>()));
        std::fs::create_dir_all(&path).expect("temp dir");
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn function_folders(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .expect("dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.join("function.json").is_file())
        .map(|p| p.file_name().and_then(|n| n.to_str()).expect("name").to_owned())
        .collect()
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

fn package(out: &Path) {
    let status = Command::new("bash")
        .arg(root().join("scripts/package.sh"))
        .arg("--out")
        .arg(out)
        .arg("--binary")
        .arg(env!("CARGO_BIN_EXE_handler"))
        .current_dir(root())
        .status()
        .expect("run scripts/package.sh");
    assert!(status.success(), "scripts/package.sh failed: {status}");
}

#[test]
fn the_staged_app_matches_host_json_and_holds_only_what_the_host_loads() {
    let out = TempDir::new("ams-package");
    package(&out.0);
    let stage = out.0.join("app");

    let host: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root().join("host.json")).expect("host.json")).expect("json");
    assert_eq!(
        std::fs::read(stage.join("host.json")).expect("staged host.json"),
        std::fs::read(root().join("host.json")).expect("host.json"),
        "host.json is staged unchanged"
    );

    let exe = host["customHandler"]["description"]["defaultExecutablePath"].as_str().expect("defaultExecutablePath");
    let staged_exe = stage.join(exe);
    let mode = std::fs::metadata(&staged_exe).expect("the binary at defaultExecutablePath").permissions().mode();
    assert_eq!(mode & 0o111, 0o111, "{exe} must be executable by everyone, mode {mode:o}");
    let (staged, built) = (
        std::fs::read(&staged_exe).expect("staged binary"),
        std::fs::read(env!("CARGO_BIN_EXE_handler")).expect("built binary"),
    );
    // Compared without printing them: a failure must not dump two binaries into the log.
    assert!(staged == built, "the staged binary is not the one given ({} and {} bytes)", staged.len(), built.len());

    let functions = function_folders(&root());
    assert!(functions.contains("OnJobStateChange") && functions.contains("SubmitJob"), "found {functions:?}");
    assert_eq!(function_folders(&stage), functions, "every function folder is staged");
    for f in &functions {
        assert_eq!(
            std::fs::read(stage.join(f).join("function.json")).expect("staged function.json"),
            std::fs::read(root().join(f).join("function.json")).expect("function.json"),
            "{f}/function.json is staged unchanged"
        );
    }

    let mut expected: BTreeSet<PathBuf> = functions.iter().map(|f| stage.join(f).join("function.json")).collect();
    expected.insert(stage.join("host.json"));
    expected.insert(staged_exe);
    let staged: BTreeSet<PathBuf> = files_under(&stage).into_iter().collect();
    assert_eq!(staged, expected, "nothing else is staged");
    assert!(staged.iter().all(|p| p.file_name().is_some_and(|n| n != "local.settings.json")));
}

#[test]
fn the_zip_keeps_the_layout_and_the_executable_bit() {
    let out = TempDir::new("ams-package-zip");
    package(&out.0);
    let zip = out.0.join("app.zip");
    assert!(std::fs::metadata(&zip).map(|m| m.len() > 0).unwrap_or(false), "app.zip is written");

    // `unzip -Z` prints each entry with its Unix mode, like ls -l.
    let listing = match Command::new("unzip").arg("-Z").arg(&zip).output() {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).into_owned(),
        _ => {
            eprintln!("unzip is not installed; the zip's modes are not checked");
            return;
        }
    };
    let host: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root().join("host.json")).expect("host.json")).expect("json");
    let exe = host["customHandler"]["description"]["defaultExecutablePath"].as_str().expect("defaultExecutablePath");
    let exe_line = listing
        .lines()
        .find(|l| l.split_whitespace().last() == Some(exe))
        .unwrap_or_else(|| panic!("{exe} is not at the root of the zip:\n{listing}"));
    assert!(exe_line.starts_with("-rwxr-xr-x"), "{exe} must keep mode 755 in the zip: {exe_line}");
    for f in function_folders(&root()) {
        let entry = format!("{f}/function.json");
        assert!(listing.lines().any(|l| l.ends_with(&entry)), "{entry} is missing from the zip");
    }
    assert!(listing.lines().any(|l| l.ends_with(" host.json")), "host.json is at the root of the zip");
    assert!(!listing.contains("local.settings.json"), "local.settings.json must never be packaged");
}
