//! The host's PCI view: every PCI function with its ids, driver and IOMMU
//! group, as the kernel shows them in sysfs.
//!
//! The sysfs root is a parameter everywhere (`/sys` in L1, a temporary
//! tree in tests), as libvirt's virpcimock does.

mod fake_tree;
pub(crate) mod sysfs;

use std::collections::BTreeMap;

use serde::Serialize;

pub use fake_tree::{FakeFunction, FakeSysfs};
pub use sysfs::{read_host_view, HostViewError};

use crate::pci::address::PciAddress;

/// Drivers that leave a function safe for VFIO group viability.
pub const VFIO_SAFE_DRIVERS: &[&str] = &["vfio-pci", "pci-stub"];
pub const VFIO_DRIVER: &str = "vfio-pci";

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PciFunction {
    pub address: PciAddress,
    pub vendor: u16,
    pub device: u16,
    /// The 24-bit class code, e.g. 0x038000.
    pub class: u32,
    /// Config space byte 0x0e.
    pub header_type: u8,
    /// The bound driver, `None` when no driver has it.
    pub driver: Option<String>,
    pub driver_override: Option<String>,
    pub iommu_group: Option<u32>,
}

impl PciFunction {
    /// A bridge is not an endpoint: it cannot be a hostdev and need not be
    /// detached for its group to be viable.
    pub fn is_bridge(&self) -> bool {
        matches!(self.header_type & 0x7f, 1 | 2) || (self.class >> 8) == 0x0604
    }

    /// Whether this function's driver keeps a VFIO group viable.
    pub fn is_vfio_safe(&self) -> bool {
        match &self.driver {
            None => true,
            Some(d) => VFIO_SAFE_DRIVERS.contains(&d.as_str()),
        }
    }

    pub fn driver_name(&self) -> &str {
        self.driver.as_deref().unwrap_or("no driver")
    }

    /// `[1234:1111]`, as lspci -nn prints ids.
    pub fn ids(&self) -> String {
        format!("[{:04x}:{:04x}]", self.vendor, self.device)
    }
}

/// All PCI functions of a host and its IOMMU groups.
#[derive(Clone, Debug, Default)]
pub struct HostView {
    pub functions: BTreeMap<PciAddress, PciFunction>,
    /// Group number -> members, from `kernel/iommu_groups/N/devices`.
    pub groups: BTreeMap<u32, Vec<PciAddress>>,
}

impl HostView {
    pub fn function(&self, address: PciAddress) -> Option<&PciFunction> {
        self.functions.get(&address)
    }

    /// A device is multifunction when function 0 sets bit 7 of its header
    /// type, or when the host shows more than one function in its slot.
    pub fn is_multifunction(&self, address: PciAddress) -> bool {
        let header_bit = self
            .function(address.function0())
            .is_some_and(|f| f.header_type & 0x80 != 0);
        let siblings = self
            .functions
            .keys()
            .filter(|a| a.same_slot(address))
            .count();
        header_bit || siblings > 1
    }

    /// The members of a function's IOMMU group (the function itself included).
    pub fn group_of(&self, address: PciAddress) -> Option<(u32, &[PciAddress])> {
        let group = self.function(address)?.iommu_group?;
        self.groups.get(&group).map(|m| (group, m.as_slice()))
    }
}
