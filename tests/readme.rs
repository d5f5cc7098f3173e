//! The README stays true to the code: its first lines give the two commands, `.ci/run` runs the same test
//! command, and every setting the handler reads is documented.

use ams_failover::config::SETTINGS;
use std::path::Path;

fn read(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).unwrap_or_default()
}

#[test]
fn the_readme_opens_with_the_demo_and_test_commands_and_ci_runs_the_same_test_command() {
    let readme = read("README.md");
    let commands: Vec<&str> = readme.lines().take(6).filter(|l| l.starts_with("./dev ")).collect();
    assert_eq!(commands.len(), 2, "the README's first lines must give exactly two commands: {commands:?}");
    assert!(commands[0].starts_with("./dev demo"));
    assert!(commands[1].starts_with("./dev test"));
    assert!(read(".ci/run").lines().any(|l| l.trim() == "exec ./dev test"), ".ci/run must run ./dev test");
}

#[test]
fn every_setting_the_handler_reads_is_documented_in_the_readme() {
    let readme = read("README.md");
    let missing: Vec<&str> =
        SETTINGS.iter().map(|s| s.name).filter(|name| !readme.contains(&format!("`{name}`"))).collect();
    assert!(missing.is_empty(), "settings missing from the README: {missing:?}");
}

/// Every Markdown file of the repository: the README, docs/ and each tool's or crate's README.
fn markdown_files() -> Vec<std::path::PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = vec![root.join("README.md")];
    for dir in ["docs", "tools", "crates"] {
        for entry in std::fs::read_dir(root.join(dir)).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "md") {
                files.push(path);
            } else if path.join("README.md").is_file() {
                files.push(path.join("README.md"));
            }
        }
    }
    files
}

/// The targets of `[text](target)` links in `text` that are neither web addresses nor anchors.
fn relative_links(text: &str) -> Vec<String> {
    text.split("](")
        .skip(1)
        .filter_map(|rest| rest.split(')').next())
        .map(|target| target.split('#').next().unwrap_or_default().trim().to_owned())
        .filter(|target| !target.is_empty() && !target.contains("://") && !target.starts_with("mailto:"))
        .collect()
}

#[test]
fn every_document_links_only_to_files_inside_the_repository() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).canonicalize().expect("repository root");
    let mut broken = Vec::new();
    for file in markdown_files() {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        let dir = file.parent().unwrap_or(&root);
        for link in relative_links(&text) {
            match dir.join(&link).canonicalize() {
                Ok(target) if target.starts_with(&root) => {}
                _ => broken.push(format!("{}: {link}", file.display())),
            }
        }
        for outside in ["../shared", "azure-contracts.md"] {
            if text.contains(outside) {
                broken.push(format!("{}: names {outside}", file.display()));
            }
        }
    }
    assert!(broken.is_empty(), "links that a clone cannot follow: {broken:#?}");
}

#[test]
fn every_tool_has_a_readme() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for entry in std::fs::read_dir(root.join("tools")).expect("tools/").flatten() {
        if entry.path().join("Cargo.toml").is_file() {
            assert!(entry.path().join("README.md").is_file(), "{} has no README.md", entry.path().display());
        }
    }
}
