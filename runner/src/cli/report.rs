//! `mflab report --compare LABEL=FILE …`: runs of `mflab run --format
//! json` side by side (libvirt versions, say), as a Markdown table.

use std::path::PathBuf;

use clap::Args;

use super::Outcome;
use crate::host::report::compare::{table, Column};
use crate::host::report::json::RunRecord;

#[derive(Args)]
pub struct ReportArgs {
    /// Runs to set side by side, each `LABEL=FILE` (the JSON of `mflab run
    /// --format json`), at least two: `"libvirt 9.0"=host.json "libvirt 11.3"=d13.json`.
    #[arg(long, required = true, num_args = 2.., value_name = "LABEL=FILE", value_parser = parse_column)]
    compare: Vec<(String, PathBuf)>,
    /// Rows where every run did the same too.
    #[arg(long)]
    all: bool,
}

fn parse_column(s: &str) -> Result<(String, PathBuf), String> {
    match s.split_once('=') {
        Some((label, file)) if !label.is_empty() && !file.is_empty() => {
            Ok((label.to_string(), PathBuf::from(file)))
        }
        _ => Err(format!(
            "'{s}': write LABEL=FILE, e.g. \"libvirt 9.0\"=host.json"
        )),
    }
}

pub fn run(args: ReportArgs) -> Outcome {
    let mut columns = Vec::new();
    for (label, file) in args.compare {
        let text = match std::fs::read_to_string(&file) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("mflab: {}: {e}", file.display());
                return Outcome::UsageOrIo;
            }
        };
        match serde_json::from_str::<Vec<RunRecord>>(&text) {
            Ok(runs) => columns.push(Column { label, runs }),
            Err(e) => {
                eprintln!(
                    "mflab: {}:{}:{}: {e} (expected the output of `mflab run --format json`)",
                    file.display(),
                    e.line(),
                    e.column()
                );
                return Outcome::UsageOrIo;
            }
        }
    }
    print!("{}", table(&columns, args.all));
    Outcome::Clean
}
