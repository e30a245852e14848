//! `mflab report --compare LABEL=FILE …`: runs of `mflab run --format
//! json`, or verdicts of `mflab check --backend libvirt --format json`,
//! side by side (libvirt versions, say), as a Markdown table.

use std::path::PathBuf;

use clap::Args;

use super::{CliError, Outcome};
use crate::host::report::compare::{table, Compared};

#[derive(Args)]
pub struct ReportArgs {
    /// Runs to set side by side, each `LABEL=FILE` (the JSON of `mflab run
    /// --format json`, or of `mflab check --backend libvirt --format
    /// json`), at least two: `"libvirt 9.0"=host.json "libvirt 11.3"=d13.json`.
    #[arg(long, required = true, num_args = 2.., value_name = "LABEL=FILE", value_parser = parse_column)]
    compare: Vec<(String, PathBuf)>,
    /// Rows where every run did the same too.
    #[arg(long)]
    all: bool,
}

/// A `--compare` word that is not `LABEL=FILE`.
#[derive(Debug, thiserror::Error)]
#[error("'{0}': write LABEL=FILE, e.g. \"libvirt 9.0\"=host.json")]
pub struct NotAColumn(String);

fn parse_column(s: &str) -> Result<(String, PathBuf), NotAColumn> {
    match s.split_once('=') {
        Some((label, file)) if !label.is_empty() && !file.is_empty() => {
            Ok((label.to_string(), PathBuf::from(file)))
        }
        _ => Err(NotAColumn(s.to_string())),
    }
}

pub fn run(args: ReportArgs) -> Result<Outcome, CliError> {
    let mut columns = Vec::new();
    let mut heading = "scenario";
    for (label, file) in args.compare {
        let text = std::fs::read_to_string(&file).map_err(|source| CliError::File {
            path: file.clone(),
            source,
        })?;
        let compared =
            Compared::parse(&text).map_err(|source| CliError::NotRuns { path: file, source })?;
        heading = compared.row_heading();
        columns.push(compared.column(&label));
    }
    print!("{}", table(heading, &columns, args.all));
    Ok(Outcome::Clean)
}
