//! `mflab restore JOURNAL`: give back the functions a killed run left on vfio-pci.

use std::path::PathBuf;

use clap::Args;
use lab::assign::bind::restore_from_journal;

use super::{CliError, Outcome};

#[derive(Args)]
pub struct RestoreArgs {
    /// The journal the run wrote (its path is printed when a run is kept or killed).
    journal: PathBuf,
}

pub fn run(args: RestoreArgs) -> Result<Outcome, CliError> {
    let entries = restore_from_journal(&args.journal).map_err(CliError::Restore)?;
    for e in entries {
        println!(
            "{} -> {}",
            e.host,
            e.driver.as_deref().unwrap_or("no driver")
        );
    }
    Ok(Outcome::Clean)
}
