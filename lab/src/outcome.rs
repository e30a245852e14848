//! What the runner asks of the agent in L1, and what the agent reports
//! back: plain data, written as JSON into the shared work directory.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::diagnostic::Diagnostic;
use crate::host::{read_host_view, HostViewError};
use crate::plan::Policy;

/// How far a scenario goes (DESIGN.md, "The three levels").
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Depth {
    /// The XML alone, no VM.
    Rules,
    /// L1: plan and bind, no L2.
    Plan,
    /// L2 started paused: the QMP view only.
    Qmp,
    /// L2 boots and reports what its kernel enumerated.
    #[default]
    Guest,
}

impl std::fmt::Display for Depth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Depth::Rules => "rules",
            Depth::Plan => "plan",
            Depth::Qmp => "qmp",
            Depth::Guest => "guest",
        })
    }
}

/// Who carries out the domain in L1: mflab's own logic, or a real libvirt.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    #[default]
    Mflab,
    Libvirt,
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Backend::Mflab => "mflab",
            Backend::Libvirt => "libvirt",
        })
    }
}

/// The runner's request to the agent.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunRequest {
    /// The name diagnostics use for the XML.
    pub xml_name: String,
    pub xml: String,
    pub policy: Policy,
    pub depth: Depth,
    /// Kill L2 with SIGKILL once it runs: teardown must still restore.
    #[serde(default)]
    pub kill_l2: bool,
    /// Functions the "administrator" binds to vfio-pci before the run (as
    /// `virsh nodedev-detach` would), for managed='no' scenarios.
    #[serde(default)]
    pub manual_detach: Vec<crate::PciAddress>,
    pub l2_kernel: PathBuf,
    pub l2_initrd: PathBuf,
    #[serde(default)]
    pub backend: Backend,
    /// A directory holding another build's `libvirtd` and `virsh`.
    #[serde(default)]
    pub libvirt_bin: Option<PathBuf>,
}

/// One PCI function as a kernel's sysfs shows it (`mflab boot --format json`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionRow {
    pub bdf: String,
    pub vendor: String,
    pub device: String,
    pub class: String,
    pub driver: Option<String>,
    pub iommu_group: Option<u32>,
}

/// One PCI function as L2 saw it, through QMP or through its own kernel.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestFunction {
    pub bdf: String,
    pub vendor: String,
    pub device: String,
    pub class: String,
    pub driver: Option<String>,
}

impl GuestFunction {
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
    /// The plan as `mflab plan --format json` prints it, when there was one.
    pub plan: Option<serde_json::Value>,
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
    /// (see `inner::lab_fault_of_silent_guest`): the runner retries the run.
    #[serde(default)]
    pub lab_fault: Option<String>,
    /// Whether every function ended on the driver it had before the run.
    pub restored: bool,
    /// Seconds per stage: bind, l2-start, l2-boot, teardown, …
    pub timings: BTreeMap<String, f64>,
    /// L2's accelerator inside L1.
    pub l2_accel: String,
}

/// Every PCI function under a sysfs root as rows (ids as `0x1234` strings).
pub fn function_rows(sysfs: &Path) -> Result<Vec<FunctionRow>, HostViewError> {
    let view = read_host_view(sysfs)?;
    Ok(view
        .functions
        .values()
        .map(|f| FunctionRow {
            bdf: f.address.to_string(),
            vendor: format!("{:#06x}", f.vendor),
            device: format!("{:#06x}", f.device),
            class: format!("{:#08x}", f.class),
            driver: f.driver.clone(),
            iommu_group: f.iommu_group,
        })
        .collect())
}
