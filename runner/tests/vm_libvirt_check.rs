//! `mflab check --backend libvirt` on every rule case: a real libvirt
//! daemon (in one lab VM for all cases) must give the verdict written in
//! `scenarios/rules/<case>.libvirt` ("accepted", or "rejected: " and a
//! part of libvirt's message). Each case is `libvirt-check::<case>`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use libtest_mimic::{Arguments, Failed, Trial};

type Verdicts = Result<BTreeMap<String, serde_json::Value>, String>;
static VERDICTS: OnceLock<Verdicts> = OnceLock::new();

fn cases() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/rules");
    let mut xml: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "xml"))
        .collect();
    xml.sort();
    xml
}

/// One `mflab check --backend libvirt` over all cases, shared by the trials.
fn verdicts() -> &'static Verdicts {
    VERDICTS.get_or_init(|| {
        let out = Command::new(env!("CARGO_BIN_EXE_mflab"))
            .args(["check", "--backend", "libvirt", "--format", "json"])
            .args(cases())
            .output()
            .map_err(|e| e.to_string())?;
        let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout)
            .map_err(|e| format!("{e}: {}", String::from_utf8_lossy(&out.stderr)))?;
        Ok(rows
            .into_iter()
            .map(|r| (r["file"].as_str().unwrap_or_default().to_string(), r))
            .collect())
    })
}

fn main() -> std::process::ExitCode {
    let args = Arguments::from_args();
    let trials = cases()
        .into_iter()
        .map(|xml| {
            let name = format!(
                "libvirt-check::{}",
                xml.file_stem().unwrap().to_string_lossy()
            );
            Trial::test(name, move || check(&xml))
        })
        .collect();
    libtest_mimic::run(&args, trials).exit_code()
}

fn check(xml: &Path) -> Result<(), Failed> {
    let expected_file = xml.with_extension("libvirt");
    let expected = std::fs::read_to_string(&expected_file)
        .map_err(|e| format!("{}: {e}", expected_file.display()))?;
    let expected = expected.trim();
    let all = verdicts().as_ref().map_err(|e| e.clone())?;
    let row = all
        .get(&xml.display().to_string())
        .ok_or("no verdict for this file")?;
    let verdict = &row["libvirt"];
    let accepted = verdict["accepted"].as_bool().unwrap_or(false);
    let message = verdict["message"].as_str().unwrap_or_default();
    let holds = match expected.strip_prefix("rejected: ") {
        Some(part) => !accepted && message.contains(part),
        None => expected == "accepted" && accepted,
    };
    if holds {
        Ok(())
    } else {
        Err(format!(
            "expected libvirt to say: {expected}\nlibvirt said: {}",
            if accepted {
                "accepted".into()
            } else {
                format!("rejected: {message}")
            }
        )
        .into())
    }
}
