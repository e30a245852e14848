//! The IOMMU groups L1's kernel formed against the reported ones: which
//! reported endpoints share a group must be the same. Bridges are not
//! compared (the lab's root ports have ACS; the reporter's may not): a
//! group that differs only by a bridge is a note, not a failure.

use std::collections::BTreeMap;

use lab::protocol::FunctionRow;
use lab::PciAddress;

use super::LabHost;

/// What the comparison found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GroupCheck {
    /// Both groupings, when the endpoints are grouped differently.
    pub mismatch: Option<String>,
    pub notes: Vec<String>,
}

/// Compares L1's groups (its kernel's view, `rows`) with the report's.
pub fn check(host: &LabHost, rows: &[FunctionRow]) -> GroupCheck {
    let mut notes = host.bridge_notes.clone();
    let mut lab: BTreeMap<Option<u32>, Vec<PciAddress>> = BTreeMap::new();
    let mut absent = Vec::new();
    for m in &host.map {
        match rows.iter().find(|r| r.bdf == m.lab) {
            Some(r) => lab.entry(r.iommu_group).or_default().push(m.reported),
            None => absent.push(m.lab),
        }
    }
    let partition = |groups: Vec<Vec<PciAddress>>| {
        let mut p: Vec<Vec<PciAddress>> = groups
            .into_iter()
            .map(|mut g| {
                g.sort();
                g
            })
            .collect();
        p.sort();
        p
    };
    let seen = partition(lab.values().cloned().collect());
    let want = partition(host.reported_groups.clone());
    for (group, members) in &lab {
        let bridges: Vec<String> = rows
            .iter()
            .filter(|r| r.iommu_group == *group && r.class.starts_with("0x0604"))
            .map(|r| r.bdf.to_string())
            .collect();
        // Said once: the report's bridge note covers a group it expected.
        let expected = host
            .bridge_notes
            .iter()
            .any(|n| members.iter().all(|m| n.contains(&m.to_string())));
        if group.is_some() && !bridges.is_empty() && !expected {
            notes.push(format!(
                "L1's group {} holds the lab's bridge {} beside {}",
                group.unwrap_or_default(),
                bridges.join(", "),
                list(members)
            ));
        }
    }
    let mismatch = (seen != want || !absent.is_empty() || lab.contains_key(&None)).then(|| {
        let mut s = String::from("IOMMU groups: L1's kernel grouped the reported endpoints differently from the report\n  reported:");
        for g in &want {
            s.push_str(&format!("\n    {{{}}}", list(g)));
        }
        s.push_str("\n  L1 (reported addresses, L1's group numbers):");
        for (group, members) in &lab {
            let name = group.map_or("no group".into(), |g| format!("group {g}"));
            s.push_str(&format!("\n    {name}: {{{}}}", list(members)));
        }
        for a in &absent {
            s.push_str(&format!("\n    {a}: not in L1"));
        }
        s
    });
    GroupCheck { mismatch, notes }
}

/// The check as a run's verdict: the mismatch (or none), notes added.
/// `differ_expected`: the scenario says the groups differ (then a match fails).
pub fn verdict(
    host: &LabHost,
    rows: &[FunctionRow],
    differ_expected: bool,
    notes: &mut Vec<String>,
) -> Option<String> {
    let c = check(host, rows);
    notes.extend(c.notes);
    match (c.mismatch, differ_expected) {
        (Some(m), false) => Some(m),
        (Some(m), true) => {
            notes.push(format!("as the scenario expects (groups_differ): {m}"));
            None
        }
        (None, true) => Some(
            "IOMMU groups: the scenario expects L1's groups to differ from the report's (groups_differ = true), and they match".into(),
        ),
        (None, false) => None,
    }
}

fn list(members: &[PciAddress]) -> String {
    members
        .iter()
        .map(|a| a.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}
