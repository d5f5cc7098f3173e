//! The `devhost` binary: parses the command line and runs the host.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = devhost::Cli::parse();
    match devhost::run(cli).map_err(anyhow::Error::from) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("devhost: {e:#}");
            ExitCode::FAILURE
        }
    }
}
