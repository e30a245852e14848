//! The subcommands. Each file here turns arguments into a call of the
//! `lab` library and prints the outcome; the logic lives in `lab`.
//!
//! Exit statuses, for every subcommand: 0 = no error, 1 = the input broke a
//! rule (or a scenario failed), 2 = usage or I/O problem. A subcommand
//! returns its verdict as an [`Outcome`], or with `?` the [`CliError`]
//! that stopped it; [`run`] prints the error and maps it to its status.

pub mod agent;
pub mod bench;
mod boot;
mod check;
pub mod check_libvirt;
mod clean;
mod diagnose;
mod error;
mod host;
mod images;
mod plan;
mod probe;
mod report;
mod restore;
pub mod run;

pub use error::CliError;

use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    name = "mflab",
    version,
    about = "A lab for partial assignment of multifunction PCI devices"
)]
pub struct Cli {
    /// The kernel L1 and L2 boot: a vmlinuz (with --modules), `host` for
    /// the running one, `debian-12`/`debian-13`/`debian-testing` (forky)
    /// for that release's linux-image-amd64 (fetched into the cache with a
    /// sources list of mflab's own), or `RELEASE+iommufd` for that
    /// release's kernel rebuilt from its linux-source with IOMMUFD and the
    /// VFIO cdev (built once into the cache: tens of minutes); default:
    /// Debian's linux-image-amd64 from the system's sources, else the
    /// running one.
    #[arg(long, global = true, env = "MFLAB_KERNEL")]
    kernel: Option<std::path::PathBuf>,
    /// That kernel's modules directory (lib/modules/<version>; .ko, .ko.xz, .ko.zst or .ko.gz files).
    #[arg(long, global = true, env = "MFLAB_MODULES", requires = "kernel")]
    modules: Option<std::path::PathBuf>,
    /// L1's userland: `host` (the host's root, the default) or a Debian
    /// release (`debian-12`, `debian-13`, `debian-testing`: forky) whose
    /// root is built with debootstrap into the cache on first use (as
    /// root; `mflab images --release` builds it alone); L1 shares it in
    /// read-only, and its kernel boots L1 and L2 unless --kernel says otherwise.
    #[arg(long, global = true, env = "MFLAB_RELEASE", value_parser = parse_release)]
    release: Option<String>,
    /// L0's QEMU, the one that runs L1: `host`, `backports`
    /// (bookworm-backports' qemu-system-x86), `debian-13` (trixie's),
    /// `debian-testing` (forky's), or a path to a qemu-system-x86_64; the
    /// fetched ones go into the cache with their own libraries.
    /// Default: the host's when it has TCG's page-locking fixes (QEMU 8.2.6,
    /// 9.0.2, 9.1 on) or L1 runs under KVM, else a fetched one.
    #[arg(long, global = true, env = "MFLAB_QEMU", value_parser = parse_qemu)]
    qemu: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check domain XML files against the static rules R1–R8.
    Check(check::CheckArgs),
    /// Plan a domain on a host: what to detach, assign, leave unassigned and restore.
    Plan(plan::PlanArgs),
    /// Give back the functions recorded in a binder journal (after a killed run).
    Restore(restore::RestoreArgs),
    /// Run scenarios (default: scenarios/), or a bare domain XML with --xml.
    Run(run::RunArgs),
    /// Remove the work directories of runners that were killed (kept ones with --kept).
    Clean(clean::CleanArgs),
    /// A pasted bug report to a verdict per IOMMU group, a fixed XML and
    /// (with --replay) a proof in the lab.
    Diagnose(diagnose::DiagnoseArgs),
    /// Print the L1 topology built from a reporter's PCI listing (and its host map).
    Host(host::HostArgs),
    /// Boot the lab VM (L1) on a topology, list its PCI functions, power off.
    Boot(boot::BootArgs),
    /// The runner's health check: accelerator and why, QEMU, the kernel and
    /// what it lacks, libvirt; exit 1 when the suite cannot run here.
    Probe,
    /// Print where the time goes: image build, boot against the floor, each depth.
    Bench(bench::BenchArgs),
    /// Show the cached kernel and initramfs (building what is missing);
    /// with --release, the release's root too (built with debootstrap, as root).
    Images,
    /// Runs of `mflab run --format json` side by side (libvirt versions, say), as Markdown.
    Report(report::ReportArgs),
    /// Inside L1: the agent. Started by the lab, not by hand.
    #[command(hide = true)]
    Agent(agent::AgentArgs),
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Format {
    #[default]
    Text,
    Json,
}

fn parse_qemu(name: &str) -> Result<String, crate::host::l0_qemu::QemuError> {
    crate::host::l0_qemu::QemuSource::parse(name).map(|_| name.to_string())
}

fn parse_release(name: &str) -> Result<String, crate::host::images::release_root::UnknownRelease> {
    crate::host::images::release_root::Userland::parse(name).map(|_| name.to_string())
}

/// The outcomes every subcommand maps to an exit status.
pub enum Outcome {
    Clean,
    /// The input broke a rule, a scenario did not hold, or a VM could not do its work.
    Failed,
    /// A usage or I/O problem: a [`CliError`]'s, or one a subcommand said
    /// and went on past (a file `check` cannot read among others, a
    /// directory `clean` cannot remove, a paste with no XML to diagnose).
    UsageOrIo,
    /// Ctrl-C or SIGTERM: everything was cleaned up, exit 130 as shells expect.
    Interrupted,
}

impl From<Outcome> for ExitCode {
    fn from(o: Outcome) -> ExitCode {
        match o {
            Outcome::Clean => ExitCode::SUCCESS,
            Outcome::Failed => ExitCode::from(1),
            Outcome::UsageOrIo => ExitCode::from(2),
            Outcome::Interrupted => ExitCode::from(130),
        }
    }
}

pub fn run(cli: Cli) -> ExitCode {
    // The image code reads the environment; flags and variables are one.
    if let Some(kernel) = &cli.kernel {
        std::env::set_var("MFLAB_KERNEL", kernel);
    }
    if let Some(modules) = &cli.modules {
        std::env::set_var("MFLAB_MODULES", modules);
    }
    if let Some(release) = &cli.release {
        std::env::set_var("MFLAB_RELEASE", release);
    }
    if let Some(qemu) = &cli.qemu {
        std::env::set_var(crate::host::l0_qemu::ENV, qemu);
    }
    let result = match cli.command {
        Command::Check(args) => check::run(args),
        Command::Plan(args) => plan::run(args),
        Command::Restore(args) => restore::run(args),
        Command::Boot(args) => boot::run(args),
        Command::Host(args) => host::run(args),
        Command::Diagnose(args) => diagnose::run(args),
        Command::Run(args) => run::run(args),
        Command::Clean(args) => clean::run(args),
        Command::Agent(args) => agent::run(args),
        Command::Images => images::run(),
        Command::Bench(args) => bench::run(args),
        Command::Probe => probe::run(),
        Command::Report(args) => report::run(args),
    };
    match result {
        Ok(outcome) => outcome.into(),
        Err(e) => {
            eprintln!("{}", e.report());
            e.outcome().into()
        }
    }
}
