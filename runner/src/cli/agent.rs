//! `mflab agent …`: what runs inside L1. Started by the lab, not by hand.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use lab::pci::view::HostViewError;
use lab::protocol::{function_rows, CheckItem, RunRequest};

use super::{CliError, Outcome};

#[derive(Args)]
pub struct AgentArgs {
    #[command(subcommand)]
    command: AgentCommand,
}

#[derive(Subcommand)]
enum AgentCommand {
    /// List every PCI function as L1's kernel sees it.
    SelfCheck {
        #[arg(long, default_value = "/sys")]
        sysfs: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
    /// libvirt's static verdict (define, undefine) on each file of a request.
    LibvirtCheck {
        #[arg(long)]
        request: PathBuf,
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        libvirt_bin: Option<PathBuf>,
    },
    /// Serve scenario requests from a directory until told to stop (one L1, many scenarios).
    Serve {
        #[arg(long)]
        dir: PathBuf,
    },
    /// Run one scenario request: check, plan, bind, L2, teardown.
    Run {
        #[arg(long)]
        request: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
}

/// Why the agent could not do what it was started for.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Rows(#[from] HostViewError),
    #[error("{}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {source}", path.display())]
    Request {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error(transparent)]
    CheckItems(serde_json::Error),
    /// The serve loop or libvirt's check could not go on.
    #[error(transparent)]
    Lab(#[from] crate::lab_vm::error::L1Error),
    #[error("{}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

pub fn run(args: AgentArgs) -> Result<Outcome, CliError> {
    // An agent that serves scenarios beats, so the runner can tell a
    // stopped L1 from a busy one.
    match &args.command {
        AgentCommand::Serve { dir } => crate::lab_vm::heartbeat::start(dir),
        AgentCommand::Run { out, .. } => {
            crate::lab_vm::heartbeat::start(out.parent().unwrap_or(std::path::Path::new(".")))
        }
        _ => {}
    }
    work(args.command)?;
    Ok(Outcome::Clean)
}

fn work(command: AgentCommand) -> Result<(), AgentError> {
    match command {
        AgentCommand::SelfCheck { sysfs, out } => write_json(&out, &function_rows(&sysfs)?),
        AgentCommand::Run { request, out } => {
            let req: RunRequest =
                serde_json::from_str(&read(&request)?).map_err(|source| AgentError::Request {
                    path: request.clone(),
                    source,
                })?;
            let work = out.parent().map(PathBuf::from).unwrap_or_default();
            write_json(
                &out,
                &crate::lab_vm::serve::run_request(
                    &req,
                    &work,
                    &|_| {},
                    &mut crate::lab_vm::libvirtd::DaemonSlot::new(&work),
                ),
            )
        }
        AgentCommand::Serve { dir } => {
            crate::lab_vm::serve::serve_mailbox(&dir).map_err(AgentError::Lab)
        }
        AgentCommand::LibvirtCheck {
            request,
            out,
            libvirt_bin,
        } => {
            let items: Vec<CheckItem> =
                serde_json::from_str(&read(&request)?).map_err(AgentError::CheckItems)?;
            let work = out.parent().map(PathBuf::from).unwrap_or_default();
            let verdicts = crate::lab_vm::libvirt_check::check_with_libvirt(
                &items,
                &work,
                libvirt_bin.as_deref(),
            )
            .map_err(AgentError::Lab)?;
            write_json(&out, &verdicts)
        }
    }
}

fn read(path: &Path) -> Result<String, AgentError> {
    std::fs::read_to_string(path).map_err(|source| AgentError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> Result<(), AgentError> {
    let text = serde_json::to_string_pretty(value).expect("serializes");
    std::fs::write(path, text).map_err(|source| AgentError::Write {
        path: path.to_path_buf(),
        source,
    })
}
