//! The npm packages `./dev` installs (Azurite, pinned by `package-lock.json`) run on the Node version the
//! README names, the one CI has; `./dev` refuses an older Node with a message.

use std::path::Path;
use std::process::Command;

/// The oldest Node the README promises, and what `./dev` checks.
const NODE_MAJOR: u64 = 20;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The major version of the smallest Node a `>=X.Y.Z` (or `^X`) engines range admits, if it has that form.
fn minimum_major(range: &str) -> Option<u64> {
    let first = range.split("||").map(str::trim).next()?;
    let version = first.strip_prefix(">=").or_else(|| first.strip_prefix('^')).unwrap_or(first);
    version.trim().trim_start_matches('v').split('.').next()?.parse().ok()
}

#[test]
fn every_locked_npm_package_runs_on_the_node_version_the_readme_names() {
    let lock: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root().join("package-lock.json")).expect("package-lock.json"))
            .expect("package-lock.json is JSON");
    let packages = lock["packages"].as_object().expect("a lockfile v3 `packages` map");
    let too_new: Vec<String> = packages
        .iter()
        .filter_map(|(name, package)| {
            let range = package["engines"]["node"].as_str()?;
            (minimum_major(range)? > NODE_MAJOR).then(|| format!("{name} needs node {range}"))
        })
        .collect();
    assert!(too_new.is_empty(), "packages that need a Node newer than {NODE_MAJOR}: {too_new:?}");
    let readme = std::fs::read_to_string(root().join("README.md")).expect("README.md");
    assert!(readme.contains(&format!("Node {NODE_MAJOR} or later")), "the README names the Node it needs");
}

#[test]
fn dev_refuses_a_node_older_than_the_one_the_readme_names() {
    // A `node` that reports an old version, found first on PATH; the real one is never reached.
    let dir = tempfile::tempdir().expect("temp dir");
    let fake = dir.path().join("node");
    std::fs::write(&fake, "#!/bin/sh\necho v18.19.0\n").expect("writing node");
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
    let path = format!("{}:{}", dir.path().display(), std::env::var("PATH").unwrap_or_default());
    let output = Command::new(root().join("dev")).arg("demo").env("PATH", path).output().expect("running ./dev");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("Node 20 or later") && stderr.contains("v18.19.0"), "{stderr}");
}

#[test]
fn engine_ranges_give_their_minimum_major_version() {
    assert_eq!(minimum_major(">=22.0.0"), Some(22));
    assert_eq!(minimum_major(">=10.0.0"), Some(10));
    assert_eq!(minimum_major("^18.17.0 || >=20.5.0"), Some(18));
    assert_eq!(minimum_major("*"), None);
}
