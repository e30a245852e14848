//! What the runner asks of the agent in L1.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::assign::plan::Policy;
use crate::PciAddress;

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
    pub manual_detach: Vec<PciAddress>,
    pub l2_kernel: PathBuf,
    pub l2_initrd: PathBuf,
    #[serde(default)]
    pub backend: Backend,
    /// A directory holding another build's `libvirtd` and `virsh`.
    #[serde(default)]
    pub libvirt_bin: Option<PathBuf>,
    /// Steps carried out on the running L2, in order (guest depth).
    #[serde(default)]
    pub steps: Vec<super::step::StepRequest>,
    /// The link proof (guest depth), when the scenario asks for it.
    #[serde(default)]
    pub link: Option<super::link::LinkRequest>,
}

/// One file for libvirt's static verdict (`mflab check --backend libvirt`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CheckItem {
    pub file: String,
    pub xml: String,
}

/// What `virsh define` said of one [`CheckItem`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LibvirtVerdict {
    pub file: String,
    pub accepted: bool,
    /// libvirt's words when it refused, word for word.
    pub message: Option<String>,
}
