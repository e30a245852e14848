//! The static schema rules R1–R8: what can be checked on the XML alone.
//!
//! Each rule is a row of [`STATIC_RULES`]: an id, a severity, a one-line
//! summary and a check that reports findings. The id and severity live in
//! the table, not in the checks, so that the table is the whole truth about
//! what the lab enforces.

use std::collections::HashMap;

use crate::pci::address::PciAddress;
use crate::schema::diagnostic::{sort_diagnostics, Diagnostic, Pos, RuleId, Severity};
use crate::schema::domain::{AddressKind, Assignment, Device, Domain};

/// What one check found: where, what, and what to write instead.
pub struct Finding {
    pub at: Pos,
    pub message: String,
    pub hint: String,
}

impl Finding {
    fn new(at: Pos, message: impl Into<String>, hint: impl Into<String>) -> Self {
        Finding {
            at,
            message: message.into(),
            hint: hint.into(),
        }
    }
}

pub struct Rule {
    pub id: RuleId,
    pub severity: Severity,
    pub summary: &'static str,
    pub check: fn(&Domain) -> Vec<Finding>,
}

pub const STATIC_RULES: &[Rule] = &[
    Rule {
        id: RuleId::R1,
        severity: Severity::Error,
        summary: "assigned takes yes or no",
        check: r1_assigned_value,
    },
    Rule {
        id: RuleId::R2,
        severity: Severity::Error,
        summary: "only <hostdev mode='subsystem' type='pci'> can be left unassigned",
        check: r2_only_pci_hostdevs,
    },
    Rule {
        id: RuleId::R3,
        severity: Severity::Error,
        summary: "an unassigned function gets no guest PCI address",
        check: r3_unassigned_with_pci_address,
    },
    Rule {
        id: RuleId::R4,
        severity: Severity::Error,
        summary: "assigned='yes' contradicts an unassigned/none address",
        check: r4_contradiction,
    },
    Rule {
        id: RuleId::R5,
        severity: Severity::Error,
        summary: "address type 'unassigned' is only for hostdevs",
        check: r5_unassigned_address_outside_hostdev,
    },
    Rule {
        id: RuleId::R6,
        severity: Severity::Error,
        summary: "a PCI hostdev's guest address is of type pci or unassigned",
        check: r6_pci_hostdev_address_type,
    },
    Rule {
        id: RuleId::R7,
        severity: Severity::Error,
        summary: "an unassigned hostdev carries no <acpi index>",
        check: r7_acpi_on_unassigned,
    },
    Rule {
        id: RuleId::R7,
        severity: Severity::Warning,
        summary: "<boot order> on an unassigned hostdev has no effect",
        check: r7_boot_on_unassigned,
    },
    Rule {
        id: RuleId::R8,
        severity: Severity::Error,
        summary: "one host function, one hostdev; one guest address, one device",
        check: r8_duplicates,
    },
];

/// Runs every static rule and returns the findings in file order.
pub fn check_static(domain: &Domain) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for rule in STATIC_RULES {
        for f in (rule.check)(domain) {
            out.push(Diagnostic::new(
                rule.id,
                rule.severity,
                &domain.file,
                f.at,
                f.message,
                f.hint,
            ));
        }
    }
    sort_diagnostics(&mut out);
    out
}

fn is_pci_subsystem_hostdev(device: &Device) -> bool {
    device
        .hostdev
        .as_ref()
        .is_some_and(|h| h.is_pci_subsystem())
}

/// A PCI hostdev that the guest does not get, in any spelling.
fn unassigned_pci_hostdevs(domain: &Domain) -> impl Iterator<Item = &Device> {
    domain
        .devices
        .iter()
        .filter(|d| is_pci_subsystem_hostdev(d) && d.assignment() == Assignment::Unassigned)
}

fn r1_assigned_value(domain: &Domain) -> Vec<Finding> {
    domain
        .devices
        .iter()
        .filter_map(|d| {
            let attr = d.assigned.as_ref()?;
            attr.value().is_none().then(|| {
                Finding::new(
                    attr.at,
                    format!(
                        "Invalid value for attribute 'assigned' in element '{}': '{}'.",
                        d.element, attr.raw
                    ),
                    "write assigned='yes' (the default) or assigned='no'",
                )
            })
        })
        .collect()
}

fn r2_only_pci_hostdevs(domain: &Domain) -> Vec<Finding> {
    let mut out = Vec::new();
    for d in domain
        .devices
        .iter()
        .filter(|d| !is_pci_subsystem_hostdev(d))
    {
        let what = match &d.hostdev {
            Some(h) => format!("<hostdev mode='{}' type='{}'>", h.mode, h.kind),
            None => format!("<{}>", d.element),
        };
        if let Some(attr) = &d.assigned {
            out.push(Finding::new(
                attr.at,
                format!("attribute 'assigned' is supported only for PCI host devices, not on {what}"),
                "remove assigned=…; only <hostdev mode='subsystem' type='pci'> can be left unassigned",
            ));
        }
        // Non-hostdev elements with such an address are R5's.
        if let (Some(_), Some(address)) = (&d.hostdev, &d.address) {
            if address.kind.means_unassigned() {
                out.push(Finding::new(
                    address.at,
                    format!(
                        "address of type '{}' is supported only for PCI host devices, not on {what}",
                        address.kind.type_name()
                    ),
                    "remove this <address>; only <hostdev mode='subsystem' type='pci'> can be left unassigned",
                ));
            }
        }
    }
    out
}

fn r3_unassigned_with_pci_address(domain: &Domain) -> Vec<Finding> {
    domain
        .devices
        .iter()
        .filter(|d| is_pci_subsystem_hostdev(d))
        .filter(|d| d.assigned.as_ref().and_then(|a| a.value()) == Some(false))
        .filter_map(|d| {
            let address = d.address.as_ref()?;
            matches!(address.kind, AddressKind::Pci { .. } | AddressKind::PciToAssign).then(|| {
                Finding::new(
                    address.at,
                    format!("{} has assigned='no' and a guest <address type='pci'>: an unassigned function gets no guest address", d.describe()),
                    "remove the <address type='pci' …/>, or remove assigned='no' to give the function to the guest",
                )
            })
        })
        .collect()
}

fn r4_contradiction(domain: &Domain) -> Vec<Finding> {
    domain
        .devices
        .iter()
        .filter(|d| is_pci_subsystem_hostdev(d))
        .filter(|d| d.assigned.as_ref().and_then(|a| a.value()) == Some(true))
        .filter_map(|d| {
            let address = d.address.as_ref()?;
            address.kind.means_unassigned().then(|| {
                let t = address.kind.type_name();
                Finding::new(
                    address.at,
                    format!("{} has assigned='yes' and <address type='{t}'/>, which says the opposite", d.describe()),
                    format!("keep one meaning: remove assigned='yes' to leave the function unassigned, or replace <address type='{t}'/> to give it to the guest"),
                )
            })
        })
        .collect()
}

fn r5_unassigned_address_outside_hostdev(domain: &Domain) -> Vec<Finding> {
    domain
        .devices
        .iter()
        .filter(|d| !d.is_hostdev())
        .filter_map(|d| {
            let address = d.address.as_ref()?;
            address.kind.means_unassigned().then(|| {
                Finding::new(
                    address.at,
                    format!("address of type '{}' is supported only for hostdevs", address.kind.type_name()),
                    format!("remove this <address> from <{}>; only <hostdev> elements can be left unassigned", d.element),
                )
            })
        })
        .collect()
}

fn r6_pci_hostdev_address_type(domain: &Domain) -> Vec<Finding> {
    domain
        .devices
        .iter()
        .filter(|d| is_pci_subsystem_hostdev(d))
        .filter_map(|d| {
            let address = d.address.as_ref()?;
            // An address with no type at all is already a VALUE error.
            matches!(&address.kind, AddressKind::Other(t) if !t.is_empty()).then(|| {
                Finding::new(
                    address.at,
                    "PCI host devices must use 'pci' or 'unassigned' address type",
                    "write <address type='pci' domain='0x0000' bus='0x00' slot='0x05' function='0x0'/> or <address type='unassigned'/>",
                )
            })
        })
        .collect()
}

fn r7_acpi_on_unassigned(domain: &Domain) -> Vec<Finding> {
    unassigned_pci_hostdevs(domain)
        .filter_map(|d| {
            let acpi = d.acpi_index.as_ref()?;
            Some(Finding::new(
                acpi.at,
                format!("ACPI index is only supported for PCI devices: {} is unassigned and has no guest PCI address", d.describe()),
                "remove <acpi index=…/> from the unassigned hostdev",
            ))
        })
        .collect()
}

fn r7_boot_on_unassigned(domain: &Domain) -> Vec<Finding> {
    unassigned_pci_hostdevs(domain)
        .filter_map(|d| {
            let boot = d.boot_order.as_ref()?;
            Some(Finding::new(
                boot.at,
                format!(
                    "<boot order='{}'/> has no effect: {} is unassigned, the guest never sees it",
                    boot.value,
                    d.describe()
                ),
                "remove <boot order=…/> from the unassigned hostdev",
            ))
        })
        .collect()
}

fn r8_duplicates(domain: &Domain) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut sources: HashMap<PciAddress, Pos> = HashMap::new();
    let mut guests: HashMap<PciAddress, (Pos, String)> = HashMap::new();
    for d in &domain.devices {
        if let Some(source) = d.pci_source() {
            if let Some(first) = sources.get(&source) {
                out.push(Finding::new(
                    d.at,
                    format!("Hostdev already exists in the domain configuration: {source} is also declared at line {}", first.line),
                    format!("declare host function {source} once; remove one of the two <hostdev> elements"),
                ));
            } else {
                sources.insert(source, d.at);
            }
        }
        // Unassigned hostdevs with a pci address are R3's; do not report twice.
        if is_pci_subsystem_hostdev(d) && d.assignment() == Assignment::Unassigned {
            continue;
        }
        if let (Some((guest, _)), Some(address)) = (d.guest_pci(), &d.address) {
            if let Some((first, who)) = guests.get(&guest) {
                out.push(Finding::new(
                    address.at,
                    format!("Attempted double use of PCI Address {guest} ({who} at line {} has it already)", first.line),
                    "give each device its own guest address, or leave the address out and let the lab pick a free slot",
                ));
            } else {
                guests.insert(guest, (address.at, d.describe()));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::schema::check::check_text;
    use crate::schema::diagnostic::RuleId;

    fn hostdev(function: u8, guest: &str) -> String {
        format!("<hostdev mode='subsystem' type='pci' managed='yes'><source><address bus='6' slot='0' function='{function}'/></source>{guest}</hostdev>")
    }

    #[test]
    fn slot_less_pci_addresses_are_no_double_use() {
        // Seen before: "Attempted double use of PCI Address 0000:00:00.0".
        let zpci = "<address type='pci'><zpci uid='0x0001' fid='0x0'/></address>";
        let xml = format!(
            "<devices>{}{}</devices>",
            hostdev(0, zpci),
            hostdev(1, "<address type='pci'/>")
        );
        let checked = check_text("x", &xml);
        assert!(checked.diagnostics.is_empty(), "{:?}", checked.diagnostics);
    }

    #[test]
    fn the_same_written_slot_twice_is_still_double_use() {
        let at = "<address type='pci' slot='0x05'/>";
        let xml = format!("<devices>{}{}</devices>", hostdev(0, at), hostdev(1, at));
        let rules: Vec<RuleId> = check_text("x", &xml)
            .diagnostics
            .iter()
            .map(|d| d.rule)
            .collect();
        assert_eq!(rules, [RuleId::R8]);
    }

    #[test]
    fn assigned_no_with_a_slot_less_pci_address_is_still_r3() {
        let xml = "<hostdev mode='subsystem' type='pci' assigned='no'><source><address slot='6'/></source><address type='pci'/></hostdev>";
        let rules: Vec<RuleId> = check_text("x", xml)
            .diagnostics
            .iter()
            .map(|d| d.rule)
            .collect();
        assert_eq!(rules, [RuleId::R3]);
    }
}
