//! `mflab diagnose REPORT`: a pasted bug report to a verdict, a fixed XML
//! and, with `--replay`, a proof in the lab.

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use lab::diagnose::{diagnose, render, Diagnosis};

use super::run::BackendArg;
use super::{CliError, Outcome};
use crate::host::replay;

#[derive(Args)]
pub struct DiagnoseArgs {
    /// The report as pasted (a forum post, a mail, an issue): prose, the
    /// error, the IOMMU groups, `lspci -nnk`, `ip -br addr`, `findmnt /`
    /// and the domain XML or its <hostdev>s, in any order. `-` reads stdin.
    report: PathBuf,
    /// Rebuild the reporter's groups in a lab VM and run the XML as posted
    /// (it must fail with the reported error) and the fixed one (L2 must
    /// see exactly the assigned functions, every driver restored).
    #[arg(long)]
    replay: bool,
    /// Who carries the domain out in L1 for --replay.
    #[arg(long, value_enum, default_value_t = BackendArg::Both, requires = "replay")]
    backend: BackendArg,
    /// Keep the replay's scenario directory (it is kept anyway when a run fails).
    #[arg(long, requires = "replay")]
    keep: bool,
    /// Write the fixed XML (whole) to this file, when there is one.
    #[arg(long)]
    fixed_xml: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t)]
    format: DiagnoseFormat,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum DiagnoseFormat {
    /// For a terminal.
    #[default]
    Text,
    /// For tools: groups[], rules, fixed_xml, warnings[], replay[].
    Json,
    /// To paste back into the thread.
    Markdown,
}

/// Exit 0 when the XML passes as posted (and a replay held), 1 when it
/// needs the fix or cannot be fixed (or a replay did not hold), 2 when
/// the report cannot be read.
pub fn run(args: DiagnoseArgs) -> Result<Outcome, CliError> {
    let (name, text) = read_report(&args.report)?;
    let mut diagnosis = diagnose(&name, &text);
    if args.replay {
        match replay::replay(&diagnosis, &args.backend.backends(), args.keep) {
            Ok(runs) => diagnosis.replay = runs,
            Err(e) => {
                // The verdict without its proof, then why the proof is missing.
                print(&diagnosis, args.format);
                return Err(e.into());
            }
        }
    }
    print(&diagnosis, args.format);
    if let (Some(path), Some(fixed)) = (&args.fixed_xml, &diagnosis.fixed_xml) {
        std::fs::write(path, format!("{fixed}\n")).map_err(|source| CliError::CannotWrite {
            path: path.clone(),
            source,
        })?;
    }
    Ok(outcome(&diagnosis))
}

fn read_report(path: &std::path::Path) -> Result<(String, String), CliError> {
    if path.as_os_str() == "-" {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text).map_err(CliError::Stdin)?;
        return Ok(("<stdin>".into(), text));
    }
    let bytes = std::fs::read(path).map_err(|source| CliError::CannotRead {
        path: path.to_path_buf(),
        source,
    })?;
    // Pastes come from browsers and mail clients: take what is not UTF-8 as
    // replacement characters rather than refuse the report.
    Ok((
        path.display().to_string(),
        String::from_utf8_lossy(&bytes).into_owned(),
    ))
}

fn print(d: &Diagnosis, format: DiagnoseFormat) {
    match format {
        DiagnoseFormat::Text => print!("{}", render::text(d)),
        DiagnoseFormat::Markdown => print!("{}", render::markdown(d)),
        DiagnoseFormat::Json => println!(
            "{}",
            serde_json::to_string_pretty(d).expect("a diagnosis serializes")
        ),
    }
}

fn outcome(d: &Diagnosis) -> Outcome {
    // The printed diagnosis warns that the paste has no XML to judge.
    if d.posted_xml.is_none() {
        return Outcome::UsageOrIo;
    }
    let replay_held = d.replay.iter().all(|r| r.passed);
    if d.passes && replay_held {
        Outcome::Clean
    } else {
        Outcome::Failed
    }
}
