//! Ctrl-C while L1 runs: the runner exits 130, no QEMU it started is left,
//! and its work directory is gone. Boots a real L1.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

fn processes_mentioning(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if cmdline.contains(text) && cmdline.contains("qemu") {
                found.push(cmdline);
            }
        }
    }
    found
}

fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn ctrl_c_during_boot_leaves_no_qemu_and_no_work_dir() {
    let tmp = tempfile::tempdir().unwrap();
    let tmpdir = tmp.path().to_str().unwrap().to_string();
    let mut child = Command::new(env!("CARGO_BIN_EXE_mflab"))
        .args(["boot", "--topology", "gpu-audio"])
        .env("TMPDIR", &tmpdir)
        .spawn()
        .unwrap();
    // Wait until L1's QEMU runs (its command line names the work directory).
    wait_for("L1's QEMU to start", || {
        !processes_mentioning(&tmpdir).is_empty()
    });
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "exit status after Ctrl-C");
    wait_for("QEMU to be gone", || {
        processes_mentioning(&tmpdir).is_empty()
    });
    let left: Vec<_> = std::fs::read_dir(Path::new(&tmpdir))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}
