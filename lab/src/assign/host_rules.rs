//! The host rules R9–R13 in one table: every violation the plan of a
//! domain or a hot-plug step on a running one can find, with its rule and
//! its words. The plan and the hot-plug plan find them; this says them,
//! so that a rule reads the same wherever it fires.

use crate::pci::address::PciAddress;
use crate::schema::diagnostic::{ErrorList, Pos, RuleId};

/// Who found it: the plan, before the domain starts, or a step on the
/// running domain (whose words name the domain and the step).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Asker {
    Plan,
    Step,
}

/// A violation and the facts its words need.
#[derive(Debug)]
pub enum Violation<'a> {
    /// The source address names no function of the host.
    NotOnHost { source: PciAddress },
    /// R10: a bridge as a hostdev.
    NotAnEndpoint { source: PciAddress },
    /// The host's IOMMU is off: no group to reason about.
    NoIommuGroup { source: PciAddress },
    /// R9: `assigned=` on a single-function device.
    AssignedOnSingleFunction {
        source: PciAddress,
        written: &'a str,
    },
    /// R11: a managed, assigned function whose group has endpoints that
    /// nothing accounts for (`missing`: address and driver; `declare`:
    /// the XML that would).
    GroupIncomplete {
        group: u32,
        source: PciAddress,
        missing: &'a [(PciAddress, String)],
        declare: &'a [String],
    },
    /// R11, on a detach: a function would go back to its host driver
    /// while an assigned sibling stays in the guest.
    SiblingStaysInGuest {
        group: u32,
        source: PciAddress,
        staying: &'a [PciAddress],
    },
    /// R12: an unmanaged hostdev still on a host driver (`sibling`: the
    /// function of its group that is, when not itself).
    UnmanagedOnHost {
        source: PciAddress,
        group: u32,
        offending: PciAddress,
        driver: &'a str,
    },
    /// R13: a shared guest slot without function 0.
    SlotWithoutFunction0 { slot: PciAddress, guest: PciAddress },
    /// R13: a shared guest slot whose function 0 lacks multifunction='on'.
    SlotWithoutMultifunction { slot: PciAddress, functions: usize },
    /// R13: the guest's root bus is full.
    NoFreeGuestSlot,
}

impl Violation<'_> {
    pub fn rule(&self) -> RuleId {
        match self {
            Violation::NotOnHost { .. } | Violation::NoIommuGroup { .. } => RuleId::Host,
            Violation::NotAnEndpoint { .. } => RuleId::R10,
            Violation::AssignedOnSingleFunction { .. } => RuleId::R9,
            Violation::GroupIncomplete { .. } | Violation::SiblingStaysInGuest { .. } => {
                RuleId::R11
            }
            Violation::UnmanagedOnHost { .. } => RuleId::R12,
            Violation::SlotWithoutFunction0 { .. }
            | Violation::SlotWithoutMultifunction { .. }
            | Violation::NoFreeGuestSlot => RuleId::R13,
        }
    }

    /// The sentence, and what to write instead, as `asker` says them.
    pub fn words(&self, asker: Asker) -> (String, String) {
        use Asker::{Plan, Step};
        match *self {
            Violation::NotOnHost { source } => (
                format!("PCI device {source} not found on the host"),
                match asker {
                    Plan => "check the <source><address …/></source>; `mflab boot` or lspci -D lists the host's functions".into(),
                    Step => "check the <source><address …/></source>".into(),
                },
            ),
            Violation::NotAnEndpoint { source } => (
                format!("Non-endpoint PCI devices cannot be assigned to guests: {source} is a PCI bridge"),
                match asker {
                    Plan => "remove this hostdev; a bridge in a group is neither declared nor detached".into(),
                    Step => "remove this hostdev".into(),
                },
            ),
            Violation::NoIommuGroup { source } => (
                format!("{source} has no IOMMU group: the host's IOMMU is off"),
                match asker {
                    Plan => "boot the host with the IOMMU on (intel_iommu=on, or an emulated intel-iommu in the lab VM)".into(),
                    Step => "boot the host with the IOMMU on".into(),
                },
            ),
            Violation::AssignedOnSingleFunction { source, written } => (
                format!("assigned='{written}' is only for functions of a multifunction device; {source} is a single-function device"),
                "remove assigned=…: a single-function device is either given to the guest or not declared".into(),
            ),
            Violation::GroupIncomplete { group, source, missing, declare } => {
                let list: Vec<String> =
                    missing.iter().map(|(a, driver)| format!("{a} ({driver})")).collect();
                match asker {
                    Plan => (
                        format!(
                            "IOMMU group {group} of {source} also holds {}, not declared in the domain; every function of the group must be declared, assigned or not",
                            list.join(", ")
                        ),
                        format!("declare each as unassigned: {}", declare.join(" ")),
                    ),
                    Step => (
                        format!(
                            "IOMMU group {group} of {source} also holds {}, neither attached to the running domain nor in this step; every function of the group must be detached from the host before {source} is given to the guest",
                            list.join(", ")
                        ),
                        "attach the missing functions in the same step, as unassigned hostdevs (<address type='unassigned'/>)".into(),
                    ),
                }
            }
            Violation::SiblingStaysInGuest { group, source, staying } => {
                let staying: Vec<String> = staying.iter().map(|a| a.to_string()).collect();
                (
                    format!(
                        "detaching {source} would give it back to its host driver while {} of IOMMU group {group} stays in the guest",
                        staying.join(", ")
                    ),
                    "detach the assigned functions of the group first, or in the same step".into(),
                )
            }
            Violation::UnmanagedOnHost { source, group, offending, driver } => (
                if offending == source {
                    format!("Unmanaged PCI device {source} must be manually detached from the host (it is on {driver})")
                } else {
                    format!("Unmanaged PCI device {source} shares IOMMU group {group} with {offending} (on {driver}), which must be manually detached from the host too")
                },
                match asker {
                    Plan => format!(
                        "run `virsh nodedev-detach pci_{}` (or bind it to vfio-pci) before starting, or write managed='yes'",
                        offending.to_string().replace([':', '.'], "_")
                    ),
                    Step => "bind it to vfio-pci first (virsh nodedev-detach), or write managed='yes'".into(),
                },
            ),
            Violation::SlotWithoutFunction0 { slot, guest } => (
                format!("guest slot {slot} holds function {guest} but no function 0; a multifunction slot needs function 0"),
                format!("give one of the functions in slot {:#04x} function='0x0' multifunction='on'", slot.slot),
            ),
            Violation::SlotWithoutMultifunction { slot, functions } => (
                format!("guest slot {slot} holds {functions} functions but function 0 lacks multifunction='on'"),
                "add multifunction='on' to the <address> of function 0".into(),
            ),
            Violation::NoFreeGuestSlot => (
                "no free guest slot left on the inner guest's root bus".into(),
                match asker {
                    Plan => "give some hostdevs explicit guest addresses sharing a slot (function 0 with multifunction='on')".into(),
                    Step => "detach something first".into(),
                },
            ),
        }
    }
}

/// Adds `v`, as `asker` says it, to `out` at `at`.
pub fn report(out: &mut ErrorList, at: Pos, v: Violation, asker: Asker) {
    let (message, hint) = v.words(asker);
    out.push(v.rule(), at, message, hint);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_rule_reads_the_same_for_the_plan_and_a_step_where_the_facts_are_the_same() {
        let a: PciAddress = "0000:00:06.0".parse().unwrap();
        let b: PciAddress = "0000:00:06.1".parse().unwrap();
        let unmanaged = Violation::UnmanagedOnHost {
            source: a,
            group: 3,
            offending: b,
            driver: "snd_hda_intel",
        };
        assert_eq!(unmanaged.rule(), RuleId::R12);
        let (plan, plan_hint) = unmanaged.words(Asker::Plan);
        let (step, _) = unmanaged.words(Asker::Step);
        assert_eq!(plan, step);
        assert_eq!(plan, "Unmanaged PCI device 0000:00:06.0 shares IOMMU group 3 with 0000:00:06.1 (on snd_hda_intel), which must be manually detached from the host too");
        assert!(
            plan_hint.contains("virsh nodedev-detach pci_0000_00_06_1"),
            "{plan_hint}"
        );
        let missing = [(b, "snd_hda_intel".to_string())];
        let incomplete = Violation::GroupIncomplete {
            group: 3,
            source: a,
            missing: &missing,
            declare: &["<hostdev …/>".to_string()],
        };
        assert_eq!(incomplete.rule(), RuleId::R11);
        assert!(incomplete
            .words(Asker::Plan)
            .0
            .contains("not declared in the domain"));
        assert!(incomplete.words(Asker::Step).0.contains("nor in this step"));
        assert_eq!(Violation::NoFreeGuestSlot.rule(), RuleId::R13);
    }
}
