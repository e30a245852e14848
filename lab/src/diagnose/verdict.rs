//! The verdict on each IOMMU group the reporter's XML touches: for every
//! member, how the XML declares it, whether it blocks the group, and
//! whether the host needs it (host-critical), each with why in one line.

use serde::{Serialize, Serializer};

use super::paste::{HostDriver, Interface, Paste, PastedFunction};
use crate::pci::address::PciAddress;
use crate::schema::domain::{Assignment, Domain};

/// How the reporter's XML declares a function.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Declared {
    Assigned,
    Unassigned,
    Undeclared,
}

/// One member of a group, judged.
#[derive(Clone, Debug, Serialize)]
pub struct MemberVerdict {
    pub address: PciAddress,
    /// `0403`, as lspci prints the class; null when the paste has only
    /// the address.
    #[serde(serialize_with = "class_hex")]
    pub class: Option<u32>,
    pub description: String,
    /// The driver on the reporter's host: a name, `"none"`, or null when
    /// the paste does not say.
    pub driver: HostDriver,
    pub declared: Declared,
    /// `managed=` of its hostdev, when declared.
    pub managed: Option<bool>,
    pub blocks: bool,
    pub host_critical: bool,
    pub why: String,
    /// What the host needs it for, when it does (the first part of `why`).
    #[serde(skip)]
    pub needed_for: Option<String>,
}

fn class_hex<S: Serializer>(class: &Option<u32>, s: S) -> Result<S::Ok, S::Error> {
    match class {
        Some(c) => s.serialize_str(&format!("{:04x}", c >> 8)),
        None => s.serialize_none(),
    }
}

/// One group the XML touches.
#[derive(Clone, Debug, Serialize)]
pub struct GroupVerdict {
    pub group: u32,
    pub members: Vec<MemberVerdict>,
    /// Line of a reported error that names this group.
    pub reported_on_line: Option<usize>,
}

impl GroupVerdict {
    pub fn blockers(&self) -> impl Iterator<Item = &MemberVerdict> {
        self.members.iter().filter(|m| m.blocks)
    }

    /// Members the host needs that would have to leave it for any
    /// function of the group to reach the guest.
    pub fn critical_in_the_way(&self) -> impl Iterator<Item = &MemberVerdict> {
        let assigns = self
            .members
            .iter()
            .any(|m| m.declared == Declared::Assigned);
        self.members
            .iter()
            .filter(move |m| assigns && m.host_critical && m.declared != Declared::Assigned)
    }
}

/// What the paste says about the host around a function.
pub(super) struct Context<'a> {
    pub paste: &'a Paste,
    pub domain: &'a Domain,
}

impl Context<'_> {
    fn declared(&self, address: PciAddress) -> (Declared, Option<bool>) {
        let device = self
            .domain
            .devices
            .iter()
            .find(|d| d.pci_source() == Some(address));
        match device {
            None => (Declared::Undeclared, None),
            Some(d) => {
                let managed = d.hostdev.as_ref().map(|h| h.managed);
                match d.assignment() {
                    Assignment::Assigned => (Declared::Assigned, managed),
                    Assignment::Unassigned => (Declared::Unassigned, managed),
                }
            }
        }
    }

    /// Whether `address` is a function of a slot the XML assigns from:
    /// the card's own functions (a GPU's USB-C controller).
    fn on_an_assigned_card(&self, address: PciAddress) -> bool {
        self.domain.devices.iter().any(|d| {
            d.assignment() == Assignment::Assigned
                && d.pci_source().is_some_and(|s| s.same_slot(address))
        })
    }
}

/// The verdict on group `group` with `members`.
pub(super) fn judge_group(ctx: &Context, group: u32, members: &[PciAddress]) -> GroupVerdict {
    let members = members
        .iter()
        .map(|&address| judge_member(ctx, address))
        .collect();
    let reported_on_line = ctx
        .paste
        .errors
        .iter()
        .find(|e| e.group == Some(group))
        .map(|e| e.line);
    GroupVerdict {
        group,
        members,
        reported_on_line,
    }
}

fn judge_member(ctx: &Context, address: PciAddress) -> MemberVerdict {
    let unknown = PastedFunction {
        address,
        ..PastedFunction::default()
    };
    let f = ctx.paste.function(address).unwrap_or(&unknown);
    let (declared, managed) = ctx.declared(address);
    let critical = if f.is_bridge() {
        None
    } else {
        host_critical(ctx, f)
    };
    let (blocks, why) = if f.is_bridge() {
        (
            false,
            "a PCI bridge: it stays with the host and does not count against the group".to_string(),
        )
    } else {
        blocking(f, declared, managed)
    };
    let why = match &critical {
        Some(c) => format!("{c}; {why}"),
        None => why,
    };

    MemberVerdict {
        address,
        class: f.class,
        description: f.description.clone(),
        driver: f.driver.clone(),
        declared,
        managed,
        blocks,
        host_critical: critical.is_some(),
        why,
        needed_for: critical,
    }
}

/// Whether an endpoint keeps its group from going to the guest, and why.
fn blocking(f: &PastedFunction, declared: Declared, managed: Option<bool>) -> (bool, String) {
    let driver = &f.driver;
    match declared {
        Declared::Undeclared => (
            true,
            match driver {
                HostDriver::Bound(d) if is_vfio_safe(d) => format!(
                    "not in the XML; on {d} now, but libvirt gives it back to the host at the next reattach: declare it"
                ),
                HostDriver::Bound(d) => format!(
                    "not in the XML and on {d}: while a host driver has it, QEMU finds the group not viable"
                ),
                HostDriver::None => "not in the XML; no driver has it now, but any host driver that binds it makes the group not viable: declare it".into(),
                HostDriver::NotShown => "not in the XML (the paste does not show its driver; `lspci -nnk` would)".into(),
            },
        ),
        _ if managed == Some(false) && driver.name().is_some_and(|d| !is_vfio_safe(d)) => (
            true,
            format!(
                "managed='no' and on {}: detach it by hand (virsh nodedev-detach) or write managed='yes'",
                driver.name().unwrap_or_default()
            ),
        ),
        Declared::Assigned => (false, "assigned: the guest gets it".into()),
        Declared::Unassigned => (
            false,
            "declared unassigned: detached from the host, not given to the guest".into(),
        ),
    }
}

fn is_vfio_safe(driver: &str) -> bool {
    matches!(driver, "vfio-pci" | "pci-stub")
}

/// Why the host needs this function, when it does.
fn host_critical(ctx: &Context, f: &PastedFunction) -> Option<String> {
    let class = f.class_code()?;
    match class {
        0x0600 => Some("the host bridge".into()),
        0x0601 => Some("the ISA/LPC bridge: the host's firmware devices (TPM, sensors, keyboard controller) sit behind it".into()),
        0x0c05 => Some("the SMBus controller: the host's sensors and memory SPD are on it".into()),
        0x0c03 => uplink(ctx, f).or_else(|| usb_in_use(ctx, f)),
        0x0100..=0x01ff => holds_root(ctx, f),
        0x0200..=0x02ff => uplink(ctx, f),
        _ => None,
    }
}

fn usb_in_use(ctx: &Context, f: &PastedFunction) -> Option<String> {
    let driver = f.driver.name()?;
    if is_vfio_safe(driver) || ctx.on_an_assigned_card(f.address) {
        return None;
    }
    Some(format!(
        "a USB controller the host drives ({driver}): whatever is plugged into it leaves with it"
    ))
}

/// Storage: the controller holding `/`, as far as the paste says.
fn holds_root(ctx: &Context, f: &PastedFunction) -> Option<String> {
    let paste = ctx.paste;
    let in_use = f.driver.name().filter(|d| !is_vfio_safe(d));
    let Some(root) = &paste.root else {
        return in_use.map(|d| {
            format!("a storage controller in use ({d}), and the paste does not say what holds / (`findmnt /` would)")
        });
    };
    if let Some(controller) = root.controller {
        return (controller == f.address).then(|| format!("holds / ({})", root.source));
    }
    let disk = root.disk.as_deref()?;
    let kind = if disk.starts_with("nvme") {
        Some(0x0108)
    } else if disk.starts_with("sd") || disk.starts_with("hd") {
        None
    } else {
        return in_use.map(|d| format!("a storage controller in use ({d}); / is on {disk}"));
    };
    let candidates: Vec<&PastedFunction> = paste
        .functions
        .values()
        .filter(|c| match (kind, c.class_code()) {
            (Some(k), Some(cc)) => cc == k,
            (None, Some(cc)) => (0x0100..=0x01ff).contains(&cc) && cc != 0x0108,
            _ => false,
        })
        .collect();
    if !candidates.iter().any(|c| c.address == f.address) {
        return None;
    }
    Some(match candidates.len() {
        1 => format!("holds / ({}; the only such controller in the paste)", root.source),
        n => format!(
            "may hold / ({} is on one of {n} such controllers and the paste does not say which; `ls -l /sys/block` would)",
            root.source
        ),
    })
}

/// A NIC whose interface carries the host's traffic.
fn uplink(ctx: &Context, f: &PastedFunction) -> Option<String> {
    let all: &[Interface] = &ctx.paste.interfaces;
    all.iter()
        .filter(|i| i.pci == Some(f.address))
        .find_map(|i| {
            let through = i.carries_traffic(all)?;
            let usb = f.class_code() == Some(0x0c03);
            Some(if usb {
                format!(
                    "the host's network interface {} (up with {}) is a USB device on it",
                    i.name,
                    through.addresses.join(" ")
                )
            } else if through.name == i.name {
                format!(
                    "its interface {} is up with {}: the host's network goes through it",
                    i.name,
                    i.addresses.join(" ")
                )
            } else {
                format!(
                    "its interface {} is a port of {}, which is up with {}",
                    i.name,
                    through.name,
                    through.addresses.join(" ")
                )
            })
        })
}
