//! `mflab`: the runner (L0) and the command line.

mod accel;
mod agent;
mod cli;
mod compare_backends;
mod images;
mod interrupt;
mod l1;
mod l1_kvm;
mod l2_ram;
mod libvirt;
mod libvirt_run;
mod run;
mod scenario;
mod shared_l1;
mod topology;
mod vm;

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
    let args = cli::Cli::parse();
    interrupt::install();
    cli::run(args)
}
