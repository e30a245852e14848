//! `mflab diagnose --replay`: the reporter's groups rebuilt in L1 (as
//! `--host` rebuilds a listing), the XML as posted run the way libvirt
//! before partial assignment runs it, then the fixed XML, each on the
//! backends asked for.
//!
//! The replay is two scenario files in a temporary directory, run by
//! `mflab run DIR --format json` as a child process: the same runs, lab
//! fault retries and cleanup as any scenario, and one L1 per backend
//! shared by both XMLs.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use lab::diagnose::{Diagnosis, ReplayVerdict};
use lab::protocol::Backend;

use super::report::json::RunRecord;
use super::reported_host::{LabHost, LabHostError};
use super::suite::expect::assigned_view;

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error(transparent)]
    NotReplayable(#[from] lab::diagnose::NotReplayable),
    #[error("the XML as posted passes: there is no reported failure to reproduce")]
    NothingToReproduce,
    #[error("the lab cannot build the pasted host: {0}")]
    Build(#[from] LabHostError),
    #[error("the replay's files: {0}")]
    Files(#[source] std::io::Error),
    #[error("cannot start `mflab run`: {0}")]
    Spawn(#[source] std::io::Error),
    #[error("`mflab run` printed no report ({status}); its files are in {dir}")]
    NoReport { status: String, dir: PathBuf },
    #[error("the replay was interrupted")]
    Interrupted,
}

/// Runs the replay and judges each run.
pub fn replay(
    d: &Diagnosis,
    backends: &[Backend],
    keep: bool,
) -> Result<Vec<ReplayVerdict>, ReplayError> {
    let listing = d.lab_listing.clone()?;
    let posted = d
        .posted_xml
        .as_deref()
        .ok_or(lab::diagnose::NotReplayable::NoXml)?;
    if d.passes {
        return Err(ReplayError::NothingToReproduce);
    }
    let dir = tempfile::Builder::new()
        .prefix("mflab-diagnose-")
        .tempdir()
        .map_err(ReplayError::Files)?;
    let words = reported_words(d);
    write_files(
        dir.path(),
        &listing,
        posted,
        d.fixed_xml.as_deref(),
        &words,
        backends,
    )
    .map_err(ReplayError::Files)?;
    let lab = LabHost::load(&dir.path().join("host.txt"))?;

    let exe = std::env::current_exe().map_err(ReplayError::Spawn)?;
    let output = Command::new(exe)
        .arg("run")
        .arg(dir.path())
        .args(["--format", "json"])
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(ReplayError::Spawn)?;
    if crate::interrupt::interrupted() {
        return Err(ReplayError::Interrupted);
    }
    let records: Vec<RunRecord> = match serde_json::from_slice(&output.stdout) {
        Ok(r) => r,
        Err(_) => {
            return Err(ReplayError::NoReport {
                status: output.status.to_string(),
                dir: dir.keep(),
            })
        }
    };
    let assigned = assigned_lab_ids(d, &lab);
    let mut verdicts: Vec<ReplayVerdict> = records
        .iter()
        .map(|r| judge(r, &words, &assigned))
        .collect();
    // The reported XML first, as the story goes; then by backend.
    verdicts
        .sort_by(|a, b| (a.xml != "reported", &a.backend).cmp(&(b.xml != "reported", &b.backend)));
    if keep || verdicts.iter().any(|v| !v.passed) {
        let kept = dir.keep();
        eprintln!(
            "mflab: the replay's scenarios and listing are kept in {}",
            kept.display()
        );
    }
    Ok(verdicts)
}

/// The words the lab's error must have for the posted XML to count as
/// reproduced: the reported error's, else QEMU's for any group.
fn reported_words(d: &Diagnosis) -> String {
    d.errors
        .iter()
        .find(|e| e.group.is_some())
        .or(d.errors.first())
        .map_or_else(|| "is not viable".to_string(), |e| e.words())
}

fn write_files(
    dir: &Path,
    listing: &str,
    posted: &str,
    fixed: Option<&str>,
    words: &str,
    backends: &[Backend],
) -> std::io::Result<()> {
    let backends: Vec<String> = backends.iter().map(|b| format!("\"{b}\"")).collect();
    let backends = backends.join(", ");
    std::fs::write(dir.join("host.txt"), listing)?;
    std::fs::write(dir.join("reported.xml"), posted)?;
    std::fs::write(
        dir.join("reported.toml"),
        format!(
            "description = \"the reporter's XML as posted, run as libvirt without partial assignment runs it\"\n\
             host_file = \"host.txt\"\nxml_file = \"reported.xml\"\nbackends = [{backends}]\n\
             depth = \"guest\"\npolicy = \"legacy\"\n\n[expect]\nerror = {words:?}\n"
        ),
    )?;
    if let Some(fixed) = fixed {
        std::fs::write(dir.join("fixed.xml"), fixed)?;
        std::fs::write(
            dir.join("fixed.toml"),
            format!(
                "description = \"the fixed XML: the group's other functions declared unassigned\"\n\
                 host_file = \"host.txt\"\nxml_file = \"fixed.xml\"\nbackends = [{backends}]\n\
                 depth = \"guest\"\n"
            ),
        )?;
    }
    Ok(())
}

/// `vendor:device` of the lab's stand-ins for the functions the fixed XML
/// assigns, sorted: what L2 must see.
fn assigned_lab_ids(d: &Diagnosis, lab: &LabHost) -> Vec<String> {
    let mut ids: Vec<String> = d
        .groups
        .iter()
        .flat_map(|g| &g.members)
        .filter(|m| m.declared == lab::diagnose::verdict::Declared::Assigned)
        .filter_map(|m| lab.map.iter().find(|f| f.reported == m.address))
        .map(|f| f.lab_ids.clone())
        .collect();
    ids.sort();
    ids
}

fn judge(r: &RunRecord, words: &str, assigned: &[String]) -> ReplayVerdict {
    let fixed = r.scenario == "fixed";
    let l2_saw: Vec<String> = assigned_view(&r.l2_guest)
        .into_iter()
        .map(|k| k.split('@').next().unwrap_or_default().to_string())
        .collect();
    let versions = r
        .l1_versions
        .as_ref()
        .map_or_else(|| "L1 did not report its versions".into(), |v| v.describe());
    let versions = match &r.l0_qemu {
        Some(l0) => format!("{versions}; L1 on {l0}"),
        None => versions,
    };
    let libvirt = r
        .l1_versions
        .as_ref()
        .filter(|_| r.backend == Backend::Libvirt)
        .and_then(|v| v.libvirt_number().map(str::to_string));
    let faults = if r.lab_faults.is_empty() {
        String::new()
    } else {
        format!(" (after {} lab fault(s), retried)", r.lab_faults.len())
    };
    let (passed, reproduced, why) = if fixed {
        let mut sorted = l2_saw.clone();
        sorted.sort();
        let saw_assigned = sorted == assigned;
        let passed = r.passed && saw_assigned && r.error.is_none();
        let why = match (&r.error, saw_assigned, r.restored) {
            (Some(e), _, _) => format!("failed: {e}"),
            (None, false, _) => format!(
                "L2 saw [{}], expected [{}]",
                l2_saw.join(", "),
                assigned.join(", ")
            ),
            (None, true, false) => {
                "L2 saw the assigned functions, but a driver did not come back".into()
            }
            (None, true, true) if !r.passed => format!("did not hold: {}", r.mismatches.join("; ")),
            _ => format!(
                "passed: L2 saw {} and every driver came back",
                if l2_saw.is_empty() {
                    "nothing".into()
                } else {
                    l2_saw.join(", ")
                }
            ),
        };
        (passed, None, why + &faults)
    } else {
        let reproduced = r.error.as_deref().is_some_and(|e| e.contains(words));
        let why = match (&r.error, reproduced) {
            (Some(e), true) => format!("reproduced: {}", last_line(e)),
            (Some(e), false) => format!(
                "failed otherwise than reported ({words:?} expected): {}",
                last_line(e)
            ),
            (None, _) => "did not reproduce: the XML as posted ran".into(),
        };
        (reproduced && r.restored, Some(reproduced), why + &faults)
    };
    ReplayVerdict {
        xml: if fixed { "fixed" } else { "reported" }.into(),
        backend: r.backend.to_string(),
        libvirt,
        versions,
        passed,
        reproduced,
        error: r.error.clone(),
        l2_saw,
        why,
    }
}

/// The part of an error that says it: QEMU's `vfio 0000:01:00.0: group 1
/// is not viable`, without libvirt's and QEMU's prefixes (timestamp,
/// `-device {…}`), else the error's last line.
fn last_line(e: &str) -> &str {
    let line = e
        .lines()
        .rev()
        .find(|l| l.contains("not viable"))
        .or_else(|| e.lines().last())
        .unwrap_or(e)
        .trim();
    match line.rfind("vfio 0000:").or_else(|| line.rfind("vfio ")) {
        Some(at) => &line[at..],
        None => line,
    }
}
