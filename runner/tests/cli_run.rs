//! `mflab run` and `mflab clean` without a VM: a rules-depth scenario
//! repeated, and the directories a killed runner left (faked in a temp dir
//! of the test's own).

use std::path::Path;

const RULES_SCENARIO: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../scenarios/rules-contradiction.toml"
);

/// Above the kernel's pid_max (2^22): never a live process.
const DEAD_PID: &str = "5000000 1\n";

mod common;

fn mflab(tmpdir: &Path, args: &[&str]) -> std::process::Output {
    common::mflab()
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

#[test]
fn a_qemu_mflab_cannot_name_is_refused_with_what_to_write() {
    let tmp = tempfile::tempdir().unwrap();
    let out = mflab(tmp.path(), &["--qemu", "debian-99", "probe"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--qemu debian-99: write host, backports, debian-13, debian-testing, or a path to a qemu-system-x86_64 binary"),
        "{err}"
    );
    // A rules-depth run needs no QEMU: a path that runs nothing does not stop it.
    let out = mflab(
        tmp.path(),
        &[
            "--qemu",
            "/nonexistent/qemu-system-x86_64",
            "run",
            RULES_SCENARIO,
        ],
    );
    assert!(out.status.success(), "rules depth needs no QEMU: {out:?}");
}

#[test]
fn a_listing_cut_short_by_its_reader_ends_quietly() {
    let tmp = tempfile::tempdir().unwrap();
    let mut child = common::mflab()
        .env("TMPDIR", tmp.path())
        .args(["run", "--list"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Closing the pipe at once: every line after the first write fails.
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"));
}

#[test]
fn two_runs_side_by_side_and_a_file_that_is_no_run_named_with_its_place() {
    let tmp = tempfile::tempdir().unwrap();
    let out = mflab(tmp.path(), &["run", "--format", "json", RULES_SCENARIO]);
    assert!(out.status.success(), "{out:?}");
    let runs = tmp.path().join("runs.json");
    std::fs::write(&runs, &out.stdout).unwrap();
    let a = format!("first={}", runs.display());
    let b = format!("second={}", runs.display());
    let out = mflab(tmp.path(), &["report", "--compare", &a, &b, "--all"]);
    assert!(out.status.success(), "{out:?}");
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.starts_with("| scenario | first | second |\n|---|---|---|\n"),
        "{table}"
    );
    assert!(table.contains("| rules-contradiction | "), "{table}");
    // Without --all, two equal runs leave no row.
    let out = mflab(tmp.path(), &["report", "--compare", &a, &b]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 2);
    let bad = tmp.path().join("bad.json");
    std::fs::write(&bad, "[{\"scenario\": 1}]").unwrap();
    let out = mflab(
        tmp.path(),
        &["report", "--compare", &a, &format!("bad={}", bad.display())],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.json:1:")
            && err.contains("expected the output of `mflab run --format json`"),
        "{err}"
    );
    let out = mflab(tmp.path(), &["report", "--compare", "nolabel", &b]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("write LABEL=FILE"));
}
