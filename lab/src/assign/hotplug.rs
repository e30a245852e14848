//! Steps on a running L2, planned: what an `attach` or `detach` of hostdev
//! XML means for the host at that moment. A pure function of the step's
//! domain, the host view now and what the running domain already holds;
//! it never touches a device.
//!
//! The group rules hold at hotplug time as at start:
//! - attach: every endpoint of an assigned function's IOMMU group is held
//!   by the domain already or attached in the same step (R11), and an
//!   unmanaged function's group is off host drivers (R12); everything is
//!   checked before anything is touched;
//! - an unassigned function is detached from the host and held, but never
//!   given to QEMU;
//! - detach: only what the domain holds, and never a function whose
//!   group keeps an assigned function in the guest (the group would no
//!   longer be viable: R11 again).

use std::collections::BTreeSet;

use super::host_rules::{report, Asker, Violation};
use crate::assign::plan::{take_free_slot, Assign, Plan, Restore};
use crate::pci::address::PciAddress;
use crate::pci::view::{HostView, VFIO_DRIVER};
use crate::schema::diagnostic::{Diagnostic, ErrorList, Pos, RuleId};
use crate::schema::domain::{Assignment, Domain};
use crate::schema::rules::check_static;

/// One function the running domain holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Held {
    pub host: PciAddress,
    pub managed: bool,
    /// Where the guest has it and QEMU's device id; `None` for an
    /// unassigned function (held on vfio-pci, not given to QEMU).
    pub guest: Option<(PciAddress, String)>,
    /// The driver to give it back to, when this domain detached it.
    pub restore: Option<Restore>,
}

/// What the running domain holds, and the next QEMU device id to hand out.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Attached {
    pub held: Vec<Held>,
    next_id: usize,
}

impl Attached {
    /// The start: what the domain's plan gave L2, with the ids
    /// `crate::lab_vm::l2::guest::device_adds` used (`hostdevN` in realize order).
    pub fn from_plan(plan: &Plan, managed: &dyn Fn(PciAddress) -> bool) -> Attached {
        let mut held = Vec::new();
        let order = plan.realize_order();
        for (i, a) in order.iter().enumerate() {
            held.push(Held {
                host: a.host,
                managed: managed(a.host),
                guest: Some((a.guest, format!("hostdev{i}"))),
                restore: plan.restore.iter().find(|r| r.host == a.host).cloned(),
            });
        }
        for &u in &plan.unassigned {
            held.push(Held {
                host: u,
                managed: managed(u),
                guest: None,
                restore: plan.restore.iter().find(|r| r.host == u).cloned(),
            });
        }
        held.sort_by_key(|h| h.host);
        Attached {
            held,
            next_id: order.len(),
        }
    }

    pub fn get(&self, host: PciAddress) -> Option<&Held> {
        self.held.iter().find(|h| h.host == host)
    }

    /// Records a carried-out attach: its assigned functions with their ids.
    pub fn record_attach(&mut self, step: &AttachPlan) {
        for (a, id) in &step.assign {
            self.held.push(Held {
                host: a.host,
                managed: step.managed.contains(&a.host),
                guest: Some((a.guest, id.clone())),
                restore: step.plan.restore.iter().find(|r| r.host == a.host).cloned(),
            });
        }
        for &u in &step.plan.unassigned {
            self.held.push(Held {
                host: u,
                managed: step.managed.contains(&u),
                guest: None,
                restore: step.plan.restore.iter().find(|r| r.host == u).cloned(),
            });
        }
        self.held.sort_by_key(|h| h.host);
        self.next_id += step.assign.len();
    }

    /// Records a carried-out detach: the functions are no longer held.
    pub fn record_detach(&mut self, step: &DetachPlan) {
        self.held.retain(|h| !step.release.contains(&h.host));
    }
}

/// An attach step: a [`Plan`] for the step's functions alone (detach,
/// assign, unassigned, restore), and the QEMU id of each assigned one in
/// the order to add them (function 0 of a shared slot last).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttachPlan {
    pub plan: Plan,
    pub assign: Vec<(Assign, String)>,
    pub managed: Vec<PciAddress>,
}

/// A detach step: `device_del` for each assigned function (by id), then
/// the functions this domain detached go back to their drivers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DetachPlan {
    pub device_del: Vec<(PciAddress, String)>,
    pub reattach: Vec<Restore>,
    /// Every function the domain stops holding.
    pub release: Vec<PciAddress>,
}

/// The PCI hostdevs of a step's XML: (device position, source, managed, assignment, explicit guest address).
type StepHostdev = (
    Pos,
    PciAddress,
    bool,
    Assignment,
    Option<(PciAddress, bool)>,
);

fn step_hostdevs(domain: &Domain) -> Vec<StepHostdev> {
    domain
        .devices
        .iter()
        .filter_map(|d| {
            Some((
                d.at,
                d.pci_source()?,
                d.hostdev.as_ref()?.managed,
                d.assignment(),
                d.guest_pci(),
            ))
        })
        .collect()
}

fn static_errors(domain: &Domain) -> Option<Vec<Diagnostic>> {
    let errors: Vec<Diagnostic> = check_static(domain)
        .into_iter()
        .filter(Diagnostic::is_error)
        .collect();
    (!errors.is_empty()).then_some(errors)
}

/// What both kinds of step start with: the static rules (their errors
/// stop the step), and the step's PCI hostdevs (none is an error).
fn begin_step<'a>(
    step: &'a Domain,
    verb: &str,
    hint: &str,
) -> Result<(ErrorList<'a>, Vec<StepHostdev>), Vec<Diagnostic>> {
    if let Some(errors) = static_errors(step) {
        return Err(errors);
    }
    let mut out = ErrorList::new(&step.file);
    let hostdevs = step_hostdevs(step);
    if hostdevs.is_empty() {
        out.push(
            RuleId::Host,
            Pos { line: 1, column: 1 },
            format!("the step has no PCI <hostdev> to {verb}"),
            hint.to_string(),
        );
    }
    Ok((out, hostdevs))
}

/// Plans an attach step against the host now and what the domain holds.
pub fn plan_attach(
    step: &Domain,
    host: &HostView,
    attached: &Attached,
) -> Result<AttachPlan, Vec<Diagnostic>> {
    let (mut out, hostdevs) = begin_step(
        step,
        "attach",
        "write one or more <hostdev mode='subsystem' type='pci'> elements",
    )?;
    // Each function on its own: on the host, an endpoint, not held already.
    for &(at, source, _, _, _) in &hostdevs {
        match host.function(source) {
            None => report(&mut out, at, Violation::NotOnHost { source }, Asker::Step),
            Some(f) if f.is_bridge() => report(
                &mut out,
                at,
                Violation::NotAnEndpoint { source },
                Asker::Step,
            ),
            Some(_) if attached.get(source).is_some() => out.push(
                RuleId::R8,
                at,
                format!("hostdev {source} is already attached to the running domain"),
                "detach it first, or leave it out of this step".into(),
            ),
            Some(f) if f.iommu_group.is_none() => report(
                &mut out,
                at,
                Violation::NoIommuGroup { source },
                Asker::Step,
            ),
            Some(_) => {}
        }
    }
    if !out.is_empty() {
        return out.or_ok(|| unreachable!());
    }
    let in_step: BTreeSet<PciAddress> = hostdevs.iter().map(|h| h.1).collect();
    let accounted = |a: PciAddress| in_step.contains(&a) || attached.get(a).is_some();

    // R11 and R12 on each group the step touches, as the host is now.
    let mut groups_done = BTreeSet::new();
    for &(at, source, managed, assignment, _) in &hostdevs {
        let Some((group, members)) = host.group_of(source) else {
            continue;
        };
        let endpoints = members
            .iter()
            .filter_map(|m| host.function(*m))
            .filter(|f| !f.is_bridge());
        if managed && assignment == Assignment::Assigned && groups_done.insert(group) {
            let missing: Vec<(PciAddress, String)> = endpoints
                .clone()
                .filter(|f| !accounted(f.address))
                .map(|f| (f.address, f.driver_name().to_string()))
                .collect();
            if !missing.is_empty() {
                let v = Violation::GroupIncomplete {
                    group,
                    source,
                    missing: &missing,
                    declare: &[],
                };
                report(&mut out, at, v, Asker::Step);
            }
        }
        if !managed {
            for f in endpoints.filter(|f| !f.is_vfio_safe()) {
                let v = Violation::UnmanagedOnHost {
                    source,
                    group,
                    offending: f.address,
                    driver: f.driver_name(),
                };
                report(&mut out, at, v, Asker::Step);
            }
        }
    }

    // Guest addresses: as written, else a free slot of the guest's root bus.
    let mut taken: BTreeSet<u8> = attached
        .held
        .iter()
        .filter_map(|h| h.guest.as_ref())
        .map(|(g, _)| g.slot)
        .collect();
    let mut assign = Vec::new();
    for &(at, source, _, assignment, explicit) in &hostdevs {
        if assignment != Assignment::Assigned {
            continue;
        }
        let (guest, multifunction) = match explicit {
            Some((g, m)) => {
                if let Some(h) = attached
                    .held
                    .iter()
                    .find(|h| h.guest.as_ref().is_some_and(|(hg, _)| *hg == g))
                {
                    out.push(
                        RuleId::R8,
                        at,
                        format!(
                            "guest address {g} is already used by hostdev {} in the running domain",
                            h.host
                        ),
                        "give this hostdev another guest address, or none".into(),
                    );
                }
                (g, m)
            }
            None => match take_free_slot(&mut taken) {
                Some(slot) => (PciAddress::new(0, 0, slot, 0), false),
                None => {
                    report(&mut out, at, Violation::NoFreeGuestSlot, Asker::Step);
                    continue;
                }
            },
        };
        assign.push(Assign {
            host: source,
            guest,
            multifunction,
            written: None,
        });
    }
    let detach: Vec<PciAddress> = hostdevs
        .iter()
        .filter(|h| h.2)
        .filter(|h| host.function(h.1).and_then(|f| f.driver.as_deref()) != Some(VFIO_DRIVER))
        .map(|h| h.1)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let managed: Vec<PciAddress> = hostdevs.iter().filter(|h| h.2).map(|h| h.1).collect();
    let unassigned: Vec<PciAddress> = hostdevs
        .iter()
        .filter(|h| h.3 == Assignment::Unassigned)
        .map(|h| h.1)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let next_id = attached.next_id;
    out.or_ok(move || {
        assign.sort_by_key(|a| a.host);
        let restore = detach
            .iter()
            .map(|&a| Restore {
                host: a,
                driver: host.function(a).and_then(|f| f.driver.clone()),
            })
            .collect();
        let plan = Plan {
            detach,
            assign,
            unassigned,
            restore,
            groups: vec![],
            warnings: vec![],
        };
        let assign = plan
            .realize_order()
            .into_iter()
            .enumerate()
            .map(|(i, a)| (a.clone(), format!("hostdev{}", next_id + i)))
            .collect();
        AttachPlan {
            plan,
            assign,
            managed,
        }
    })
}

/// Plans a detach step: the step's functions must be held; none may leave
/// an assigned function of its group in the guest behind it.
pub fn plan_detach(
    step: &Domain,
    host: &HostView,
    attached: &Attached,
) -> Result<DetachPlan, Vec<Diagnostic>> {
    let (mut out, hostdevs) = begin_step(
        step,
        "detach",
        "write the <hostdev> elements to detach, as they were attached",
    )?;
    let leaving: BTreeSet<PciAddress> = hostdevs.iter().map(|h| h.1).collect();
    let mut device_del = Vec::new();
    let mut reattach = Vec::new();
    for &(at, source, _, _, _) in &hostdevs {
        let Some(held) = attached.get(source) else {
            out.push(
                RuleId::Host,
                at,
                format!("hostdev {source} is not attached to the running domain"),
                "detach only what an earlier step (or the domain) attached".into(),
            );
            continue;
        };
        if held.guest.is_none() {
            // Back on a host driver while a group sibling stays in the guest?
            if let Some((group, members)) = host.group_of(source) {
                let staying: Vec<PciAddress> = members
                    .iter()
                    .filter(|m| !leaving.contains(m))
                    .filter_map(|m| attached.get(*m))
                    .filter(|h| h.guest.is_some())
                    .map(|h| h.host)
                    .collect();
                if !staying.is_empty() && held.restore.is_some() {
                    let v = Violation::SiblingStaysInGuest {
                        group,
                        source,
                        staying: &staying,
                    };
                    report(&mut out, at, v, Asker::Step);
                }
            }
        }
        if let Some((_, id)) = &held.guest {
            device_del.push((source, id.clone()));
        }
        reattach.extend(held.restore.clone());
    }
    out.or_ok(|| DetachPlan {
        device_del,
        reattach,
        release: leaving.into_iter().collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pci::view::PciFunction;
    use crate::schema::check::check_text;
    use std::collections::BTreeMap;

    fn a(s: &str) -> PciAddress {
        s.parse().unwrap()
    }

    /// gpu-audio as L1 shows it: 06.0 bochs-drm, 06.1 snd_hda_intel, group 3.
    fn host(drivers: &[(&str, Option<&str>)]) -> HostView {
        let mut functions = BTreeMap::new();
        for (i, (bdf, driver)) in drivers.iter().enumerate() {
            functions.insert(
                a(bdf),
                PciFunction {
                    address: a(bdf),
                    vendor: 0x1234,
                    device: 0x1111 + i as u16,
                    class: 0x038000,
                    header_type: if i == 0 { 0x80 } else { 0 },
                    driver: driver.map(str::to_string),
                    driver_override: None,
                    iommu_group: Some(3),
                },
            );
        }
        let groups = BTreeMap::from([(3, functions.keys().copied().collect())]);
        HostView { functions, groups }
    }

    fn gpu_audio() -> HostView {
        host(&[
            ("0000:00:06.0", Some("bochs-drm")),
            ("0000:00:06.1", Some("snd_hda_intel")),
        ])
    }

    fn hostdev(f: &str, unassigned: bool) -> String {
        format!(
            "<hostdev mode='subsystem' type='pci' managed='yes'><source><address domain='0x0000' bus='0x00' slot='0x06' function='{f}'/></source>{}</hostdev>",
            if unassigned { "<address type='unassigned'/>" } else { "" }
        )
    }

    fn step(xml: &str) -> Domain {
        check_text("step.xml", xml).domain
    }

    #[test]
    fn the_display_alone_is_refused_while_audio_is_on_its_host_driver() {
        let err = plan_attach(
            &step(&hostdev("0x0", false)),
            &gpu_audio(),
            &Attached::default(),
        )
        .unwrap_err();
        assert_eq!(err.len(), 1);
        assert_eq!(err[0].rule, RuleId::R11);
        assert!(
            err[0].message.contains("0000:00:06.1 (snd_hda_intel)"),
            "{}",
            err[0].message
        );
    }

    #[test]
    fn the_whole_group_in_one_step_detaches_both_and_adds_only_the_display() {
        let xml = format!("{}{}", hostdev("0x0", false), hostdev("0x1", true));
        let p = plan_attach(&step(&xml), &gpu_audio(), &Attached::default()).unwrap();
        assert_eq!(p.plan.detach, [a("0000:00:06.0"), a("0000:00:06.1")]);
        assert_eq!(p.plan.unassigned, [a("0000:00:06.1")]);
        assert_eq!(p.assign.len(), 1);
        assert_eq!(p.assign[0].0.guest, a("0000:00:05.0"));
        assert_eq!(p.assign[0].1, "hostdev0");
        assert_eq!(p.plan.restore[1].driver.as_deref(), Some("snd_hda_intel"));
    }

    #[test]
    fn a_held_unassigned_sibling_lets_the_display_in_later() {
        let mut held = Attached::default();
        let first = plan_attach(&step(&hostdev("0x1", true)), &gpu_audio(), &held).unwrap();
        assert!(
            first.assign.is_empty(),
            "an unassigned function is never given to QEMU"
        );
        assert_eq!(first.plan.detach, [a("0000:00:06.1")]);
        held.record_attach(&first);
        let now = host(&[
            ("0000:00:06.0", Some("bochs-drm")),
            ("0000:00:06.1", Some("vfio-pci")),
        ]);
        let second = plan_attach(&step(&hostdev("0x0", false)), &now, &held).unwrap();
        assert_eq!(second.plan.detach, [a("0000:00:06.0")]);
        // Attaching it twice is refused.
        let again = plan_attach(&step(&hostdev("0x1", true)), &now, &held).unwrap_err();
        assert_eq!(again[0].rule, RuleId::R8);
    }

    #[test]
    fn detach_gives_back_exactly_what_the_step_detached_and_guards_the_group() {
        let xml = format!("{}{}", hostdev("0x0", false), hostdev("0x1", true));
        let mut held = Attached::default();
        let p = plan_attach(&step(&xml), &gpu_audio(), &held).unwrap();
        held.record_attach(&p);
        let during = host(&[
            ("0000:00:06.0", Some("vfio-pci")),
            ("0000:00:06.1", Some("vfio-pci")),
        ]);
        // The audio alone cannot go back while the display stays in the guest.
        let err = plan_detach(&step(&hostdev("0x1", true)), &during, &held).unwrap_err();
        assert_eq!(err[0].rule, RuleId::R11);
        // The display alone can: device_del, back to bochs-drm.
        let d = plan_detach(&step(&hostdev("0x0", false)), &during, &held).unwrap();
        assert_eq!(d.device_del, [(a("0000:00:06.0"), "hostdev0".to_string())]);
        assert_eq!(d.reattach.len(), 1);
        assert_eq!(d.reattach[0].driver.as_deref(), Some("bochs-drm"));
        held.record_detach(&d);
        assert!(held.get(a("0000:00:06.1")).is_some());
        // Then the audio, alone: no device_del, back to snd_hda_intel.
        let d = plan_detach(&step(&hostdev("0x1", true)), &during, &held).unwrap();
        assert!(d.device_del.is_empty());
        assert_eq!(d.reattach[0].driver.as_deref(), Some("snd_hda_intel"));
        held.record_detach(&d);
        // A new attach gets a new id: QEMU may still know the old one.
        let again = plan_attach(&step(&xml), &gpu_audio(), &held).unwrap();
        assert_eq!(again.assign[0].1, "hostdev1");
        // Detaching what is not held is an error.
        assert!(plan_detach(&step(&hostdev("0x0", false)), &during, &held).is_err());
    }
}
