//! Booting L1: one boot that runs an agent script and waits for its
//! power-off, or a start that hands the running L1 to its owner.

use std::path::Path;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use lab::protocol::paths::{
    AGENT_BINARY, AGENT_SCRIPT, L1_CMDLINE, L1_QEMU_LOG, L1_SERIAL_LOG, READY_FILE, WORK_MOUNT,
};

use super::cmdline::{l1_args, L1Config, L2_COPIES};
use super::heartbeat::{stalled_fault, HeartbeatWatch};
use super::process::{QemuProcess, VmError};
use crate::host::images::Userland;

#[derive(Debug, thiserror::Error)]
pub enum BootError {
    #[error("{0}")]
    Vm(#[from] VmError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl BootError {
    /// Whether the boot ended because of Ctrl-C or SIGTERM.
    pub fn interrupted(&self) -> bool {
        matches!(self, BootError::Vm(VmError::Interrupted))
    }
}

pub struct BootOutcome {
    /// From QEMU's start to power-off.
    pub elapsed: Duration,
    /// How QEMU ended: a signal or a non-zero code is QEMU's own failure.
    pub status: ExitStatus,
    /// From QEMU's start to the agent's first step (`/mflab/ready` appears).
    pub ready: Option<Duration>,
}

/// How long L1 may take to reach its agent: 3-5 s as a rule here, 15 s on
/// a loaded machine. Seen once: L1's kernel stalled before its init with
/// CPU 0's timer gone quiet (RCU stall reports every 21 s, no panic: the
/// sysctl that would panic applies only once init starts). Waiting the
/// whole scenario timeout for such an L1 cost 4 minutes.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// [`READY_TIMEOUT`] times the accelerator's time scale.
pub fn ready_timeout(accel: &lab::machine::accel::AccelChoice) -> Duration {
    READY_TIMEOUT * accel.time_scale.max(1)
}

/// The error for an L1 that did not reach its agent in time.
pub fn not_ready(work_dir: &Path, timeout: Duration) -> String {
    format!(
        "L1's agent was not ready within {timeout:?}; serial log:\n{}",
        tail(&work_dir.join(L1_SERIAL_LOG), 15)
    )
}

/// Boots L1 once with `agent_script` as what runs inside; waits for
/// power-off. The mflab binary is copied into the work directory, so L1
/// runs exactly this build whatever path it lives at.
pub fn boot(c: &L1Config, agent_script: &str, timeout: Duration) -> Result<BootOutcome, BootError> {
    let start = Instant::now();
    let process = start_l1(c, agent_script)?;
    let ready_file = c.work_dir.join(READY_FILE);
    let mut ready = None;
    let ready_within = ready_timeout(c.accel);
    let pid = process.pid();
    let mut heartbeat = HeartbeatWatch::new(c.work_dir, c.accel.time_scale);
    let status = process.wait(timeout, || {
        if ready.is_none() && ready_file.exists() {
            ready = Some(start.elapsed());
        }
        if let Some(silence) = heartbeat.stalled() {
            return Err(VmError::L1Stalled(stalled_fault(silence, pid)));
        }
        match ready {
            None if start.elapsed() > ready_within => {
                Err(VmError::Stalled(not_ready(c.work_dir, ready_within)))
            }
            _ => Ok(()),
        }
    })?;
    Ok(BootOutcome {
        elapsed: start.elapsed(),
        status,
        ready,
    })
}

/// Starts L1 with `agent_script` and returns at once; the caller owns the
/// process (killed when dropped).
pub fn start_l1(c: &L1Config, agent_script: &str) -> Result<QemuProcess, BootError> {
    let exe = std::env::current_exe()?;
    std::fs::copy(&exe, c.work_dir.join(AGENT_BINARY))?;
    // A release's root holds no file of the host's: L2's images go into
    // the work directory (a hard link where the cache shares its filesystem).
    if c.images.userland != Userland::Host {
        for (from, name) in [
            (&c.images.l2_kernel, L2_COPIES.0),
            (&c.images.l2_initrd, L2_COPIES.1),
        ] {
            let to = c.work_dir.join(name);
            if std::fs::hard_link(from, &to).is_err() {
                std::fs::copy(from, &to)?;
            }
        }
    }
    std::fs::write(
        c.work_dir.join(AGENT_SCRIPT),
        format!(": > {WORK_MOUNT}/{READY_FILE}\n{agent_script}"),
    )?;
    let args = l1_args(c);
    let qemu = crate::host::l0_qemu::chosen();
    std::fs::write(c.work_dir.join(L1_CMDLINE), qemu.shell_line(&args))?;
    Ok(QemuProcess::spawn(
        qemu,
        &args,
        &c.work_dir.join(L1_QEMU_LOG),
        c.interactive,
    )?)
}

/// The last `n` lines of a log, for failure reports.
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
