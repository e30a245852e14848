//! `mflab`: the runner (L0) and, inside the lab VM, the agent.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("MFLAB_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = mflab::cli::Cli::parse();
    mflab::interrupt::install();
    mflab::cli::run(args)
}
