//! What `mflab run` and `mflab boot` leave in the temp dir when they are
//! stopped: nothing after Ctrl-C (exit 130, no QEMU left); after SIGKILL
//! a run's directories (QEMU dies with it), which `mflab clean` then
//! removes. Boots real L1s, one at a time, each run with
//! a temp dir of its own so that other tests' directories do not count.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SCENARIO: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../scenarios/gpu-audio-plan-depth.toml"
);

mod common;

fn mflab(tmpdir: &Path) -> Command {
    let mut cmd = common::mflab();
    cmd.env("TMPDIR", tmpdir);
    cmd
}

fn start_run(tmpdir: &Path) -> Child {
    mflab(tmpdir)
        .args(["run", SCENARIO])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mflab runs")
}

fn mflab_dirs(tmpdir: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(tmpdir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("mflab-"))
        .map(|e| e.path())
        .collect();
    dirs.sort();
    dirs
}

fn qemus_mentioning(text: &str) -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains(text) && c.contains("qemu"))
        .count()
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

/// The L1 directory, once its QEMU runs (its command line names it).
fn wait_for_l1(tmpdir: &Path) -> PathBuf {
    let mut l1 = None;
    wait_for("L1's QEMU to start", || {
        l1 = mflab_dirs(tmpdir)
            .into_iter()
            .find(|d| d.to_string_lossy().contains("mflab-l1-"));
        l1.is_some() && qemus_mentioning(tmpdir.to_str().unwrap()) > 0
    });
    l1.unwrap()
}

#[test]
fn ctrl_c_leaves_nothing_and_clean_removes_what_sigkill_left() {
    // Ctrl-C while L1 boots: exit 130, no QEMU, no directory.
    let tmp = tempfile::tempdir().unwrap();
    let child = start_run(tmp.path());
    wait_for_l1(tmp.path());
    std::thread::sleep(Duration::from_secs(2));
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(130),
        "after Ctrl-C; stderr:\n{stderr}"
    );
    assert!(stderr.contains("work directories removed"), "{stderr}");
    wait_for("QEMU to be gone", || {
        qemus_mentioning(tmp.path().to_str().unwrap()) == 0
    });
    assert_eq!(mflab_dirs(tmp.path()), Vec::<PathBuf>::new());

    // SIGKILL: the runner cannot clean up; QEMU dies with it, the
    // directories stay until `mflab clean`.
    let tmp = tempfile::tempdir().unwrap();
    let mut child = start_run(tmp.path());
    let l1 = wait_for_l1(tmp.path());
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    child.wait().unwrap();
    wait_for("QEMU to die with its runner", || {
        qemus_mentioning(tmp.path().to_str().unwrap()) == 0
    });
    let left = mflab_dirs(tmp.path());
    assert!(left.contains(&l1), "{left:?}");
    let out = mflab(tmp.path()).arg("clean").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    for dir in &left {
        assert!(
            stdout.contains(&format!("removed {}", dir.display())),
            "{stdout}"
        );
    }
    assert_eq!(mflab_dirs(tmp.path()), Vec::<PathBuf>::new());
}

/// `mflab boot` too: Ctrl-C while L1 boots exits 130 and leaves no QEMU
/// and nothing in the temp dir.
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
    wait_for("L1's QEMU to start", || qemus_mentioning(&tmpdir) > 0);
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "exit status after Ctrl-C");
    wait_for("QEMU to be gone", || qemus_mentioning(&tmpdir) == 0);
    let left: Vec<_> = std::fs::read_dir(Path::new(&tmpdir))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}
