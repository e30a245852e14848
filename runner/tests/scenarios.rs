//! The regression suite: every `scenarios/*.toml` is its own test,
//! `scenario::<name>` (and `scenario::<name>::libvirt` for each scenario
//! that lists the libvirt backend), so that filtering and `--list` work.
//!
//! The selected scenarios run in one `mflab run --format json`, the way a
//! user runs the suite: one L1 per topology shared by its scenarios. Each
//! trial then reports its own scenario. VM scenarios boot real L1s and
//! L2s; when QEMU or the kernel is missing they fail, they never skip.
//!
//! `MFLAB_PARTITION=K/N` keeps share K of N (the split of `mflab run
//! --partition`). The runs outside it are left out of the trials, not
//! marked ignored: an ignored trial would run under `--include-ignored`
//! (and fail, since `mflab run` was not given its file), while a left-out
//! one neither runs nor counts as passed under any flag.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use lab::partition::Partition;
use libtest_mimic::{Arguments, Failed, Trial};
use mflab::host::scenario::load;
use mflab::host::topology::BUILTIN;

struct Run {
    file: PathBuf,
    backend: String,
    name: String,
}

type Results = Result<BTreeMap<(String, String), serde_json::Value>, String>;
static RESULTS: OnceLock<Results> = OnceLock::new();

fn main() -> std::process::ExitCode {
    let args = Arguments::from_args();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("scenarios/")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 15,
        "the suite has shrunk: {} scenarios",
        files.len()
    );

    let known: Vec<&str> = BUILTIN.iter().map(|(n, _)| *n).collect();
    let mut runs = Vec::new();
    for f in files {
        let stem = f.file_stem().unwrap().to_string_lossy().into_owned();
        let scenario = load(&f, &known).unwrap_or_else(|e| panic!("{e}"));
        let backends: Vec<String> = scenario.backends.iter().map(|b| b.to_string()).collect();
        for backend in backends {
            let name = if backend == "mflab" {
                format!("scenario::{stem}")
            } else {
                format!("scenario::{stem}::{backend}")
            };
            runs.push(Run {
                file: f.clone(),
                backend,
                name,
            });
        }
    }
    if let Some(partition) = partition() {
        let all = runs.len();
        runs.retain(|r| {
            let stem = r.file.file_stem().unwrap().to_string_lossy();
            partition.contains(&stem, &r.backend)
        });
        eprintln!("MFLAB_PARTITION={partition}: {} of {all} runs", runs.len());
    }
    // What libtest-mimic will run: the same filter rules (substring, or --exact; --skip).
    let selected: Vec<&Run> = runs
        .iter()
        .filter(|r| is_selected(&args, &r.name))
        .collect();
    let selected_files: Vec<PathBuf> = {
        let mut f: Vec<PathBuf> = selected.iter().map(|r| r.file.clone()).collect();
        f.dedup();
        f
    };
    let trials = runs
        .iter()
        .map(|r| {
            let files = selected_files.clone();
            let key = (
                r.file.file_stem().unwrap().to_string_lossy().into_owned(),
                r.backend.clone(),
            );
            Trial::test(r.name.clone(), move || check(&files, &key))
        })
        .collect();
    let conclusion = libtest_mimic::run(&args, trials);
    print_lab_notes();
    conclusion.exit_code()
}

/// A pass after a retry is still a pass, but a CI log should show what the
/// lab had to do (a fresh L1 after its own failure) so that a rising rate
/// is seen before it turns into failures.
fn print_lab_notes() {
    let Some(Ok(all)) = RESULTS.get() else {
        return;
    };
    for ((scenario, backend), report) in all {
        for note in report["notes"].as_array().into_iter().flatten() {
            println!(
                "lab note: {scenario} ({backend}): {}",
                note.as_str().unwrap_or_default()
            );
        }
    }
}

/// `MFLAB_PARTITION`, if set; a bad value stops the harness with the reason.
fn partition() -> Option<Partition> {
    let value = std::env::var("MFLAB_PARTITION").ok()?;
    match value.parse() {
        Ok(p) => Some(p),
        Err(e) => {
            eprintln!("MFLAB_PARTITION: {e}");
            std::process::exit(2);
        }
    }
}

fn is_selected(args: &Arguments, name: &str) -> bool {
    if args.list {
        return false;
    }
    let matches = |f: &String| {
        if args.exact {
            name == f
        } else {
            name.contains(f.as_str())
        }
    };
    args.filter.as_ref().is_none_or(matches) && !args.skip.iter().any(matches)
}

/// Runs every selected scenario once, under the backends each declares.
fn results(files: &[PathBuf]) -> &'static Results {
    RESULTS.get_or_init(|| {
        // `mflab run` inherits MFLAB_PARTITION and so keeps, of these
        // files, exactly the runs (scenario, backend) in this share.
        let out = Command::new(env!("CARGO_BIN_EXE_mflab"))
            .args(["run", "--format", "json"])
            .args(files)
            .output()
            .map_err(|e| e.to_string())?;
        let reports: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).map_err(|e| {
            format!(
                "mflab run printed no JSON ({e}); stderr:\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        })?;
        Ok(reports
            .into_iter()
            .map(|r| {
                (
                    (
                        r["scenario"].as_str().unwrap_or_default().to_string(),
                        r["backend"].as_str().unwrap_or_default().to_string(),
                    ),
                    r,
                )
            })
            .collect())
    })
}

fn check(files: &[PathBuf], key: &(String, String)) -> Result<(), Failed> {
    let all = results(files).as_ref().map_err(|e| e.clone())?;
    let report = all
        .get(key)
        .ok_or_else(|| format!("mflab run reported nothing for {key:?}"))?;
    if report["passed"].as_bool() == Some(true) {
        return Ok(());
    }
    let mismatches: Vec<&str> = report["mismatches"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m.as_str())
        .collect();
    Err(format!(
        "{}\nfailure: {}\nwork directory: {}",
        mismatches.join("\n"),
        report["error"].as_str().unwrap_or("none"),
        report["work_dir"].as_str().unwrap_or("(removed)")
    )
    .into())
}
