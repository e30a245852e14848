//! The plan: from a domain and a host view, decide what to detach, what to
//! give the guest (and where), what to leave unassigned, and what to give
//! back at teardown. A pure function: it reads, it never touches a device.
//!
//! Host rules checked here (DESIGN.md): R9 `assigned=` only on functions of
//! a multifunction device, R10 no bridges, R11 every endpoint of an assigned
//! function's IOMMU group is declared, R12 unmanaged groups are detached
//! already, R13 a guest slot with several functions has function 0 with
//! multifunction='on'.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::host_rules::{report, Asker, Violation};
use crate::pci::address::PciAddress;
use crate::pci::view::{HostView, PciFunction, VFIO_DRIVER};
use crate::schema::diagnostic::{Diagnostic, ErrorList};
use crate::schema::domain::{Assignment, Device, Domain};
use crate::schema::rules::check_static;

/// How to decide what leaves the host.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    /// Partial assignment: declared functions are detached whether assigned
    /// or not, and R11/R12 make sure whole groups are accounted for.
    #[default]
    Fixed,
    /// libvirt before the fix: detach only the declared, assigned, managed
    /// hostdevs and check nothing about their groups, so that QEMU's
    /// "group N is not viable" can be reproduced.
    Legacy,
}

/// The first guest slot the lab hands out. Slots 0x00–0x04 are left to the
/// inner guest's own devices (host bridge, console, 9p, …); 0x1f is ICH9's.
pub const FIRST_GUEST_SLOT: u8 = 0x05;
pub const LAST_GUEST_SLOT: u8 = 0x1e;

/// The lowest guest slot not in `taken`, now taken; `None` when the root
/// bus has none left.
pub fn take_free_slot(taken: &mut BTreeSet<u8>) -> Option<u8> {
    let slot = (FIRST_GUEST_SLOT..=LAST_GUEST_SLOT).find(|s| !taken.contains(s))?;
    taken.insert(slot);
    Some(slot)
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Assign {
    pub host: PciAddress,
    pub guest: PciAddress,
    /// `multifunction=on` for QEMU: set on function 0 of a shared guest slot.
    #[serde(skip)]
    pub multifunction: bool,
    /// The guest address the XML wrote, when L2 got another: one on a bus
    /// of the domain's own controllers (libvirt's q35 gives each hostdev a
    /// pcie-root-port, so a pasted hostdev sits at guest bus 0x01 or
    /// later), while the lab's L2 has only its root bus.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub written: Option<PciAddress>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Restore {
    pub host: PciAddress,
    /// The driver the function had; `None` when it had none.
    pub driver: Option<String>,
}

/// What executing the domain means for the host. Lists are sorted by host
/// address; [`Plan::realize_order`] gives the order QEMU needs.
///
/// Its JSON (`mflab plan --format json`, a scenario's expected plan, the
/// agent's outcome) holds the four lists; `multifunction`, the groups and
/// the warnings are for the process that planned, and read back empty.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    /// Functions this plan rebinds to vfio-pci (not those already there).
    pub detach: Vec<PciAddress>,
    pub assign: Vec<Assign>,
    pub unassigned: Vec<PciAddress>,
    /// What teardown gives back: managed functions it detached, each to its driver.
    pub restore: Vec<Restore>,
    /// The IOMMU groups involved, for people reading the plan.
    #[serde(skip, default)]
    pub groups: Vec<GroupPlan>,
    /// Warnings from the static rules (errors stop the plan).
    #[serde(skip, default)]
    pub warnings: Vec<Diagnostic>,
}

/// One IOMMU group and what happens to each of its functions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupPlan {
    pub group: u32,
    pub members: Vec<(PciFunction, Fate)>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fate {
    DetachAndAssign { guest: PciAddress },
    DetachOnly,
    AssignAsIs { guest: PciAddress },
    LeftAsIs { declared: bool },
    Bridge,
}

impl Plan {
    /// A plan that only moves these functions to vfio-pci and gives nothing
    /// to a guest: an administrator's manual detach (`virsh nodedev-detach`).
    pub fn detach_only(functions: Vec<PciAddress>) -> Plan {
        Plan {
            detach: functions,
            assign: vec![],
            unassigned: vec![],
            restore: vec![],
            groups: vec![],
            warnings: vec![],
        }
    }

    /// The order to realize assigned functions in: within a guest slot,
    /// function 0 last, because QEMU checks the slot when function 0 appears.
    pub fn realize_order(&self) -> Vec<&Assign> {
        let mut order: Vec<&Assign> = self.assign.iter().collect();
        order.sort_by_key(|a| (a.guest.function0(), a.guest.function == 0, a.guest.function));
        order
    }
}

/// A PCI hostdev of the domain with what the host says about it.
struct Declared<'a> {
    device: &'a Device,
    source: PciAddress,
    managed: bool,
    assignment: Assignment,
}

/// Decides the plan, or says every rule the domain breaks on this host.
pub fn plan(domain: &Domain, host: &HostView, policy: Policy) -> Result<Plan, Vec<Diagnostic>> {
    let static_findings = check_static(domain);
    let (errors, warnings): (Vec<_>, Vec<_>) =
        static_findings.into_iter().partition(Diagnostic::is_error);
    if !errors.is_empty() {
        return Err(errors);
    }
    let mut out = ErrorList::new(&domain.file);

    let declared: Vec<Declared> = domain
        .devices
        .iter()
        .filter_map(|d| {
            Some(Declared {
                device: d,
                source: d.pci_source()?,
                managed: d.hostdev.as_ref()?.managed,
                assignment: d.assignment(),
            })
        })
        .collect();
    let by_source: BTreeMap<PciAddress, &Declared> =
        declared.iter().map(|d| (d.source, d)).collect();

    // Step 1: each hostdev on its own (exists, endpoint, R9).
    for d in &declared {
        check_one_hostdev(d, host, &mut out);
    }
    if !out.is_empty() {
        return Err(out.into_sorted());
    }

    // Step 2: what leaves the host.
    let detach: Vec<PciAddress> = declared
        .iter()
        .filter(|d| d.managed)
        .filter(|d| policy == Policy::Fixed || d.assignment == Assignment::Assigned)
        .filter(|d| host.function(d.source).and_then(|f| f.driver.as_deref()) != Some(VFIO_DRIVER))
        .map(|d| d.source)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();

    // Step 3: the groups (R11, R12).
    let involved: BTreeSet<u32> = declared
        .iter()
        .filter_map(|d| host.function(d.source)?.iommu_group)
        .collect();
    for &group in &involved {
        let members = &host.groups[&group];
        check_group(
            group, members, &declared, &by_source, &detach, host, policy, &mut out,
        );
    }

    // Step 4: guest addresses (R13 and the default slots).
    let assign = guest_addresses(&declared, domain, &mut out);
    if !out.is_empty() {
        return Err(out.into_sorted());
    }

    let unassigned: Vec<PciAddress> = declared
        .iter()
        .filter(|d| d.assignment == Assignment::Unassigned)
        .map(|d| d.source)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let restore = detach
        .iter()
        .map(|&a| Restore {
            host: a,
            driver: host.function(a).and_then(|f| f.driver.clone()),
        })
        .collect();
    let groups = involved
        .iter()
        .map(|&g| describe_group(g, host, &by_source, &detach, &assign))
        .collect();
    Ok(Plan {
        detach,
        assign,
        unassigned,
        restore,
        groups,
        warnings,
    })
}

fn check_one_hostdev(d: &Declared, host: &HostView, out: &mut ErrorList) {
    let source = d.source;
    let Some(function) = host.function(source) else {
        return report(
            out,
            d.device.at,
            Violation::NotOnHost { source },
            Asker::Plan,
        );
    };
    if function.is_bridge() {
        return report(
            out,
            d.device.at,
            Violation::NotAnEndpoint { source },
            Asker::Plan,
        );
    }
    if function.iommu_group.is_none() {
        report(
            out,
            d.device.at,
            Violation::NoIommuGroup { source },
            Asker::Plan,
        );
    }
    if let Some(attr) = &d.device.assigned {
        if !host.is_multifunction(source) {
            let written = attr.raw.as_str();
            let v = Violation::AssignedOnSingleFunction { source, written };
            report(out, attr.at, v, Asker::Plan);
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn check_group(
    group: u32,
    members: &[PciAddress],
    declared: &[Declared],
    by_source: &BTreeMap<PciAddress, &Declared>,
    detach: &[PciAddress],
    host: &HostView,
    policy: Policy,
    out: &mut ErrorList,
) {
    let endpoints: Vec<&PciFunction> = members
        .iter()
        .filter_map(|a| host.function(*a))
        .filter(|f| !f.is_bridge())
        .collect();
    let in_group =
        |d: &&Declared| host.function(d.source).and_then(|f| f.iommu_group) == Some(group);

    // R11: a managed, assigned function pulls in its whole group.
    if policy == Policy::Fixed {
        if let Some(first) = declared
            .iter()
            .filter(in_group)
            .find(|d| d.managed && d.assignment == Assignment::Assigned)
        {
            let missing: Vec<(PciAddress, String)> = endpoints
                .iter()
                .filter(|f| !by_source.contains_key(&f.address))
                .map(|f| (f.address, f.driver_name().to_string()))
                .collect();
            if !missing.is_empty() {
                let declare: Vec<String> = missing
                    .iter()
                    .map(|(a, _)| unassigned_hostdev_xml(*a))
                    .collect();
                let v = Violation::GroupIncomplete {
                    group,
                    source: first.source,
                    missing: &missing,
                    declare: &declare,
                };
                report(out, first.device.at, v, Asker::Plan);
            }
        }
    }

    // R12: an unmanaged hostdev needs its group (legacy: itself) off host drivers.
    // Each offending function is reported once: at its own hostdev when it is
    // declared unmanaged, else at the first unmanaged hostdev of the group.
    let unmanaged: Vec<&Declared> = declared
        .iter()
        .filter(in_group)
        .filter(|d| !d.managed)
        .collect();
    let Some(first_unmanaged) = unmanaged.first() else {
        return;
    };
    let offending = endpoints
        .iter()
        .filter(|f| !f.is_vfio_safe() && !detach.contains(&f.address))
        .filter(|f| policy == Policy::Fixed || unmanaged.iter().any(|d| d.source == f.address));
    for f in offending {
        let own = unmanaged.iter().find(|d| d.source == f.address);
        let by = own.unwrap_or(first_unmanaged);
        let v = Violation::UnmanagedOnHost {
            source: by.source,
            group,
            offending: f.address,
            driver: f.driver_name(),
        };
        report(out, by.device.at, v, Asker::Plan);
    }
}

fn unassigned_hostdev_xml(a: PciAddress) -> String {
    format!(
        "<hostdev mode='subsystem' type='pci' managed='yes'><source><address domain='{:#06x}' bus='{:#04x}' slot='{:#04x}' function='{:#x}'/></source><address type='unassigned'/></hostdev>",
        a.domain, a.bus, a.slot, a.function
    )
}

/// Explicit guest addresses as written (R13 on shared slots); the others get
/// a slot of their own as function 0, from [`FIRST_GUEST_SLOT`] up.
fn guest_addresses(declared: &[Declared], domain: &Domain, out: &mut ErrorList) -> Vec<Assign> {
    let assigned: Vec<&Declared> = declared
        .iter()
        .filter(|d| d.assignment == Assignment::Assigned)
        .collect();

    let mut slots: BTreeMap<PciAddress, Vec<(&Declared, PciAddress, bool)>> = BTreeMap::new();
    for d in &assigned {
        if let Some((guest, multifunction)) = d.device.guest_pci() {
            slots
                .entry(guest.function0())
                .or_default()
                .push((d, guest, multifunction));
        }
    }
    for (slot, functions) in &slots {
        if functions.len() < 2 && functions.iter().all(|(_, g, _)| g.function == 0) {
            continue;
        }
        match functions.iter().find(|(_, g, _)| g.function == 0) {
            None => {
                let (d, guest, _) = functions[0];
                let at = d.device.address.as_ref().map_or(d.device.at, |a| a.at);
                let v = Violation::SlotWithoutFunction0 { slot: *slot, guest };
                report(out, at, v, Asker::Plan);
            }
            Some((d, _, false)) if functions.len() > 1 => {
                let at = d.device.address.as_ref().map_or(d.device.at, |a| a.at);
                let v = Violation::SlotWithoutMultifunction {
                    slot: *slot,
                    functions: functions.len(),
                };
                report(out, at, v, Asker::Plan);
            }
            _ => {}
        }
    }

    // Slots already taken by any device with a PCI address on guest bus 0.
    let mut taken: BTreeSet<u8> = domain
        .devices
        .iter()
        .filter_map(|d| d.guest_pci())
        .filter(|(g, _)| g.domain == 0 && g.bus == 0)
        .map(|(g, _)| g.slot)
        .collect();
    // A slot on another guest bus moves to a free root-bus slot, its
    // functions together.
    let mut moved: BTreeMap<PciAddress, u8> = BTreeMap::new();
    let mut result = Vec::new();
    for d in assigned {
        let explicit = d.device.guest_pci().map(|(guest, multifunction)| {
            if guest.domain == 0 && guest.bus == 0 {
                return Some((guest, multifunction, None));
            }
            let slot = match moved.get(&guest.function0()) {
                Some(slot) => *slot,
                None => {
                    let slot = take_free_slot(&mut taken)?;
                    moved.insert(guest.function0(), slot);
                    slot
                }
            };
            let on_root = PciAddress::new(0, 0, slot, guest.function);
            Some((on_root, multifunction, Some(guest)))
        });
        let mut written = None;
        let (guest, multifunction) = match explicit {
            Some(Some((guest, multifunction, was))) => {
                written = was;
                (guest, multifunction)
            }
            Some(None) => {
                report(out, d.device.at, Violation::NoFreeGuestSlot, Asker::Plan);
                continue;
            }
            None => match take_free_slot(&mut taken) {
                Some(slot) => (PciAddress::new(0, 0, slot, 0), false),
                None => {
                    report(out, d.device.at, Violation::NoFreeGuestSlot, Asker::Plan);
                    continue;
                }
            },
        };
        result.push(Assign {
            host: d.source,
            guest,
            multifunction,
            written,
        });
    }
    result.sort_by_key(|a| a.host);
    result
}

fn describe_group(
    group: u32,
    host: &HostView,
    by_source: &BTreeMap<PciAddress, &Declared>,
    detach: &[PciAddress],
    assign: &[Assign],
) -> GroupPlan {
    let members = host.groups[&group]
        .iter()
        .filter_map(|a| host.function(*a))
        .map(|f| {
            let guest = assign.iter().find(|x| x.host == f.address).map(|x| x.guest);
            let detached = detach.contains(&f.address);
            let fate = match (f.is_bridge(), guest, detached) {
                (true, _, _) => Fate::Bridge,
                (false, Some(guest), true) => Fate::DetachAndAssign { guest },
                (false, Some(guest), false) => Fate::AssignAsIs { guest },
                (false, None, true) => Fate::DetachOnly,
                (false, None, false) => Fate::LeftAsIs {
                    declared: by_source.contains_key(&f.address),
                },
            };
            (f.clone(), fate)
        })
        .collect();
    GroupPlan { group, members }
}

/// The plan for people: each group, each function, its driver now, its fate.
pub fn render_plan_text(plan: &Plan) -> String {
    let mut s = String::new();
    for g in &plan.groups {
        s.push_str(&format!("IOMMU group {}:\n", g.group));
        for (f, fate) in &g.members {
            let what = match fate {
                Fate::DetachAndAssign { guest } => {
                    format!("detach to vfio-pci, give to the guest at {guest}")
                }
                Fate::AssignAsIs { guest } => {
                    format!("already on vfio-pci, give to the guest at {guest}")
                }
                Fate::DetachOnly => {
                    "detach to vfio-pci, unassigned (the guest does not get it)".to_string()
                }
                Fate::LeftAsIs { declared: true } => "declared, left as it is".to_string(),
                Fate::LeftAsIs { declared: false } => "not declared, left as it is".to_string(),
                Fate::Bridge => "bridge, left as it is".to_string(),
            };
            s.push_str(&format!(
                "  {} {} class {:06x} on {:<14} -> {what}\n",
                f.address,
                f.ids(),
                f.class,
                f.driver_name()
            ));
        }
    }
    if plan.restore.is_empty() {
        s.push_str("teardown: nothing to give back\n");
    } else {
        s.push_str("teardown gives back:\n");
        for r in &plan.restore {
            s.push_str(&format!(
                "  {} -> {}\n",
                r.host,
                r.driver.as_deref().unwrap_or("no driver")
            ));
        }
    }
    s
}
