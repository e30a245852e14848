//! A lab fault as it crosses the boundary: its kind and what was seen.
//! Which failures are the lab's is decided in `lab::lab_fault`.

use serde::{Deserialize, Serialize};

/// The kinds of lab fault, for retries, reports and counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LabFaultKind {
    /// L1's kernel panicked (a soft lockup panics it on purpose).
    L1Panic,
    /// L1's QEMU ended without an outcome and without a panic on L1's console.
    L1Exited,
    /// L1 did not reach its agent in time.
    L1NotReady,
    /// L1 gave no outcome within the scenario's time.
    L1Timeout,
    /// L1's agent stopped beating (L1 as a whole stopped making progress).
    L1Stalled,
    /// L1's agent answered something that cannot be read.
    L1BadResult,
    /// L2 was let run and its init never printed a line.
    L2Silent,
    /// L2 reset itself (a triple fault, or a reset its kernel asked for)
    /// before its report was done; under `-no-reboot` that ends its QEMU.
    L2Reset,
    /// L2's init ran to its end, but its console report lost bytes on the
    /// way (an emulated UART under nested virtualization).
    L2ConsoleGarbled,
    /// L2's QEMU outlived SIGKILL, or libvirt could not end it, or it
    /// stopped answering QMP while it ran.
    L2Stuck,
    /// A virsh call did not return.
    VirshHung,
}

impl LabFaultKind {
    pub fn name(self) -> &'static str {
        match self {
            LabFaultKind::L1Panic => "L1 panic",
            LabFaultKind::L1Exited => "L1 exited",
            LabFaultKind::L1NotReady => "L1 not ready",
            LabFaultKind::L1Timeout => "L1 timeout",
            LabFaultKind::L1Stalled => "L1 stalled",
            LabFaultKind::L1BadResult => "L1 bad result",
            LabFaultKind::L2Silent => "L2 silent",
            LabFaultKind::L2Reset => "L2 reset",
            LabFaultKind::L2ConsoleGarbled => "L2 console garbled",
            LabFaultKind::L2Stuck => "L2 stuck",
            LabFaultKind::VirshHung => "virsh hung",
        }
    }
}

/// One lab fault: its kind and what was seen, in words.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabFault {
    pub kind: LabFaultKind,
    pub detail: String,
    /// An L1 panic's first line on L1's console, by which panics are told
    /// apart in a summary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub panic_line: Option<String>,
}

impl LabFault {
    pub fn new(kind: LabFaultKind, detail: impl Into<String>) -> Self {
        LabFault {
            kind,
            detail: detail.into(),
            panic_line: None,
        }
    }
}

impl std::fmt::Display for LabFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.detail)
    }
}
