//! Scenario steps after L2 boots: what the runner asks (attach or detach
//! of hostdev XML while L2 runs) and what the agent reports after each.

use serde::{Deserialize, Serialize};

use super::outcome::{FunctionRow, GuestFunction};
use crate::schema::diagnostic::Diagnostic;
use crate::PciAddress;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StepAction {
    /// `virsh attach-device --live` / QMP `device_add`.
    Attach,
    /// `virsh detach-device --live` / QMP `device_del`.
    Detach,
    /// `virsh reset` / QMP `system_reset`: L2 reboots with what it holds,
    /// and its QEMU resets each assigned function as it can (FLR, PM
    /// reset, or a bus reset that needs every group on the bus).
    Reset,
    /// `virsh reboot` (ACPI mode) / QMP `system_powerdown`: L2's own
    /// power-off on the ACPI power button, which QEMU holds (`-no-shutdown`,
    /// or `set-action shutdown=pause`) while the machine is reset and
    /// resumed: libvirt's fake reboot, the path of a guest's reboot.
    Reboot,
}

impl StepAction {
    /// Whether the step reboots L2 in place (its report comes again).
    pub fn reboots(self) -> bool {
        matches!(self, StepAction::Reset | StepAction::Reboot)
    }
}

impl std::fmt::Display for StepAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StepAction::Attach => "attach",
            StepAction::Detach => "detach",
            StepAction::Reset => "reset",
            StepAction::Reboot => "reboot",
        })
    }
}

/// One step of a running L2: its hostdev elements, word for word (none
/// for a reset).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StepRequest {
    pub action: StepAction,
    /// The name diagnostics use for the XML.
    pub xml_name: String,
    pub xml: String,
}

/// One hostdev of the running domain as its backend shows it (libvirt:
/// `virsh dumpxml` of the live domain; mflab: what it holds for L2).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveHostdev {
    pub host: PciAddress,
    /// The guest `<address type=…>`: `pci`, `unassigned`, or `none` when absent.
    pub address_type: String,
    /// The guest PCI address, when of type `pci`.
    pub guest: Option<PciAddress>,
    /// `<alias name=…>` (QEMU's device id for assigned functions).
    pub alias: Option<String>,
}

/// What held after one step.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct StepOutcome {
    /// Rule errors that refused the step before anything was touched.
    pub diagnostics: Vec<Diagnostic>,
    /// The step's failure text (the backend's own words).
    pub error: Option<String>,
    /// L1's drivers after the step.
    pub l1: Vec<FunctionRow>,
    /// The live domain's hostdevs after the step.
    pub live: Vec<LiveHostdev>,
    /// The live domain's XML as the backend printed it (libvirt only).
    pub live_xml: Option<String>,
    /// What L2's kernel enumerated after the step (L2's init reported again).
    pub l2_guest: Vec<GuestFunction>,
    /// Whether L2's init reported for this step at all.
    pub l2_reported: bool,
    /// A reset step: what L2's QEMU said about resetting its functions
    /// (its vfio messages and `vfio_pci_*reset*` trace lines) and L1's
    /// kernel log lines that came with it, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reset_log: Vec<String>,
}
