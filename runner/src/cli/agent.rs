//! `mflab agent …`: what runs inside L1. Started by the lab, not by hand.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use lab::protocol::{function_rows, CheckItem, RunRequest};

use super::Outcome;

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

pub fn run(args: AgentArgs) -> Outcome {
    // An agent that serves scenarios beats, so the runner can tell a
    // stopped L1 from a busy one.
    match &args.command {
        AgentCommand::Serve { dir } => crate::lab_vm::heartbeat::start(dir),
        AgentCommand::Run { out, .. } => {
            crate::lab_vm::heartbeat::start(out.parent().unwrap_or(std::path::Path::new(".")))
        }
        _ => {}
    }
    let written = match args.command {
        AgentCommand::SelfCheck { sysfs, out } => function_rows(&sysfs)
            .map_err(|e| e.to_string())
            .and_then(|rows| write_json(&out, &rows)),
        AgentCommand::Run { request, out } => std::fs::read_to_string(&request)
            .map_err(|e| format!("{}: {e}", request.display()))
            .and_then(|t| {
                serde_json::from_str::<RunRequest>(&t)
                    .map_err(|e| format!("{}: {e}", request.display()))
            })
            .and_then(|req| {
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
            }),
        AgentCommand::Serve { dir } => crate::lab_vm::serve::serve(&dir),
        AgentCommand::LibvirtCheck {
            request,
            out,
            libvirt_bin,
        } => std::fs::read_to_string(&request)
            .map_err(|e| format!("{}: {e}", request.display()))
            .and_then(|t| serde_json::from_str::<Vec<CheckItem>>(&t).map_err(|e| e.to_string()))
            .and_then(|items| {
                let work = out.parent().map(PathBuf::from).unwrap_or_default();
                crate::lab_vm::libvirt_check::check_with_libvirt(
                    &items,
                    &work,
                    libvirt_bin.as_deref(),
                )
            })
            .and_then(|verdicts| write_json(&out, &verdicts)),
    };
    match written {
        Ok(()) => Outcome::Clean,
        Err(e) => {
            eprintln!("mflab agent: {e}");
            Outcome::UsageOrIo
        }
    }
}

fn write_json<T: serde::Serialize>(path: &std::path::Path, value: &T) -> Result<(), String> {
    let text = serde_json::to_string_pretty(value).expect("serializes");
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}
