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
