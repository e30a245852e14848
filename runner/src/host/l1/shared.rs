//! One L1 per topology, shared by the scenarios that use it: the agent
//! serves requests through the [`Mailbox`] and checks between two
//! scenarios that every function is back on its boot-time driver and no
//! L2 is left. When that check fails, or the L1 dies, it is dropped (QEMU
//! killed) and the next scenario boots a fresh one.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use lab::lab_fault::{of_l1_exit, LabFault, LabFaultKind};
use lab::protocol::mailbox::Mailbox;
use lab::protocol::paths::{L1_QEMU_LOG, L1_SERIAL_LOG, READY_FILE, WORK_MOUNT};
use lab::protocol::{Progress, RunOutcome, RunRequest};

use lab::machine::accel::AccelChoice;

use super::boot::{ready_timeout, start_l1, tail};
use super::cmdline::L1Config;
use super::heartbeat::{stalled_fault, HeartbeatWatch};
use super::process::QemuProcess;
use crate::host::images::L1Images;
use crate::host::run_error::RunError;
use crate::host::topology;
use crate::host::workdir::WorkDir;

fn serve_script() -> String {
    format!("exec {WORK_MOUNT}/mflab agent serve --dir {WORK_MOUNT}\n")
}

pub struct SharedL1 {
    process: QemuProcess,
    work: WorkDir,
    mailbox: Mailbox,
    next: u32,
    /// The accelerator's time scale, for the heartbeat's limit.
    time_scale: u32,
}

/// A scenario's outcome from a shared L1, and where its files are.
pub struct Served {
    pub outcome: RunOutcome,
    /// The scenario's own directory inside the L1's work directory.
    pub dir: PathBuf,
    /// The directory of an L1 that retired after this scenario (its QEMU
    /// is gone), handed over so that `dir` lives until the caller has
    /// gathered it.
    pub retired_l1: Option<WorkDir>,
}

/// What is left of an L1 that failed during a scenario: its directory
/// (removed when this drops, unless kept) and the scenario's inside it.
pub struct FailedL1 {
    pub l1_dir: WorkDir,
    pub scenario_dir: PathBuf,
}

impl SharedL1 {
    fn serial_tail(&self) -> String {
        tail(&self.work.path().join(L1_SERIAL_LOG), 15)
    }

    fn exit_fault(&self, what: &str) -> RunError {
        let read = |name| std::fs::read_to_string(self.work.path().join(name)).unwrap_or_default();
        l1_exit_error(
            &read(L1_SERIAL_LOG),
            &read(L1_QEMU_LOG),
            what,
            self.serial_tail(),
        )
    }

    fn start(
        topology_name: &str,
        images: &L1Images,
        accel: &AccelChoice,
    ) -> Result<SharedL1, RunError> {
        let topology = topology::load(topology_name).map_err(|e| RunError::Setup(e.to_string()))?;
        let work = WorkDir::new("mflab-l1-")?;
        let config = L1Config::new(&topology, images, accel, work.path());
        let process =
            start_l1(&config, &serve_script()).map_err(|e| RunError::Setup(e.to_string()))?;
        let mailbox = Mailbox::new(work.path());
        let mut l1 = SharedL1 {
            process,
            work,
            mailbox,
            next: 1,
            time_scale: accel.time_scale,
        };
        let start = Instant::now();
        let ready_within = ready_timeout(accel);
        while !l1.work.path().join(READY_FILE).exists() {
            if l1.process.exited() {
                return Err(l1.exit_fault(&format!(
                    "L1 ({topology_name}) stopped before its agent was ready"
                )));
            }
            if crate::interrupt::interrupted() {
                return Err(RunError::Interrupted);
            }
            if start.elapsed() > ready_within {
                return Err(RunError::lab(
                    LabFault::new(
                        LabFaultKind::L1NotReady,
                        format!(
                            "L1 ({topology_name}): its agent was not ready within {ready_within:?}"
                        ),
                    ),
                    l1.serial_tail(),
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(l1)
    }

    /// Runs one request; `Err` means this L1 is no longer usable. The
    /// agent's progress goes to `progress` as it arrives.
    fn serve(
        &mut self,
        request: &RunRequest,
        timeout: Duration,
        progress: &dyn Fn(Progress),
    ) -> Result<(Served, bool), RunError> {
        let n = self.next;
        self.next += 1;
        self.mailbox
            .post_request(n, request)
            .map_err(|e| RunError::Setup(e.to_string()))?;
        let start = Instant::now();
        let mut reported = 0;
        let mut heartbeat = HeartbeatWatch::new(self.work.path(), self.time_scale);
        let served = loop {
            let steps = self.mailbox.progress(n);
            for step in steps.iter().skip(reported) {
                progress(*step);
            }
            reported = reported.max(steps.len());
            if let Some(result) = self.mailbox.take_result(n) {
                break result.map_err(|e| {
                    RunError::lab(LabFault::new(LabFaultKind::L1BadResult, e.to_string()), "")
                })?;
            }
            if self.process.exited() {
                return Err(self.exit_fault("L1 stopped during the scenario"));
            }
            if let Some(silence) = heartbeat.stalled() {
                return Err(RunError::lab(
                    stalled_fault(silence, self.process.pid()),
                    self.serial_tail(),
                ));
            }
            if start.elapsed() > timeout {
                return Err(RunError::lab(
                    LabFault::new(
                        LabFaultKind::L1Timeout,
                        format!("L1: no result within {timeout:?}"),
                    ),
                    self.serial_tail(),
                ));
            }
            if crate::interrupt::interrupted() {
                return Err(RunError::Interrupted);
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        if let Some(why) = &served.why {
            tracing::info!("L1 retired after scenario {n}: {why}");
        }
        Ok((
            Served {
                outcome: served.outcome,
                dir: self.mailbox.scenario_dir(n),
                retired_l1: None,
            },
            served.healthy,
        ))
    }

    pub fn work_dir(&self) -> &Path {
        self.work.path()
    }
}

impl Drop for SharedL1 {
    fn drop(&mut self) {
        // Ask the agent to stop; QEMU is killed by QemuProcess's own drop.
        self.mailbox.stop();
    }
}

/// Why L1's QEMU ended early. One that refused its own command line
/// before L1 printed a byte (QEMU's error on its stderr, e.g. "Property
/// 'pcie-root-port.disable-acs' not found" from a QEMU without that
/// property) fails the same way every time: a setup error in QEMU's
/// words, not a lab fault to retry. Otherwise L1's console says whether
/// it panicked.
pub fn l1_exit_error(serial: &str, qemu_log: &str, what: &str, tail: String) -> RunError {
    // Its warnings ("qemu-system-x86_64: warning: nic e1000.0 has no
    // peer", on every boot of a topology with a link-less NIC) are not a
    // refusal: an L1 that died with only those said is the lab's.
    let refused = qemu_log
        .lines()
        .find(|l| l.starts_with("qemu-system-") && l.contains(": ") && !l.contains(": warning: "));
    match refused {
        Some(said) if serial.trim().is_empty() => {
            RunError::Setup(format!("{what}: L0's QEMU refused to start it: {said}"))
        }
        _ => RunError::lab(of_l1_exit(serial, what), tail),
    }
}

/// A worker's L1: at most one at a time (an idle L1 still costs a TCG
/// core), kept while the worker's scenarios use its topology.
#[derive(Default)]
pub struct L1Slot {
    l1: Option<(String, SharedL1)>,
    /// How many L1s this slot booted.
    pub boots: u32,
}

impl L1Slot {
    /// Runs `request` on the slot's L1 for `topology`, booting one if
    /// needed. On failure the L1 is dropped; the error says why, and the
    /// L1's directory given back holds what is left to look at (removed
    /// when the caller drops it, unless kept). So does a retired L1's.
    pub fn run(
        &mut self,
        topology_name: &str,
        images: &L1Images,
        accel: &AccelChoice,
        request: &RunRequest,
        timeout: Duration,
        progress: &dyn Fn(Progress),
    ) -> Result<Served, (RunError, Option<Box<FailedL1>>)> {
        if self
            .l1
            .as_ref()
            .is_some_and(|(name, _)| name != topology_name)
        {
            self.l1 = None;
        }
        if self.l1.is_none() {
            progress(Progress::L1Booting);
            let l1 = SharedL1::start(topology_name, images, accel).map_err(|e| (e, None))?;
            self.boots += 1;
            self.l1 = Some((topology_name.to_string(), l1));
        }
        progress(Progress::L1Ready);
        let (_, l1) = self.l1.as_mut().expect("booted above");
        match l1.serve(request, timeout, progress) {
            Ok((served, true)) => Ok(served),
            Ok((mut served, false)) => {
                // The scenario is done; the L1 is not fit for the next
                // one. QEMU is killed as `l1` drops; its directory lives
                // on in the caller's hands, as below.
                let (_, mut l1) = self.l1.take().expect("present");
                served.retired_l1 = Some(l1.work.hand_over());
                Ok(served)
            }
            Err(e) => {
                let (_, mut l1) = self.l1.take().expect("present");
                // QEMU is killed as `l1` drops; its directory lives on in
                // the caller's hands, which keep it or not.
                let scenario_dir = l1.mailbox.scenario_dir(l1.next - 1);
                Err((
                    e,
                    Some(Box::new(FailedL1 {
                        l1_dir: l1.work.hand_over(),
                        scenario_dir,
                    })),
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_qemu_that_refuses_its_command_line_is_a_setup_error_in_its_words() {
        let said = "qemu-system-x86_64: -device pcie-root-port,id=rp0,disable-acs=on: Property 'pcie-root-port.disable-acs' not found";
        match l1_exit_error(
            "",
            said,
            "L1 (t) stopped before its agent was ready",
            String::new(),
        ) {
            RunError::Setup(why) => assert!(why.ends_with(said), "{why}"),
            other => panic!("{other}"),
        }
        // Seen in a clean-clone run (--jobs 2): L1 died before a byte on
        // its console, its QEMU having warned only. The lab's, retried.
        let warned = "qemu-system-x86_64: warning: nic e1000.0 has no peer";
        let e = l1_exit_error("", warned, "L1 stopped", String::new());
        assert_eq!(e.lab_fault().unwrap().kind, LabFaultKind::L1Exited);
        let e = l1_exit_error(
            "",
            &format!("{warned}\n{said}"),
            "L1 stopped",
            String::new(),
        );
        assert!(matches!(e, RunError::Setup(_)), "{e}");
        // L1 had booted: its console decides, as before.
        let e = l1_exit_error(
            "[ 1.0] Kernel panic - not syncing: x\n",
            said,
            "L1 stopped",
            String::new(),
        );
        assert_eq!(e.lab_fault().unwrap().kind, LabFaultKind::L1Panic);
        let e = l1_exit_error("", "", "L1 stopped", String::new());
        assert_eq!(e.lab_fault().unwrap().kind, LabFaultKind::L1Exited);
    }
}
