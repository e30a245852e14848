//! `mflab check --backend libvirt`: mflab's rules beside the verdict of a
//! real libvirt daemon. libvirt runs inside a lab VM (L1), so the host's
//! own libvirt, if any, is never touched.

use std::path::{Path, PathBuf};
use std::time::Duration;

use lab::Diagnostic;

use super::{CliError, Format, Outcome};
use crate::host::images::{prepare_l1, proof_guest, ImageError};
use crate::host::l0_qemu::QemuError;
use crate::host::l1::boot::{boot, tail, BootError};
use crate::host::l1::cmdline::L1Config;
use crate::host::topology::TopologyError;
use crate::host::workdir::WorkDir;
use lab::machine::accel::probe;
use lab::protocol::paths::L1_SERIAL_LOG as SERIAL_LOG;
use lab::protocol::{CheckItem, LibvirtVerdict};

/// Why libvirt gave no verdicts.
#[derive(Debug, thiserror::Error)]
pub enum LibvirtCheckError {
    /// Ctrl-C or SIGTERM: QEMU is gone, and the work directory with it.
    #[error("interrupted")]
    Interrupted,
    #[error(transparent)]
    Images(#[from] ImageError),
    #[error(transparent)]
    Qemu(#[from] QemuError),
    #[error(transparent)]
    Topology(#[from] TopologyError),
    /// The work directory or the request in it.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Verdicts(#[from] serde_json::Error),
    /// L1 ended without verdicts: why, and the logs to read (kept).
    #[error(
        "{}\n--- L1 serial ---\n{serial}\n--- libvirtd.log ---\n{libvirtd}\nwork directory kept: {}",
        boot.as_ref().map_or("the agent wrote no verdicts".to_string(), ToString::to_string),
        kept.display()
    )]
    NoVerdicts {
        #[source]
        boot: Option<Box<BootError>>,
        serial: String,
        libvirtd: String,
        kept: PathBuf,
    },
}

pub fn run(
    items: &[CheckItem],
    mflab: &[Diagnostic],
    format: Format,
    libvirt_bin: Option<&Path>,
    io_failed: bool,
) -> Result<Outcome, CliError> {
    let verdicts = match libvirt_verdicts(items, libvirt_bin) {
        Ok(v) => v,
        Err(LibvirtCheckError::Interrupted) => {
            eprintln!("mflab: interrupted; QEMU stopped, work directory removed");
            return Ok(Outcome::Interrupted);
        }
        Err(e) => return Err(e.into()),
    };
    let rules_of = |file: &str| -> Vec<String> {
        mflab
            .iter()
            .filter(|d| d.file == file && d.is_error())
            .map(|d| d.rule.to_string())
            .collect()
    };
    match format {
        Format::Json => {
            let rows: Vec<serde_json::Value> = verdicts
                .iter()
                .map(|v| {
                    serde_json::json!({
                        "file": v.file,
                        "mflab": mflab.iter().filter(|d| d.file == v.file).collect::<Vec<_>>(),
                        "libvirt": { "accepted": v.accepted, "message": v.message },
                    })
                })
                .collect();
            println!(
                "{}",
                serde_json::to_string_pretty(&rows).expect("rows serialize")
            );
        }
        Format::Text => {
            for v in &verdicts {
                let rules = rules_of(&v.file);
                let mflab_says = if rules.is_empty() {
                    "accepted".to_string()
                } else {
                    format!("rejected ({})", rules.join(", "))
                };
                let libvirt_says = match &v.message {
                    None => "accepted".to_string(),
                    Some(m) => format!("rejected: {m}"),
                };
                let mark = if rules.is_empty() == v.accepted {
                    " "
                } else {
                    "*"
                };
                println!(
                    "{mark} {}\n    mflab:   {mflab_says}\n    libvirt: {libvirt_says}",
                    v.file
                );
            }
            let differ = verdicts
                .iter()
                .filter(|v| rules_of(&v.file).is_empty() != v.accepted)
                .count();
            println!(
                "{} files, {differ} where mflab and libvirt disagree (marked *)",
                verdicts.len()
            );
        }
    }
    Ok(if io_failed {
        Outcome::UsageOrIo
    } else if mflab.iter().any(Diagnostic::is_error) || verdicts.iter().any(|v| !v.accepted) {
        Outcome::Failed
    } else {
        Outcome::Clean
    })
}

fn libvirt_verdicts(
    items: &[CheckItem],
    libvirt_bin: Option<&Path>,
) -> Result<Vec<LibvirtVerdict>, LibvirtCheckError> {
    let images = prepare_l1()?;
    let accel = probe(&proof_guest(Some(&images)));
    crate::host::l0_qemu::choose_and_say(&accel)?;
    let topology = crate::host::topology::load("gpu-audio")?;
    let mut work = WorkDir::new("mflab-check-")?;
    std::fs::write(
        work.path().join("check-request.json"),
        serde_json::to_string(items).expect("items serialize"),
    )?;
    let bin = libvirt_bin
        .map(|b| format!(" --libvirt-bin {}", b.display()))
        .unwrap_or_default();
    let script = format!("exec /mflab/mflab agent libvirt-check --request /mflab/check-request.json --out /mflab/check-result.json{bin}\n");
    let config = L1Config::new(&topology, &images, &accel, work.path());
    let booted = boot(&config, &script, Duration::from_secs(600));
    let result = std::fs::read_to_string(work.path().join("check-result.json"));
    match (booted, result) {
        (Ok(_), Ok(text)) => Ok(serde_json::from_str(&text)?),
        // Ctrl-C: QEMU is gone; the work directory goes too.
        _ if crate::interrupt::interrupted() => Err(LibvirtCheckError::Interrupted),
        (booted, _) => Err(LibvirtCheckError::NoVerdicts {
            boot: booted.err().map(Box::new),
            serial: tail(&work.path().join(SERIAL_LOG), 15),
            libvirtd: tail(&work.path().join("libvirtd.log"), 10),
            kept: work.keep(),
        }),
    }
}
