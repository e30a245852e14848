//! `mflab plan --sysfs DIR FILE`: what would happen on this host.

use std::path::PathBuf;

use clap::Args;
use lab::assign::plan::{plan, render_plan_text, Policy};
use lab::pci::view::read_host_view;
use lab::schema::check::check_text;

use super::check::print_diagnostics;
use super::{CliError, Format, Outcome};

#[derive(Args)]
pub struct PlanArgs {
    /// The sysfs root to read the host's PCI view from.
    #[arg(long, default_value = "/sys", conflicts_with = "host")]
    sysfs: PathBuf,
    /// Plan on a reporter's host instead: its pasted PCI listing (IOMMU
    /// group loop, `lspci -nn` or `virsh nodedev-dumpxml`); drivers are unknown there.
    #[arg(long)]
    host: Option<PathBuf>,
    /// fixed: partial assignment with R11/R12; legacy: libvirt before the fix.
    #[arg(long, value_enum, default_value_t = PolicyArg::Fixed)]
    policy: PolicyArg,
    #[arg(long, value_enum, default_value_t)]
    format: Format,
    /// The domain XML.
    file: PathBuf,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum PolicyArg {
    Fixed,
    Legacy,
}

impl From<PolicyArg> for Policy {
    fn from(p: PolicyArg) -> Policy {
        match p {
            PolicyArg::Fixed => Policy::Fixed,
            PolicyArg::Legacy => Policy::Legacy,
        }
    }
}

pub fn run(args: PlanArgs) -> Result<Outcome, CliError> {
    let name = args.file.display().to_string();
    let text = std::fs::read_to_string(&args.file).map_err(|source| CliError::CannotRead {
        path: args.file.clone(),
        source,
    })?;
    let host = match &args.host {
        Some(listing) => crate::host::reported_host::host_view(listing)?,
        None => read_host_view(&args.sysfs)?,
    };
    let checked = check_text(&name, &text);
    let result = if checked.has_errors() {
        Err(checked.diagnostics)
    } else {
        plan(&checked.domain, &host, args.policy.into())
    };
    Ok(match (result, args.format) {
        (Ok(plan), Format::Json) => {
            for w in &plan.warnings {
                eprintln!("{w}");
            }
            println!(
                "{}",
                serde_json::to_string_pretty(&plan).expect("plan serializes")
            );
            Outcome::Clean
        }
        (Ok(plan), Format::Text) => {
            for w in &plan.warnings {
                eprintln!("{w}");
            }
            print!("{}", render_plan_text(&plan));
            Outcome::Clean
        }
        (Err(diagnostics), Format::Json) => {
            let out = serde_json::json!({ "diagnostics": diagnostics });
            println!(
                "{}",
                serde_json::to_string_pretty(&out).expect("diagnostics serialize")
            );
            Outcome::Failed
        }
        (Err(diagnostics), Format::Text) => {
            print_diagnostics(&diagnostics, Format::Text);
            Outcome::Failed
        }
    })
}
