//! The suite's results do not depend on scenario order or on how many L1s
//! run side by side: the whole suite (mflab backend) runs once with one job
//! in file order and once with two jobs in a shuffled order, on shared L1s
//! both times, and every scenario must come out the same. Boots real VMs.
//!
//! The seed changes from run to run and is printed: `mflab run --backend
//! mflab --jobs 2 --shuffle <seed>` replays a failing order.

use std::collections::BTreeMap;
use std::process::Command;

/// What a scenario's outcome is made of; timings, notes and work
/// directories are allowed to differ.
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

fn suite(extra: &[&str]) -> BTreeMap<String, serde_json::Value> {
    let out = Command::new(env!("CARGO_BIN_EXE_mflab"))
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .args(["run", "--backend", "mflab", "--format", "json"])
        .args(extra)
        .output()
        .expect("mflab runs");
    let reports: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "mflab run {extra:?} printed no JSON ({e}); stderr:\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    eprintln!("mflab run --backend mflab {}: done", extra.join(" "));
    reports
        .into_iter()
        .map(|r| {
            let name = r["scenario"].as_str().unwrap_or_default().to_string();
            let observed: serde_json::Map<String, serde_json::Value> = OBSERVED
                .iter()
                .map(|k| (k.to_string(), r[*k].clone()))
                .collect();
            (name, serde_json::Value::Object(observed))
        })
        .collect()
}

#[test]
fn results_do_not_depend_on_order_or_jobs() {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let in_order = suite(&["--jobs", "1"]);
    let shuffled = suite(&["--jobs", "2", "--shuffle", &seed.to_string()]);
    assert!(
        in_order.len() >= 15,
        "only {} scenarios ran",
        in_order.len()
    );
    assert_eq!(
        in_order.keys().collect::<Vec<_>>(),
        shuffled.keys().collect::<Vec<_>>(),
        "the same scenarios ran (seed {seed})"
    );
    for (name, first) in &in_order {
        assert_eq!(
            first["passed"],
            serde_json::Value::Bool(true),
            "{name} failed in file order with one job: {first:#}"
        );
        assert_eq!(
            first, &shuffled[name],
            "{name} came out differently with --jobs 2 --shuffle {seed}"
        );
    }
}
