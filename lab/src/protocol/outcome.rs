//! What the agent in L1 reports back: plain data, written as JSON into
//! the shared work directory.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::fault::LabFault;
use super::stage::Stage;
use crate::assign::plan::Plan;
use crate::machine::accel::Accel;
use crate::pci::view::{read_host_view, HostViewError};
use crate::schema::diagnostic::Diagnostic;
use crate::PciAddress;

/// One PCI function as a kernel's sysfs shows it (`mflab boot --format json`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionRow {
    pub bdf: PciAddress,
    pub vendor: String,
    pub device: String,
    pub class: String,
    pub driver: Option<String>,
    pub iommu_group: Option<u32>,
}

/// One PCI function as L2 saw it, through QMP or through its own kernel.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestFunction {
    pub bdf: PciAddress,
    pub vendor: String,
    pub device: String,
    pub class: String,
    pub driver: Option<String>,
}

impl GuestFunction {
    /// A PCI-to-PCI bridge (class 0x0604: libvirt's root ports, the
    /// chipset's own). `class` is 16-bit from QMP and 24-bit from L2's
    /// sysfs; both start with the base class and subclass.
    pub fn is_bridge(&self) -> bool {
        self.class.starts_with("0x0604")
    }

    /// The lab's own report port in L2 (a virtio-serial controller,
    /// transitional 1af4:1003 or modern 1af4:1043), not a device under test.
    pub fn is_report_port(&self) -> bool {
        self.vendor.trim_start_matches("0x") == "1af4"
            && matches!(self.device.trim_start_matches("0x"), "1003" | "1043")
    }

    /// `1234:1111@0000:00:05.0`, the form scenario expectations use.
    pub fn key(&self) -> String {
        format!(
            "{}:{}@{}",
            self.vendor.trim_start_matches("0x"),
            self.device.trim_start_matches("0x"),
            self.bdf
        )
    }
}

/// The agent's report.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RunOutcome {
    /// The plan (as `mflab plan --format json` prints it), when there was one.
    pub plan: Option<Plan>,
    /// Rule errors that stopped the run before anything was touched.
    pub diagnostics: Vec<Diagnostic>,
    pub l1_before: Vec<FunctionRow>,
    pub l1_during: Vec<FunctionRow>,
    pub l1_after: Vec<FunctionRow>,
    pub l2_qmp: Vec<GuestFunction>,
    pub l2_guest: Vec<GuestFunction>,
    /// Null, or the failure text (QEMU's or the binder's).
    pub error: Option<String>,
    /// Set when the failure is the lab's own, not the system's under test
    /// (decided in `lab::lab_fault`): the runner retries the run.
    #[serde(default)]
    pub lab_fault: Option<LabFault>,
    /// Whether every function ended on the driver it had before the run.
    pub restored: bool,
    /// Seconds per stage.
    pub timings: BTreeMap<Stage, f64>,
    /// L2's accelerator inside L1, when an L2 was started.
    pub l2_accel: Option<Accel>,
    /// One entry per scenario step carried out (or refused), in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<super::step::StepOutcome>,
    /// What ran inside L1 (gathered once per L1).
    #[serde(default)]
    pub l1_versions: Option<super::versions::L1Versions>,
    /// The link proof, when the request asked for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<super::link::LinkOutcome>,
}

/// What a serving agent answers for one request: the outcome, and whether
/// this L1 is fit for the next scenario (and why not).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ServedResult {
    pub outcome: RunOutcome,
    pub healthy: bool,
    pub why: Option<String>,
}

/// Every PCI function under a sysfs root as rows (ids as `0x1234` strings).
pub fn function_rows(sysfs: &Path) -> Result<Vec<FunctionRow>, HostViewError> {
    let view = read_host_view(sysfs)?;
    Ok(view
        .functions
        .values()
        .map(|f| FunctionRow {
            bdf: f.address,
            vendor: format!("{:#06x}", f.vendor),
            device: format!("{:#06x}", f.device),
            class: format!("{:#08x}", f.class),
            driver: f.driver.clone(),
            iommu_group: f.iommu_group,
        })
        .collect())
}
