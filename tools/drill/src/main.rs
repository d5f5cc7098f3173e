//! The product's main demo on the local stack (Azurite, the Media Services emulator and devhost running the
//! handler).
//!
//! - `drill` (the default): a failover drill across three regions, one of which stalls, goes down and
//!   recovers while jobs keep arriving (see [`failover`]); it writes an HTML report.
//! - `drill lifecycle`: a handful of jobs through their whole lifecycle (see [`lifecycle`]).
//! - `drill mru-bench`: compares the two ways of lowering Media Reserved Units (see [`mru_bench`]).

mod failover;
mod lifecycle;
mod mru_bench;
mod report;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    about = "Run the product on the local stack: a failover drill by default",
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    drill: failover::Args,
}

#[derive(Subcommand)]
enum Command {
    /// Submit a few jobs on two healthy regions and print each state change until they finish.
    Lifecycle(lifecycle::Args),
    /// Replay a bursty job trace with MRU_SCALE_DOWN=on-final and =periodic and compare how MRUs are used.
    MruBench(mru_bench::Args),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Lifecycle(args)) => lifecycle::run(args).await,
        Some(Command::MruBench(args)) => mru_bench::run(args).await,
        None => failover::run(cli.drill).await,
    }
}
