//! Running a QEMU process that cannot outlive its owner: it gets SIGKILL
//! when the runner dies (parent-death signal, which also covers Ctrl-C),
//! and it is killed and reaped when its guard is dropped (any error path).

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::host::l0_qemu::L0Qemu;

pub struct QemuProcess {
    child: Option<Child>,
}

#[derive(Debug, thiserror::Error)]
pub enum VmError {
    #[error("cannot start {0}: {1}")]
    Spawn(String, std::io::Error),
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("interrupted (Ctrl-C or SIGTERM)")]
    Interrupted,
    #[error("waiting for QEMU: {0}")]
    Wait(std::io::Error),
    #[error("{0}")]
    Stalled(String),
    /// L1's heartbeat stood still: the lab's fault, named as one.
    #[error("{0}")]
    L1Stalled(lab::lab_fault::LabFault),
}

impl QemuProcess {
    /// Starts L0's QEMU with `args` (after its own `-L` directories),
    /// stdout/stderr to `log`, or inherited when `interactive`.
    pub fn spawn(
        qemu: &L0Qemu,
        args: &[String],
        log: &Path,
        interactive: bool,
    ) -> Result<Self, VmError> {
        let binary = qemu.program();
        let binary = binary.as_str();
        let mut cmd = Command::new(binary);
        cmd.args(qemu.leading_args()).args(args).envs(qemu.env());
        if interactive {
            cmd.stdin(Stdio::inherit())
                .stdout(Stdio::inherit())
                .stderr(Stdio::inherit());
        } else {
            let file = std::fs::File::create(log).map_err(|e| VmError::Spawn(binary.into(), e))?;
            let err = file
                .try_clone()
                .map_err(|e| VmError::Spawn(binary.into(), e))?;
            cmd.stdin(Stdio::null()).stdout(file).stderr(err);
        }
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().map_err(|e| VmError::Spawn(binary.into(), e))?;
        Ok(QemuProcess { child: Some(child) })
    }

    /// QEMU's process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Whether QEMU has exited (reaping it if so).
    pub fn exited(&mut self) -> bool {
        match self.child.as_mut().map(|c| c.try_wait()) {
            Some(Ok(Some(_))) | Some(Err(_)) | None => {
                self.child = None;
                true
            }
            Some(Ok(None)) => false,
        }
    }

    /// Waits for QEMU to exit; kills it at the deadline. `tick` is called
    /// every few milliseconds meanwhile (to notice a stage being reached);
    /// when it says why the VM is stuck, QEMU is killed and that is the error.
    pub fn wait(
        mut self,
        timeout: Duration,
        mut tick: impl FnMut() -> Result<(), VmError>,
    ) -> Result<ExitStatus, VmError> {
        let start = Instant::now();
        let child = self.child.as_mut().expect("child present until dropped");
        loop {
            if let Some(status) = child.try_wait().map_err(VmError::Wait)? {
                self.child = None;
                return Ok(status);
            }
            if start.elapsed() > timeout {
                return Err(VmError::Timeout(timeout));
            }
            if crate::interrupt::interrupted() {
                return Err(VmError::Interrupted);
            }
            tick()?;
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for QemuProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
