//! Why something the agent tried inside L1 failed. One type for the lab
//! VM's modules, since their errors pass from one to the next (a libvirt
//! run's steps hold the daemon's, virsh's, the control port's and L2's
//! own), and end as a run's outcome text (`RunOutcome.error`,
//! `StepOutcome.error`, `ServedResult.why`): `to_string` there, once.
//! Every message is word for word what the agent always wrote.

use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

use lab::assign::bind::BindError;
use lab::machine::libvirt_binaries::LibvirtBinariesError;
use lab::pci::view::HostViewError;
use lab::protocol::guest_report::REPORT_CUT_SHORT;
use lab::protocol::mailbox::MailboxError;
use lab::PciAddress;

use super::l2::control::ControlError;
use super::l2::qmp::QmpError;

#[derive(Debug, thiserror::Error)]
pub enum L1Error {
    // L1's files, commands and PCI view.
    /// An I/O error whose own words have always been the whole message.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// Reading, writing or creating this file or directory of L1.
    #[error("{}: {source}", .path.display())]
    File {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// `command` (as the message names it) did not start.
    #[error("{command}: {source}")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
    /// `command` ran and failed; what it wrote on stderr, trimmed.
    #[error("{command}: {stderr}")]
    Command { command: String, stderr: String },
    /// L1's PCI view could not be read.
    #[error(transparent)]
    HostView(#[from] HostViewError),
    /// The mailbox shared with the runner could not be read or written.
    #[error(transparent)]
    Mailbox(#[from] MailboxError),
    /// The administrator's manual detach before the run failed.
    #[error("manual detach: {0}")]
    ManualDetach(#[source] BindError),
    /// Teardown could not give functions back: each journal's failure,
    /// newest first.
    #[error("{}", joined(.0, "; "))]
    Reattach(Vec<BindError>),
    /// L1's init did not write `marker` (its late modules, KVM, are in)
    /// within `waited`.
    #[error("L1's late modules (KVM) were not in after {} s: {marker} never appeared; see L1's serial log", .waited.as_secs())]
    LateModules {
        waited: Duration,
        marker: &'static str,
    },

    // Between two scenarios of a shared L1: what the last one left.
    /// `function` is not on the driver it had when L1 booted.
    #[error("{function} is on {} (was {} at boot)", driver_name(.now), driver_name(.boot))]
    DriverChanged {
        function: PciAddress,
        now: Option<String>,
        boot: Option<String>,
    },
    /// An L2 QEMU outlived its scenario.
    #[error("an L2 QEMU is still running (pid {pid})")]
    QemuLeft { pid: String },

    // The link proof's far end in L1.
    /// L1's peer NIC has no network interface.
    #[error(
        "link proof: L1's peer {peer} has no network interface (is it a NIC with its driver?)"
    )]
    NoInterface { peer: PciAddress },
    /// L1's peer NIC came up but its link did not.
    #[error("link proof: L1's peer {interface} ({peer}) has no carrier 10 s after coming up")]
    NoCarrier { interface: String, peer: PciAddress },

    // libvirt: its daemon, virsh, and what a libvirt run asks of them.
    /// `--libvirt-bin` names no libvirt mflab can run.
    #[error(transparent)]
    LibvirtBinaries(#[from] LibvirtBinariesError),
    /// The libvirtd to start is not there.
    #[error("{} not found: install libvirt-daemon and libvirt-daemon-driver-qemu on the host (L1 shares its root), or give --libvirt-bin", .path.display())]
    NoLibvirtd { path: PathBuf },
    /// libvirtd is gone: its exit status and the first error it logged.
    #[error("libvirtd exited ({status}){}", logged(.first_error))]
    LibvirtdExited {
        status: ExitStatus,
        first_error: Option<String>,
    },
    /// libvirtd runs but never opened its socket.
    #[error("libvirtd did not open its socket within 60 s; see libvirtd.log")]
    NoSocket,
    /// `virsh list` failed: virsh's words.
    #[error("libvirtd does not answer: {0}")]
    LibvirtdUnanswered(String),
    /// A scenario left these domains defined.
    #[error("libvirtd still holds domain(s): {0}")]
    DomainsLeft(String),
    /// A virsh call failed: virsh's (and so libvirt's) words, kept as
    /// they were.
    #[error("{0}")]
    Virsh(String),
    /// A libvirt run given nothing to assign.
    #[error("the XML has no <hostdev> for libvirt to carry out")]
    NoHostdev,
    /// libvirt's `query-pci` reply (through `qemu-monitor-command`) is
    /// not QMP's.
    #[error("query-pci: {0}")]
    QueryPci(#[source] serde_json::Error),
    /// libvirt's live domain still lists `host`'s hostdev `waited` after
    /// `detach-device`.
    #[error("libvirt still lists hostdev {host} in the live domain {waited:?} after detach-device (the guest never released it)")]
    StillListed { host: PciAddress, waited: Duration },

    // L2 and its QEMU.
    /// A QMP session failed (QEMU's refusal, a timeout, the socket).
    #[error(transparent)]
    Qmp(#[from] QmpError),
    /// This QMP command failed.
    #[error("{command}: {source}")]
    QmpCommand {
        command: &'static str,
        #[source]
        source: QmpError,
    },
    /// QEMU refused a `device_add`; `undoing`: what went wrong taking
    /// back the ones added before it.
    #[error("{source}{}", undoing_text(.undoing))]
    DeviceAdd {
        source: QmpError,
        undoing: Vec<L1Error>,
    },
    /// L2 did not eject `id` within `waited` of its `device_del`: it stays
    /// with QEMU.
    #[error("L2 did not release {id} ({host}) within {waited:?} of device_del (no DEVICE_DELETED): the guest never ejected it, so it stays with QEMU and is not reattached")]
    NotReleased {
        id: String,
        host: PciAddress,
        waited: Duration,
    },
    /// L2's control port (its second serial port).
    #[error(transparent)]
    Control(#[from] ControlError),
    /// L2 printed nothing on its console for too long:
    /// [`super::l2::guest::silent_for`]'s words.
    #[error("{0}")]
    Silent(String),
    /// L2 was ended on purpose (`kill_l2`), `how` says how.
    #[error("L2 was {how} while running (kill_l2)")]
    Killed { how: &'static str },
    /// L2 still ran after its whole time.
    #[error("L2 did not power off within {timeout:?}")]
    NoPowerOff { timeout: Duration },
    /// L2's report did not come whole.
    #[error("{}", REPORT_CUT_SHORT)]
    ReportCutShort,
    /// L2's init never said it was ready for a libvirt run's steps.
    #[error("L2 did not make its first report, so no step ran")]
    NoFirstReport,
    /// L2's init never said it was ready for mflab's steps.
    #[error("L2's init was not ready for steps within {timeout:?}")]
    NotReadyForSteps { timeout: Duration },
    /// No new READY from L2's init within `timeout` of a reset.
    #[error("L2 did not come back within {} s of the reset (no new READY from its init)", .timeout.as_secs())]
    NotBack { timeout: Duration },
    /// A reboot step: L2 did not power off after its ACPI power button.
    #[error(
        "L2 did not power off within {timeout:?} of the ACPI power button (its status: {status})"
    )]
    NoAcpiPowerOff {
        timeout: Duration,
        #[source]
        status: StatusWait,
    },
    /// A reboot step: L2 did not leave its shutdown state after
    /// `system_reset`.
    #[error("L2 was not reset within {timeout:?} (its status: {status})")]
    NotReset {
        timeout: Duration,
        #[source]
        status: StatusWait,
    },
}

impl L1Error {
    /// [`L1Error::QmpCommand`] for `command`, as `map_err` takes it.
    pub fn qmp_command(command: &'static str) -> impl FnOnce(QmpError) -> L1Error {
        move |source| L1Error::QmpCommand { command, source }
    }
}

/// Why a wait on L2's run state (`query-status`) ended without it.
#[derive(Debug, thiserror::Error)]
pub enum StatusWait {
    /// `query-status` itself failed.
    #[error("query-status: {0}")]
    Query(#[source] QmpError),
    /// The time ran out with L2 in this state.
    #[error("{0:?}")]
    Still(qapi::qmp::RunState),
}

fn joined(errors: &[impl std::fmt::Display], separator: &str) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(separator)
}

fn driver_name(driver: &Option<String>) -> &str {
    driver.as_deref().unwrap_or("no driver")
}

fn logged(first_error: &Option<String>) -> String {
    match first_error {
        Some(words) => format!(": {words} (libvirtd.log)"),
        None => "; see libvirtd.log".to_string(),
    }
}

fn undoing_text(undoing: &[L1Error]) -> String {
    undoing.iter().map(|u| format!("; undoing: {u}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    /// The messages built from more than their fields' words, against the
    /// `format!` each replaced.
    #[test]
    fn messages_are_the_words_they_always_were() {
        let a: PciAddress = "0000:00:06.0".parse().unwrap();
        let status = ExitStatus::from_raw(256);
        let words = "internal error: no firewall";
        assert_eq!(
            L1Error::LibvirtdExited {
                status,
                first_error: Some(words.into())
            }
            .to_string(),
            format!("libvirtd exited ({status}): {words} (libvirtd.log)")
        );
        assert_eq!(
            L1Error::LibvirtdExited {
                status,
                first_error: None
            }
            .to_string(),
            format!("libvirtd exited ({status}); see libvirtd.log")
        );
        let (driver, was) = (None::<String>, Some("e1000".to_string()));
        assert_eq!(
            L1Error::DriverChanged {
                function: a,
                now: driver.clone(),
                boot: was.clone()
            }
            .to_string(),
            format!(
                "{} is on {} (was {} at boot)",
                a,
                driver.as_deref().unwrap_or("no driver"),
                was.as_deref().unwrap_or("no driver")
            )
        );
        const WAIT: Duration = Duration::from_secs(60);
        const DONE: &str = "/run/mflab/late-modules";
        assert_eq!(
            L1Error::LateModules { waited: WAIT, marker: DONE }.to_string(),
            format!(
                "L1's late modules (KVM) were not in after {} s: {DONE} never appeared; see L1's serial log",
                WAIT.as_secs()
            )
        );
        let timeout = Duration::from_secs(90);
        assert_eq!(
            L1Error::NotBack { timeout }.to_string(),
            format!(
                "L2 did not come back within {} s of the reset (no new READY from its init)",
                timeout.as_secs()
            )
        );
        let s = StatusWait::Still(qapi::qmp::RunState::shutdown);
        let state = format!("{:?}", qapi::qmp::RunState::shutdown);
        assert_eq!(s.to_string(), state);
        assert_eq!(
            L1Error::NoAcpiPowerOff { timeout, status: s }.to_string(),
            format!("L2 did not power off within {timeout:?} of the ACPI power button (its status: {state})")
        );
        let refused = || QmpError::Command {
            command: "device_add".into(),
            class: "GenericError".into(),
            desc: "no".into(),
        };
        let undo = L1Error::NotReleased {
            id: "hostdev0".into(),
            host: a,
            waited: Duration::from_secs(20),
        };
        let undo_text = undo.to_string();
        assert_eq!(
            L1Error::DeviceAdd {
                source: refused(),
                undoing: vec![undo, L1Error::Qmp(QmpError::Closed)],
            }
            .to_string(),
            format!(
                "{}; undoing: {undo_text}; undoing: {}",
                refused(),
                QmpError::Closed
            )
        );
        assert_eq!(L1Error::ReportCutShort.to_string(), REPORT_CUT_SHORT);
        assert_eq!(
            L1Error::Killed { how: "destroyed" }.to_string(),
            "L2 was destroyed while running (kill_l2)"
        );
        assert_eq!(
            L1Error::Killed {
                how: "killed with SIGKILL"
            }
            .to_string(),
            "L2 was killed with SIGKILL while running (kill_l2)"
        );
    }
}
