//! The stages of a run: what timings are keyed by and what progress
//! reports. Serialized in kebab-case (`l2-qemu-start`), as the JSON
//! reports have always named them.

use serde::{Deserialize, Serialize};

/// A timed stage of a run inside L1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stage {
    /// Detaching the plan's functions to vfio-pci.
    Bind,
    /// L2's QEMU from its start to its QMP greeting.
    L2QemuStart,
    /// `device_add` of every assigned function, and `query-pci`.
    L2DeviceAdd,
    /// From `cont` to L2's power-off.
    L2Boot,
    /// Part of [`Stage::L2Boot`]: L2's kernel until its init started.
    L2BootKernel,
    /// Part of [`Stage::L2Boot`]: L2's init writing its report.
    L2BootInit,
    /// Part of [`Stage::L2Boot`]: firmware and kernel load before, power-off after.
    L2BootFirmwareAndExit,
    /// Reattaching every function from the journal.
    Teardown,
    /// libvirt backend: starting the run's libvirtd until its socket answers.
    LibvirtdStart,
    /// libvirt backend: `virsh define`.
    Define,
    /// libvirt backend: `virsh start --paused` (libvirt's own detach, L2's QEMU start).
    Start,
    /// libvirt backend: `virsh resume` until the domain is shut off (L2's
    /// boot and report, then libvirt's own reattach as the domain stops).
    LibvirtL2Boot,
    /// libvirt backend: `virsh destroy` (when L2 still ran) and `undefine`.
    Undefine,
}

impl Stage {
    pub fn name(self) -> &'static str {
        match self {
            Stage::Bind => "bind",
            Stage::L2QemuStart => "l2-qemu-start",
            Stage::L2DeviceAdd => "l2-device-add",
            Stage::L2Boot => "l2-boot",
            Stage::L2BootKernel => "l2-boot-kernel",
            Stage::L2BootInit => "l2-boot-init",
            Stage::L2BootFirmwareAndExit => "l2-boot-firmware-and-exit",
            Stage::Teardown => "teardown",
            Stage::LibvirtdStart => "libvirtd-start",
            Stage::Define => "define",
            Stage::Start => "start",
            Stage::LibvirtL2Boot => "libvirt-l2-boot",
            Stage::Undefine => "undefine",
        }
    }
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Where a running scenario is, as its progress display shows it. The
/// runner knows the first ones itself; the agent inside L1 reports the
/// rest through the mailbox (`Mailbox::report`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Progress {
    /// The runner is booting an L1 for it.
    L1Booting,
    /// L1's agent is up (or a shared L1 was already).
    L1Ready,
    /// The agent starts libvirtd (libvirt backend).
    LibvirtdStarting,
    /// The plan's functions are on vfio-pci.
    BindDone,
    /// L2's QEMU is starting.
    L2Starting,
    /// L2 runs: `cont` (or `virsh resume`) went through.
    L2Running,
    /// L2 reported and powered off.
    L2Booted,
    /// Giving every function back.
    Teardown,
}

impl std::fmt::Display for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Progress::L1Booting => "booting L1",
            Progress::L1Ready => "L1 ready",
            Progress::LibvirtdStarting => "starting libvirtd",
            Progress::BindDone => "bound to vfio-pci",
            Progress::L2Starting => "starting L2",
            Progress::L2Running => "L2 running",
            Progress::L2Booted => "L2 reported",
            Progress::Teardown => "teardown",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stage_names_are_the_json_keys() {
        for stage in [
            Stage::Bind,
            Stage::L2QemuStart,
            Stage::L2DeviceAdd,
            Stage::L2Boot,
            Stage::L2BootKernel,
            Stage::L2BootInit,
            Stage::L2BootFirmwareAndExit,
            Stage::Teardown,
            Stage::LibvirtdStart,
            Stage::Define,
            Stage::Start,
            Stage::LibvirtL2Boot,
            Stage::Undefine,
        ] {
            let json = serde_json::to_string(&stage).unwrap();
            assert_eq!(json, format!("\"{}\"", stage.name()));
        }
    }
}
