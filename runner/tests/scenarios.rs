//! The regression suite: every `scenarios/*.toml` is its own test,
//! `scenario::<name>` (and `scenario::<name>::libvirt` for each scenario
//! that lists the libvirt backend), so that filtering and `--list` work.
//!
//! The selected scenarios run in one `mflab run --format json`, the way a
//! user runs the suite: one L1 per topology shared by its scenarios. Each
//! trial then reports its own scenario. VM scenarios boot real L1s and
//! L2s; when QEMU or the kernel is missing they fail, they never skip.
//!
//! One more trial, `suite::same_results_in_any_order_and_jobs`, runs the
//! selected mflab-backend scenarios again with two jobs in a shuffled order
//! and requires every outcome to be the one of the run above: results must
//! not depend on order or on how many L1s run side by side. The seed changes
//! from run to run and is in its failure message; `mflab run --backend
//! mflab --jobs 2 --shuffle SEED` replays the order.
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

use lab::machine::partition::Partition;
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
/// The lab notes of the shuffled run, printed with the others at the end.
static SHUFFLED_NOTES: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

const ORDER_TRIAL: &str = "suite::same_results_in_any_order_and_jobs";

/// What a scenario's outcome is made of; timings, notes, repeat rounds
/// and work directories are allowed to differ between two runs.
const OBSERVED: &[&str] = &[
    "passed",
    "error",
    "mismatches",
    "plan",
    "l1_during",
    "l1_after",
    "restored",
    "l2_qmp",
    "l2_guest",
];

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
    let mut trials: Vec<Trial> = runs
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
    let mut mflab_files: Vec<PathBuf> = runs
        .iter()
        .filter(|r| r.backend == "mflab")
        .map(|r| r.file.clone())
        .collect();
    mflab_files.dedup();
    // Alone (`-- suite::`), the order trial runs the reference itself.
    let reference_files = if selected_files.is_empty() {
        mflab_files.clone()
    } else {
        selected_files.clone()
    };
    trials.push(Trial::test(ORDER_TRIAL, move || {
        same_in_any_order(&reference_files, &mflab_files)
    }));
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
    for note in SHUFFLED_NOTES.lock().expect("notes").iter() {
        println!("lab note: {note}");
    }
}

/// The order trial: the mflab-backend runs again with two jobs in a
/// shuffled order, each outcome the same as in the reference run.
fn same_in_any_order(reference_files: &[PathBuf], mflab_files: &[PathBuf]) -> Result<(), Failed> {
    let reference = results(reference_files).as_ref().map_err(|e| e.clone())?;
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let out = Command::new(env!("CARGO_BIN_EXE_mflab"))
        .args([
            "run",
            "--backend",
            "mflab",
            "--format",
            "json",
            "--jobs",
            "2",
        ])
        .args(["--shuffle", &seed.to_string()])
        .args(mflab_files)
        .output()?;
    let shuffled: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).map_err(|e| {
        format!(
            "mflab run --jobs 2 --shuffle {seed} printed no JSON ({e}); stderr:\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    if shuffled.len() < 15 {
        return Err(format!("only {} scenarios ran shuffled", shuffled.len()).into());
    }
    let observed = |r: &serde_json::Value| -> serde_json::Value {
        OBSERVED
            .iter()
            .map(|k| (k.to_string(), r[*k].clone()))
            .collect()
    };
    for r in &shuffled {
        let name = r["scenario"].as_str().unwrap_or_default().to_string();
        for note in r["notes"].as_array().into_iter().flatten() {
            SHUFFLED_NOTES.lock().expect("notes").push(format!(
                "{name} (mflab, shuffled): {}",
                note.as_str().unwrap_or_default()
            ));
        }
        let first = reference
            .get(&(name.clone(), "mflab".to_string()))
            .ok_or_else(|| format!("{name} ran shuffled but not in the reference run"))?;
        if observed(first) != observed(r) {
            return Err(format!(
                "{name} came out differently with --jobs 2 --shuffle {seed}:\nfirst: {:#}\nshuffled: {:#}",
                observed(first),
                observed(r)
            )
            .into());
        }
    }
    Ok(())
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
    // A run that failed for the lab's reason says so, and which fault.
    let lab_fault = match report["lab_fault"].as_object() {
        Some(f) => format!(
            "\nlab fault, no retry left: {}: {}",
            f["kind"].as_str().unwrap_or_default(),
            f["detail"].as_str().unwrap_or_default()
        ),
        None => String::new(),
    };
    Err(format!(
        "{}\nfailure: {}{lab_fault}\nwork directory: {}",
        mismatches.join("\n"),
        report["error"].as_str().unwrap_or("none"),
        report["work_dir"].as_str().unwrap_or("(removed)")
    )
    .into())
}
