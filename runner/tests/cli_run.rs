//! `mflab run` and `mflab clean` without a VM: a rules-depth scenario
//! repeated, and the directories a killed runner left (faked in a temp dir
//! of the test's own).

use std::path::Path;
use std::process::Command;

const RULES_SCENARIO: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../scenarios/rules-contradiction.toml"
);

/// Above the kernel's pid_max (2^22): never a live process.
const DEAD_PID: &str = "5000000 1\n";

fn mflab(tmpdir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_mflab"))
        .env("TMPDIR", tmpdir)
        .args(args)
        .output()
        .expect("mflab runs")
}

fn leftover(tmpdir: &Path, name: &str, kept: bool) -> std::path::PathBuf {
    let dir = tmpdir.join(name);
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("owner.pid"), DEAD_PID).unwrap();
    if kept {
        std::fs::write(dir.join("kept"), "").unwrap();
    }
    dir
}

#[test]
fn repeated_runs_are_told_apart_in_json_and_summed_up_in_text() {
    let tmp = tempfile::tempdir().unwrap();
    let out = mflab(
        tmp.path(),
        &["run", "--repeat", "3", "--format", "json", RULES_SCENARIO],
    );
    assert_eq!(out.status.code(), Some(0));
    let list: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let rounds: Vec<(&str, u64)> = list
        .iter()
        .map(|r| {
            (
                r["scenario"].as_str().unwrap(),
                r["repeat"].as_u64().unwrap(),
            )
        })
        .collect();
    let name = "rules-contradiction";
    assert_eq!(rounds, [(name, 1), (name, 2), (name, 3)]);

    let out = mflab(tmp.path(), &["run", "--repeat", "2", RULES_SCENARIO]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("PASS rules-contradiction #2 "), "{stdout}");
    assert!(
        stdout.contains("summary: 2 run(s): 2 passed, 0 failed (system under test)"),
        "{stdout}"
    );
    assert!(stdout.contains("lab faults: none"), "{stdout}");
}

#[test]
fn a_run_removes_what_killed_runners_left_and_clean_kept_removes_the_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let unkept = leftover(tmp.path(), "mflab-l1-killed", false);
    let kept = leftover(tmp.path(), "mflab-run-failed", true);
    let older = tmp.path().join("mflab-run-older-build");
    std::fs::create_dir(&older).unwrap();

    let out = mflab(tmp.path(), &["run", RULES_SCENARIO]);
    assert_eq!(out.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("removed {}", unkept.display())),
        "{stderr}"
    );
    assert!(!unkept.exists());
    assert!(
        kept.exists(),
        "a kept directory waits for mflab clean --kept"
    );

    let out = mflab(tmp.path(), &["clean"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("kept {}", kept.display())),
        "{stdout}"
    );
    assert!(kept.exists());

    let out = mflab(tmp.path(), &["clean", "--kept"]);
    assert_eq!(out.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("removed {}", kept.display())),
        "{stdout}"
    );
    assert!(!kept.exists());
    assert!(older.exists(), "no owner file: not mflab's to judge");
}
