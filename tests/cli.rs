//! The handler binary run by hand: `--help` explains it instead of failing on the settings it lacks.

use std::process::Command;

#[test]
fn handler_help_prints_the_settings_and_succeeds_without_any_configuration() {
    let output =
        Command::new(env!("CARGO_BIN_EXE_handler")).arg("--help").env_clear().output().expect("running the handler");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    for setting in ams_failover::config::SETTINGS {
        assert!(stdout.contains(setting.name), "--help names {}:\n{stdout}", setting.name);
    }
    assert!(stdout.contains("FUNCTIONS_CUSTOMHANDLER_PORT"), "{stdout}");
    assert!(stderr.is_empty(), "no configuration error: {stderr}");
}

#[test]
fn the_handler_without_settings_still_names_the_missing_one() {
    let output = Command::new(env!("CARGO_BIN_EXE_handler")).env_clear().output().expect("running the handler");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("MEDIA_ACCOUNTS"), "{stderr}");
}
