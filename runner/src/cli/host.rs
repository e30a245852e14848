//! `mflab host LISTING`: the L1 topology mflab builds from a reporter's
//! pasted PCI listing, as a topology file (the host map in its comments),
//! or with `--format json` the topology's groups and the host map.

use std::path::PathBuf;

use clap::Args;
use serde_json::json;

use super::{CliError, Format, Outcome};
use crate::host::reported_host::LabHost;

#[derive(Args)]
pub struct HostArgs {
    /// The listing: the IOMMU group loop's output, `lspci -nn`, or `virsh nodedev-dumpxml`.
    listing: PathBuf,
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

pub fn run(args: HostArgs) -> Result<Outcome, CliError> {
    let lab = LabHost::load(&args.listing).map_err(CliError::BadListing)?;
    match args.format {
        Format::Text => print!("{}", lab.to_toml()),
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "topology": lab.topology.name,
                "expect_groups": lab.topology.expect_groups,
                "host_map": lab.map,
                "notes": lab.bridge_notes,
            }))
            .expect("serializes")
        ),
    }
    Ok(Outcome::Clean)
}
