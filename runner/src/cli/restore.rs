//! `mflab restore JOURNAL`: give back the functions a killed run left on vfio-pci.

use std::path::PathBuf;

use clap::Args;
use lab::assign::bind::restore_from_journal;

use super::Outcome;

#[derive(Args)]
pub struct RestoreArgs {
    /// The journal the run wrote (its path is printed when a run is kept or killed).
    journal: PathBuf,
}

pub fn run(args: RestoreArgs) -> Outcome {
    match restore_from_journal(&args.journal) {
        Ok(entries) => {
            for e in entries {
                println!(
                    "{} -> {}",
                    e.host,
                    e.driver.as_deref().unwrap_or("no driver")
                );
            }
            Outcome::Clean
        }
        Err(e) => {
            eprintln!("mflab: restore failed: {e}");
            Outcome::Failed
        }
    }
}
