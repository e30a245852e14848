//! The domain XML model: the devices of a libvirt domain, as far as the
//! partial-assignment rules and the plan need them.
//!
//! PCI hostdevs are read completely; other devices keep their element name
//! and guest `<address>`; everything else in a domain is read past.

use crate::pci::address::PciAddress;
use crate::schema::diagnostic::Pos;

/// A parsed input file: a `<domain>`, a `<devices>` or loose device elements.
#[derive(Clone, Debug, Default)]
pub struct Domain {
    /// The file name used in diagnostics.
    pub file: String,
    pub devices: Vec<Device>,
}

impl Domain {
    /// Whether any hostdev asks for IOMMUFD (`<driver iommufd='yes'/>`).
    pub fn wants_iommufd(&self) -> bool {
        self.devices
            .iter()
            .filter_map(|d| d.hostdev.as_ref())
            .any(|h| h.iommufd)
    }
}

/// One element under `<devices>`.
#[derive(Clone, Debug)]
pub struct Device {
    /// The element name: `hostdev`, `interface`, `disk`, …
    pub element: String,
    pub at: Pos,
    /// The `assigned=` attribute as written, if any.
    pub assigned: Option<AssignedAttr>,
    /// The guest-side `<address>` (a direct child of the device).
    pub address: Option<GuestAddress>,
    /// `<acpi index=…>`
    pub acpi_index: Option<Located<u32>>,
    /// `<boot order=…>`
    pub boot_order: Option<Located<u32>>,
    /// Filled in for `<hostdev>` elements only.
    pub hostdev: Option<Hostdev>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Located<T> {
    pub value: T,
    pub at: Pos,
}

/// `assigned='…'` as written; R1 decides whether it is a valid value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AssignedAttr {
    pub raw: String,
    pub at: Pos,
}

impl AssignedAttr {
    /// `Some(true)` for `yes`, `Some(false)` for `no`, `None` for anything else.
    pub fn value(&self) -> Option<bool> {
        match self.raw.as_str() {
            "yes" => Some(true),
            "no" => Some(false),
            _ => None,
        }
    }
}

/// The guest address of a device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuestAddress {
    pub kind: AddressKind,
    pub at: Pos,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AddressKind {
    Pci {
        address: PciAddress,
        multifunction: bool,
    },
    /// `<address type='pci'>` whose domain, bus and slot are all 0 (or not
    /// written, as in s390's `<address type='pci'><zpci …/></address>`):
    /// libvirt reads it as "give this device a PCI address"
    /// (`virPCIDeviceAddressIsEmpty`), so it is no guest address yet and
    /// collides with nothing.
    PciToAssign,
    /// libvirt's spelling (6.0.0 and later).
    Unassigned,
    /// The spelling suggested in review; libvirt never took it.
    None,
    /// Any other type (`drive`, `usb`, `ccw`, …), kept by name.
    Other(String),
}

impl AddressKind {
    pub fn type_name(&self) -> &str {
        match self {
            AddressKind::Pci { .. } | AddressKind::PciToAssign => "pci",
            AddressKind::Unassigned => "unassigned",
            AddressKind::None => "none",
            AddressKind::Other(name) => name,
        }
    }

    /// Whether this address type says "not given to the guest".
    pub fn means_unassigned(&self) -> bool {
        matches!(self, AddressKind::Unassigned | AddressKind::None)
    }
}

/// The parts of a `<hostdev>` the rules and the plan read.
#[derive(Clone, Debug)]
pub struct Hostdev {
    /// `mode=` (`subsystem` when absent, as in libvirt).
    pub mode: String,
    /// `type=` (`pci`, `usb`, `scsi`, `mdev`, …).
    pub kind: String,
    /// `managed='yes'`; absent means no, as in libvirt.
    pub managed: bool,
    /// The host PCI address in `<source><address …/></source>`, for PCI hostdevs.
    pub source: Option<Located<PciAddress>>,
    /// `<driver name=…>` (`vfio`, `kvm`, …).
    pub driver_name: Option<String>,
    /// `<driver iommufd='yes'/>` (libvirt 12): QEMU gets the VFIO device
    /// through IOMMUFD (`/dev/iommu` and the device's cdev) instead of its
    /// group's `/dev/vfio/N`.
    pub iommufd: bool,
}

impl Hostdev {
    /// `<hostdev mode='subsystem' type='pci'>`: the only kind that can be
    /// left unassigned.
    pub fn is_pci_subsystem(&self) -> bool {
        self.mode == "subsystem" && self.kind == "pci"
    }
}

/// The one meaning behind the three spellings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Assignment {
    /// The guest gets the function.
    Assigned,
    /// Detached from the host (when managed) but not given to the guest.
    Unassigned,
}

impl Device {
    pub fn is_hostdev(&self) -> bool {
        self.hostdev.is_some()
    }

    /// Normalizes `assigned='no'`, `<address type='unassigned'/>` and
    /// `<address type='none'/>` to one answer. Contradictions are R4's
    /// business; here any "no" wins.
    pub fn assignment(&self) -> Assignment {
        let attr_no = self.assigned.as_ref().and_then(|a| a.value()) == Some(false);
        let address_no = self
            .address
            .as_ref()
            .is_some_and(|a| a.kind.means_unassigned());
        if attr_no || address_no {
            Assignment::Unassigned
        } else {
            Assignment::Assigned
        }
    }

    /// The host PCI function of a PCI subsystem hostdev.
    pub fn pci_source(&self) -> Option<PciAddress> {
        let hostdev = self.hostdev.as_ref()?;
        if !hostdev.is_pci_subsystem() {
            return None;
        }
        hostdev.source.as_ref().map(|s| s.value)
    }

    /// The guest PCI address written in the XML, if it is of type `pci` and
    /// names a slot ([`AddressKind::PciToAssign`] names none).
    pub fn guest_pci(&self) -> Option<(PciAddress, bool)> {
        match self.address.as_ref()?.kind {
            AddressKind::Pci {
                address,
                multifunction,
            } => Some((address, multifunction)),
            _ => None,
        }
    }

    /// How to name the device in a message: `hostdev 0000:00:06.1`, `<disk>`.
    pub fn describe(&self) -> String {
        match self.pci_source() {
            Some(address) => format!("hostdev {address}"),
            None => format!("<{}>", self.element),
        }
    }
}
