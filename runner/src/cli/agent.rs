//! `mflab agent …`: what runs inside L1. Not for people to call by hand.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use lab::host::read_host_view;
use serde::Serialize;

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
}

/// One row of `mflab boot --format json`.
#[derive(Serialize, serde::Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct FunctionRow {
    pub bdf: String,
    pub vendor: String,
    pub device: String,
    pub class: String,
    pub driver: Option<String>,
    pub iommu_group: Option<u32>,
}

pub fn function_rows(
    sysfs: &std::path::Path,
) -> Result<Vec<FunctionRow>, lab::host::HostViewError> {
    let view = read_host_view(sysfs)?;
    Ok(view
        .functions
        .values()
        .map(|f| FunctionRow {
            bdf: f.address.to_string(),
            vendor: format!("{:#06x}", f.vendor),
            device: format!("{:#06x}", f.device),
            class: format!("{:#08x}", f.class),
            driver: f.driver.clone(),
            iommu_group: f.iommu_group,
        })
        .collect())
}

pub fn run(args: AgentArgs) -> Outcome {
    match args.command {
        AgentCommand::SelfCheck { sysfs, out } => match function_rows(&sysfs) {
            Ok(rows) => {
                let json = serde_json::to_string_pretty(&rows).expect("rows serialize");
                if let Err(e) = std::fs::write(&out, json) {
                    eprintln!("mflab agent: {}: {e}", out.display());
                    return Outcome::UsageOrIo;
                }
                Outcome::Clean
            }
            Err(e) => {
                eprintln!("mflab agent: {e}");
                Outcome::UsageOrIo
            }
        },
    }
}
