//! What more than one test binary shares: the `mflab` command as a test
//! runs it, and what the VM tests read of `mflab run --format json`. Each
//! test binary uses a part of it.
#![allow(dead_code)]

use std::process::{Command, Output};

/// `mflab` as a test runs it: this build's binary, started from the
/// repository's root, with plain progress lines on stderr.
pub fn mflab() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mflab"));
    cmd.current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .env("MFLAB_NO_PROGRESS", "1");
    cmd
}

/// `mflab ARGS`, run to its end.
pub fn output(args: &[&str]) -> Output {
    mflab().args(args).output().expect("mflab runs")
}

/// The outcomes `mflab run --format json --backend both` printed, one
/// line each on stdout (`detail` adds what the test is about), after
/// asserting that every run passed and that there is one run per
/// scenario and backend. `what` names the run in a failure.
pub fn all_passed(
    out: &Output,
    scenarios: usize,
    what: &str,
    detail: impl Fn(&serde_json::Value) -> String,
) -> Vec<serde_json::Value> {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let outcomes: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("mflab run printed no JSON ({e}); stderr:\n{stderr}"));
    for o in &outcomes {
        println!(
            "{} {} [{}] {:.1}s, {}",
            if o["passed"] == true { "PASS" } else { "FAIL" },
            o["scenario"].as_str().unwrap_or("?"),
            o["backend"].as_str().unwrap_or("?"),
            o["seconds"].as_f64().unwrap_or(0.0),
            detail(o),
        );
    }
    let failed: Vec<String> = outcomes
        .iter()
        .filter(|o| o["passed"] != true)
        .map(|o| format!("{} [{}]: {}", o["scenario"], o["backend"], o))
        .collect();
    assert!(
        failed.is_empty() && out.status.success(),
        "{what} ({}): failed:\n{}\nstderr:\n{stderr}",
        out.status,
        failed.join("\n")
    );
    assert_eq!(
        outcomes.len(),
        2 * scenarios,
        "one run per scenario and backend"
    );
    outcomes
}
