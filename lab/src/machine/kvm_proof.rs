//! Proving that `-accel kvm` runs a guest: QEMU starts a 64 KiB BIOS whose
//! reset vector writes one byte to an `isa-debug-exit` port, so a vCPU
//! that executes anything makes QEMU exit at once with a known status. A
//! `/dev/kvm` that hangs its guests (a `kvm_pvm` module without vmx or
//! svm, as on some cloud machines) gives no exit within the deadline and
//! is killed.
//!
//! This is the effect; [`crate::machine::accel::decide`] takes its outcome as a fact.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;

/// What the test guest did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum KvmProof {
    /// It ran its instructions and QEMU exited as they asked, in `millis`.
    Ran { millis: u64 },
    /// No exit within the deadline: killed.
    Hung { after_secs: u64 },
    /// QEMU refused or failed (its own words).
    Failed { message: String },
}

impl KvmProof {
    pub fn ran(&self) -> bool {
        matches!(self, KvmProof::Ran { .. })
    }
}

impl std::fmt::Display for KvmProof {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KvmProof::Ran { millis } => {
                write!(f, "a test guest ran under -accel kvm ({millis} ms)")
            }
            KvmProof::Hung { after_secs } => write!(
                f,
                "a test guest under -accel kvm made no progress in {after_secs} s (killed)"
            ),
            KvmProof::Failed { message } => write!(
                f,
                "QEMU could not start a test guest under -accel kvm: {message}"
            ),
        }
    }
}

const DEBUG_EXIT_PORT: u8 = 0xf4;
const EXIT_VALUE: u8 = 0x2a;
/// isa-debug-exit makes QEMU exit with `(value << 1) | 1`.
const EXPECTED_STATUS: i32 = ((EXIT_VALUE as i32) << 1) | 1;

/// The BIOS: 64 KiB (QEMU wants a multiple of 64 KiB), all `hlt` but the
/// reset vector at 0xffff0: `mov al, 0x2a; out 0xf4, al; cli; hlt; jmp $-1`.
pub fn bios_image() -> Vec<u8> {
    let mut rom = vec![0xf4u8; 64 * 1024];
    let code = [
        0xb0,
        EXIT_VALUE,
        0xe6,
        DEBUG_EXIT_PORT,
        0xfa,
        0xf4,
        0xeb,
        0xfd,
    ];
    rom[0xfff0..0xfff0 + code.len()].copy_from_slice(&code);
    rom
}

/// The guest to prove with: the lab's own kernel with the floor initramfs
/// (its init powers off at once), or, with no kernel at hand, the BIOS
/// above. A kernel is the stronger proof: on these machines the BIOS runs
/// under `kvm_pvm` (85 in 0.13 s) while a kernel and SeaBIOS hang.
#[derive(Clone, Debug)]
pub enum ProofGuest {
    Kernel { kernel: PathBuf, initrd: PathBuf },
    Bios,
}

/// QEMU's arguments for the kernel guest on `accel`; it powers off (exit 0).
/// [`prove`] adds the debug console it watches.
pub fn kernel_args(kernel: &Path, initrd: &Path, accel: &str) -> Vec<String> {
    [
        "-nodefaults",
        "-display",
        "none",
        "-no-user-config",
        "-no-reboot",
        "-machine",
        &format!("q35,accel={accel}"),
        "-m",
        "256",
        "-kernel",
        &kernel.display().to_string(),
        "-initrd",
        &initrd.display().to_string(),
        "-append",
        "console=ttyS0 panic=-1 quiet",
    ]
    .map(str::to_string)
    .to_vec()
}

/// A file of this proof's own in the temp dir: proofs that run side by
/// side in one process (tests) must not share one.
fn scratch_file(ext: &str) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    std::env::temp_dir().join(format!("mflab-kvm-proof-{}-{n}.{ext}", std::process::id()))
}

/// QEMU's debug console (port 0x402, where SeaBIOS logs) into `log`.
pub fn debugcon_args(log: &Path) -> [String; 4] {
    [
        "-chardev".into(),
        format!("file,id=proofdbg,path={}", log.display()),
        "-device".into(),
        "isa-debugcon,iobase=0x402,chardev=proofdbg".into(),
    ]
}

/// QEMU's arguments for the BIOS guest on `accel`.
pub fn args(bios: &Path, accel: &str) -> Vec<String> {
    [
        "-nodefaults",
        "-display",
        "none",
        "-no-user-config",
        "-machine",
        &format!("pc,accel={accel}"),
        "-m",
        "16",
        "-bios",
        &bios.display().to_string(),
        "-device",
        &format!("isa-debug-exit,iobase={DEBUG_EXIT_PORT:#x},iosize=1"),
    ]
    .map(str::to_string)
    .to_vec()
}

/// How long a kernel guest that has shown signs of life (its firmware
/// speaks) may take to power off: on a KVM host that is itself an
/// emulated VM it takes a minute or more under load, where hardware KVM
/// takes well under a second.
pub const BOOT_LIMIT: Duration = Duration::from_secs(120);

/// Starts the test guest on `accel` with `qemu`: it must show progress
/// within `deadline` (the BIOS: exit; a kernel: a byte of its firmware's
/// log, then power-off within [`BOOT_LIMIT`]).
pub fn prove(qemu: &str, accel: &str, guest: &ProofGuest, deadline: Duration) -> KvmProof {
    match guest {
        ProofGuest::Kernel { kernel, initrd } => {
            // The sign of life: SeaBIOS's log on QEMU's debug console,
            // its first lines within a second of the vCPU's start (the
            // kernel stays quiet: every byte it printed on a serial port
            // cost milliseconds under nested KVM, a minute in all).
            let log = scratch_file("debugcon");
            let _ = std::fs::remove_file(&log);
            let mut args = kernel_args(kernel, initrd, accel);
            args.extend(debugcon_args(&log));
            let spoke = || std::fs::metadata(&log).is_ok_and(|m| m.len() > 0);
            let outcome = run(qemu, args, 0, deadline, &spoke);
            let _ = std::fs::remove_file(&log);
            outcome
        }
        ProofGuest::Bios => {
            let bios = scratch_file("rom");
            if let Err(e) = std::fs::write(&bios, bios_image()) {
                return KvmProof::Failed {
                    message: format!("{}: {e}", bios.display()),
                };
            }
            let outcome = run(qemu, args(&bios, accel), EXPECTED_STATUS, deadline, &|| {
                false
            });
            let _ = std::fs::remove_file(&bios);
            outcome
        }
    }
}

/// Waits for `expected` within `deadline`, or within [`BOOT_LIMIT`] once
/// `progress` says the guest is making some.
fn run(
    qemu: &str,
    args: Vec<String>,
    expected: i32,
    deadline: Duration,
    progress: &dyn Fn() -> bool,
) -> KvmProof {
    let failed = |message: String| KvmProof::Failed { message };
    let start = Instant::now();
    let mut child = match Command::new(qemu)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => return failed(format!("cannot run {qemu}: {e}")),
    };
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                if status.code() == Some(expected) {
                    return KvmProof::Ran {
                        millis: start.elapsed().as_millis() as u64,
                    };
                }
                let mut stderr = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut e, &mut stderr);
                }
                let said = stderr.lines().next().unwrap_or("no message").to_string();
                return failed(format!("{status}: {said}"));
            }
            Ok(None)
                if start.elapsed() >= deadline && !progress() || start.elapsed() >= BOOT_LIMIT =>
            {
                let _ = child.kill();
                let _ = child.wait();
                return KvmProof::Hung {
                    after_secs: start.elapsed().as_secs(),
                };
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return failed(e.to_string()),
        }
    }
}

/// `qemu-system-x86_64 --version`'s first line, e.g. "QEMU emulator version 7.2.22 (…)".
pub fn qemu_version(qemu: &str) -> Result<String, QemuVersionError> {
    let out = Command::new(qemu)
        .arg("--version")
        .output()
        .map_err(|source| QemuVersionError::CannotRun {
            qemu: qemu.to_string(),
            source,
        })?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .map(str::to_string)
        .filter(|_| out.status.success())
        .ok_or_else(|| QemuVersionError::Failed {
            qemu: qemu.to_string(),
            status: out.status,
        })
}

/// Why `--version` gave no version.
#[derive(Debug, thiserror::Error)]
pub enum QemuVersionError {
    #[error("cannot run {qemu}: {source}")]
    CannotRun {
        qemu: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{qemu} --version failed ({status})")]
    Failed {
        qemu: String,
        status: std::process::ExitStatus,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reset_vector_writes_to_the_exit_port() {
        let rom = bios_image();
        assert_eq!(rom.len() % 65536, 0);
        assert_eq!(&rom[0xfff0..0xfff4], &[0xb0, 0x2a, 0xe6, 0xf4]);
        assert_eq!(EXPECTED_STATUS, 85);
        let args = args(Path::new("/x.rom"), "kvm");
        assert!(args.windows(2).any(|w| w == ["-machine", "pc,accel=kvm"]));
        assert!(args.contains(&"isa-debug-exit,iobase=0xf4,iosize=1".to_string()));
    }

    /// The same guest under TCG: the mechanism works wherever QEMU does
    /// (CI installs it; the lab needs it anyway).
    #[test]
    fn the_test_guest_runs_under_tcg() {
        let proof = prove(
            crate::machine::qemu_cmdline::QEMU,
            "tcg",
            &ProofGuest::Bios,
            Duration::from_secs(20),
        );
        assert!(proof.ran(), "{proof}");
    }

    #[test]
    fn a_missing_qemu_is_a_failure_not_a_hang() {
        let proof = prove(
            "/nonexistent/qemu",
            "kvm",
            &ProofGuest::Bios,
            Duration::from_secs(1),
        );
        assert!(matches!(proof, KvmProof::Failed { .. }), "{proof}");
    }
}
