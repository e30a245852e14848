//! `mflab diagnose`: a pasted bug report to a verdict and a fixed XML.
//!
//! The paste is read as it is ([`paste`]); the reporter's host becomes a
//! [`HostView`] (ids, classes, groups and drivers as pasted) so that the
//! plan's own host rules R9–R13 judge the XML with the reporter's
//! addresses; each group the XML touches gets a verdict per member
//! ([`verdict`]); and the fix declares the blocking functions unassigned
//! ([`fix`]) unless the host needs one of them. Pure: text in, a
//! [`Diagnosis`] out, in well under a second.

pub mod fix;
pub mod paste;
pub mod render;
pub mod verdict;

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::assign::plan::{plan, Policy};
use crate::pci::address::PciAddress;
use crate::pci::view::{HostView, PciFunction};
use crate::schema::diagnostic::{sort_diagnostics, Diagnostic};
use paste::{read_paste, Paste, ReportedError, Unread, Versions};
use verdict::{judge_group, Context, Declared, GroupVerdict};

/// Everything `mflab diagnose` says about one paste.
#[derive(Clone, Debug, Serialize)]
pub struct Diagnosis {
    pub file: String,
    /// What was read, one phrase per part (`the domain XML, lines 31-78`).
    pub read: Vec<String>,
    pub groups: Vec<GroupVerdict>,
    /// Findings on the reporter's XML with the pasted host: R1–R8 and the
    /// host rules R9–R13, at the paste's line:column.
    pub rules: Vec<Diagnostic>,
    /// Whether the reporter's XML passes as posted.
    pub passes: bool,
    /// The XML that works: the posted one with the blockers added (the
    /// posted one as it is when it passes); null when no XML can fix it
    /// (a blocker the host needs, an XML that does not read, no XML).
    pub fixed_xml: Option<String>,
    /// What the fix adds, unassigned.
    pub added: Vec<PciAddress>,
    /// The line of the paste the added hostdevs go after, and them.
    pub added_after_line: Option<usize>,
    #[serde(skip)]
    pub added_xml: String,
    /// The findings on the fixed XML (empty when it passes `mflab check`
    /// with the pasted host).
    pub fixed_rules: Vec<Diagnostic>,
    /// What remains when the XML cannot fix it.
    pub remedies: Vec<String>,
    pub warnings: Vec<String>,
    /// Lines that looked like data and could not be read.
    pub unread: Vec<Unread>,
    pub errors: Vec<ReportedError>,
    pub versions: Versions,
    /// Filled in by `--replay`.
    pub replay: Vec<ReplayVerdict>,
    /// For `--replay`: the XML as posted, and the touched groups as a
    /// group listing `mflab host` reads (or why the paste cannot give one).
    #[serde(skip)]
    pub posted_xml: Option<String>,
    #[serde(skip)]
    pub lab_listing: Result<String, NotReplayable>,
}

/// Why the paste's host cannot be rebuilt in the lab.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NotReplayable {
    #[error("the paste has no XML")]
    NoXml,
    #[error("the XML touches no IOMMU group the paste shows")]
    NoGroup,
    #[error("{address} is in IOMMU group {group}, and the paste says nothing else about it: paste `lspci -nn` with it")]
    Unknown { address: PciAddress, group: u32 },
    #[error("the paste gives no class for {address} (line {line}): paste `lspci -nn` with it")]
    NoClass { address: PciAddress, line: usize },
}

/// One replay run: the reporter's or the fixed XML on one backend.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ReplayVerdict {
    /// `reported` or `fixed`.
    pub xml: String,
    pub backend: String,
    /// The libvirt L1 ran, for the libvirt backend.
    pub libvirt: Option<String>,
    /// L1's kernel and QEMU, as they named themselves.
    pub versions: String,
    /// What the run was to show held: the reported error came back
    /// (reported XML), or L2 saw exactly the assigned functions and every
    /// driver came back (fixed XML).
    pub passed: bool,
    /// Reported XML: the lab's error has the reported words.
    pub reproduced: Option<bool>,
    pub error: Option<String>,
    /// `vendor:device` of what L2's kernel enumerated.
    pub l2_saw: Vec<String>,
    pub why: String,
}

impl Diagnosis {
    pub fn fix_needed(&self) -> bool {
        !self.passes
    }
}

/// Diagnoses the paste `text`, naming it `file` in positions.
pub fn diagnose(file: &str, text: &str) -> Diagnosis {
    let paste = read_paste(file, text);
    let mut warnings = Vec::new();
    let mut read = parts_read(&paste);

    let Some(xml) = &paste.xml else {
        warnings.push(
            "the paste has no domain XML and no <hostdev>: paste `virsh dumpxml DOMAIN` (or the <hostdev> elements)".into(),
        );
        return Diagnosis {
            file: file.into(),
            read,
            groups: vec![],
            rules: vec![],
            passes: false,
            fixed_xml: None,
            added: vec![],
            added_after_line: None,
            added_xml: String::new(),
            fixed_rules: vec![],
            remedies: vec![],
            warnings,
            unread: paste.unread,
            errors: paste.errors,
            versions: paste.versions,
            replay: vec![],
            posted_xml: None,
            lab_listing: Err(NotReplayable::NoXml),
        };
    };
    let checked = xml.check(file);
    let domain = &checked.domain;
    let (groups_map, assumed) = groups_of(&paste);
    if assumed {
        warnings.push("the paste shows no IOMMU groups: the functions of one slot are taken as one group, as on a board without ACS; paste the group listing to be sure".into());
    }
    if paste.functions.is_empty() {
        warnings.push("the paste names no PCI function: paste `lspci -nnk` and the IOMMU group listing to judge the groups".into());
        read.push("no PCI listing".into());
    }
    let view = host_view(&paste, &groups_map);

    let mut rules = checked.diagnostics.clone();
    if !checked.has_errors() && !paste.functions.is_empty() {
        if let Err(found) = plan(domain, &view, Policy::Fixed) {
            rules.extend(found);
        }
    }
    sort_diagnostics(&mut rules);
    rules.dedup();
    let passes = !rules.iter().any(Diagnostic::is_error);

    let ctx = Context {
        paste: &paste,
        domain,
    };
    let touched: BTreeSet<u32> = domain
        .devices
        .iter()
        .filter_map(|d| d.pci_source())
        .filter_map(|a| {
            groups_map
                .iter()
                .find(|(_, m)| m.contains(&a))
                .map(|(g, _)| *g)
        })
        .collect();
    let groups: Vec<GroupVerdict> = touched
        .iter()
        .map(|&g| judge_group(&ctx, g, &groups_map[&g]))
        .collect();
    for d in domain.devices.iter().filter_map(|d| d.pci_source()) {
        if !paste.functions.is_empty() && !paste.functions.contains_key(&d) {
            warnings.push(format!(
                "the XML names {d}, which the paste's listing does not show"
            ));
        }
    }
    for e in &paste.errors {
        if let Some(g) = e.group {
            if !touched.contains(&g) && groups_map.contains_key(&g) {
                warnings.push(format!(
                    "line {}: the error names group {g}, which the XML does not touch",
                    e.line
                ));
            }
        }
    }
    unmapped_interfaces(&paste, &mut warnings);

    let critical: Vec<(&GroupVerdict, Vec<PciAddress>)> = groups
        .iter()
        .map(|g| {
            (
                g,
                g.critical_in_the_way()
                    .map(|m| m.address)
                    .collect::<Vec<_>>(),
            )
        })
        .filter(|(_, c)| !c.is_empty())
        .collect();
    let added: Vec<PciAddress> = groups
        .iter()
        .flat_map(|g| g.blockers())
        .filter(|m| m.declared == Declared::Undeclared)
        .map(|m| m.address)
        .collect();
    let mut remedies = Vec::new();
    let (fixed_xml, added, fixed_rules) = if passes {
        (Some(xml.posted()), vec![], vec![])
    } else if checked.has_errors() {
        warnings.push("the XML as posted does not read (see the rules above): fix it first, then run diagnose again".into());
        (None, vec![], vec![])
    } else if !critical.is_empty() {
        for (g, members) in &critical {
            remedies.extend(critical_remedies(g, members));
        }
        (None, vec![], vec![])
    } else if added.is_empty() {
        // Every function is declared and still a rule fires (an unmanaged
        // function on a host driver, R12): the host must change, not the
        // XML; the rule's own hint says how.
        remedies.extend(
            rules
                .iter()
                .filter(|r| r.is_error() && !r.hint.is_empty())
                .map(|r| format!("{}: {}", r.rule, r.hint)),
        );
        (None, vec![], vec![])
    } else {
        let fixed = fix::with_unassigned(xml, &added);
        let fixed_rules = recheck(file, &fixed, &view, paste.functions.is_empty());
        (Some(fixed), added, fixed_rules)
    };
    if !added.is_empty() {
        warnings.extend(libvirt_note(&paste.versions));
    }
    let lab_listing = lab_listing(&paste, &groups_map, &touched);
    Diagnosis {
        file: file.into(),
        read,
        groups,
        rules,
        passes,
        fixed_xml,
        added_after_line: (!added.is_empty()).then(|| fix::after_line(xml)),
        added_xml: fix::added_hostdevs(xml, &added),
        added,
        fixed_rules,
        remedies,
        warnings,
        unread: paste.unread,
        errors: paste.errors,
        versions: paste.versions,
        replay: vec![],
        posted_xml: Some(xml.posted()),
        lab_listing,
    }
}

/// The groups the XML touches as the `IOMMU Group N:` listing, one
/// `lspci -nn` line per member: what the lab rebuilds for a replay.
fn lab_listing(
    paste: &Paste,
    groups: &BTreeMap<u32, Vec<PciAddress>>,
    touched: &BTreeSet<u32>,
) -> Result<String, NotReplayable> {
    if touched.is_empty() {
        return Err(NotReplayable::NoGroup);
    }
    let mut s = String::new();
    for g in touched {
        s.push_str(&format!("IOMMU Group {g}:\n"));
        for &a in &groups[g] {
            let f = paste.function(a).ok_or(NotReplayable::Unknown {
                address: a,
                group: *g,
            })?;
            let class = f.class.ok_or(NotReplayable::NoClass {
                address: a,
                line: f.line,
            })?;
            let (class_name, names) = f
                .description
                .split_once(": ")
                .unwrap_or(("Class", f.description.as_str()));
            s.push_str(&format!(
                "\t{a} {class_name} [{:04x}]: {names} [{:04x}:{:04x}]\n",
                class >> 8,
                f.vendor.unwrap_or(0),
                f.device.unwrap_or(0)
            ));
        }
    }
    Ok(s)
}

/// The fixed XML through `mflab check` (with the pasted host when there is one).
fn recheck(file: &str, fixed: &str, view: &HostView, no_host: bool) -> Vec<Diagnostic> {
    let name = format!("{file} (fixed)");
    let checked = crate::schema::check::check_text(&name, fixed);
    let mut found: Vec<Diagnostic> = checked
        .diagnostics
        .iter()
        .filter(|d| d.is_error())
        .cloned()
        .collect();
    if found.is_empty() && !no_host {
        if let Err(e) = plan(&checked.domain, view, Policy::Fixed) {
            found = e;
        }
    }
    found
}

/// The groups: as pasted, or (without any) one per slot.
fn groups_of(paste: &Paste) -> (BTreeMap<u32, Vec<PciAddress>>, bool) {
    if paste.groups_from.is_some() {
        return (paste.groups.clone(), false);
    }
    let mut groups: BTreeMap<u32, Vec<PciAddress>> = BTreeMap::new();
    for &a in paste.functions.keys() {
        let same = groups
            .values()
            .next_back()
            .is_some_and(|m| m[0].same_slot(a));
        if !same {
            groups.insert(groups.len() as u32, vec![]);
        }
        groups.values_mut().next_back().expect("just made").push(a);
    }
    (groups, !paste.functions.is_empty())
}

/// The reporter's host as the plan reads hosts: ids, classes, groups and
/// drivers as pasted.
fn host_view(paste: &Paste, groups: &BTreeMap<u32, Vec<PciAddress>>) -> HostView {
    let group_of = |a: PciAddress| groups.iter().find(|(_, m)| m.contains(&a)).map(|(g, _)| *g);
    let functions = paste
        .functions
        .values()
        .map(|f| {
            let bridge = f.is_bridge();
            let multifunction = paste
                .functions
                .keys()
                .filter(|o| o.same_slot(f.address))
                .count()
                > 1;
            let function = PciFunction {
                address: f.address,
                vendor: f.vendor.unwrap_or(0xffff),
                device: f.device.unwrap_or(0xffff),
                class: f.class.unwrap_or(if bridge { 0x060400 } else { 0xff0000 }),
                header_type: u8::from(bridge) | if multifunction { 0x80 } else { 0 },
                // A driver the paste does not show counts as a host
                // driver: the group is viable only if the paste proves it.
                driver: match &f.driver {
                    paste::HostDriver::Bound(d) => Some(d.clone()),
                    paste::HostDriver::None => None,
                    paste::HostDriver::NotShown => Some("driver not in the paste".into()),
                },
                driver_override: None,
                iommu_group: group_of(f.address),
            };
            (f.address, function)
        })
        .collect();
    HostView {
        functions,
        groups: groups.clone(),
    }
}

fn parts_read(paste: &Paste) -> Vec<String> {
    let mut read = Vec::new();
    if let Some(x) = &paste.xml {
        let what = match x.kind {
            paste::XmlKind::Domain => "the domain XML",
            paste::XmlKind::Devices => "a <devices> element",
            paste::XmlKind::Hostdevs => "<hostdev> elements",
        };
        read.push(format!("{what} (lines {}-{})", x.first_line, x.last_line));
    }
    if let Some(from) = paste.groups_from {
        let groups = paste.groups.len();
        let functions: usize = paste.groups.values().map(Vec::len).sum();
        read.push(format!(
            "{} ({groups} group{}, {functions} function{})",
            from.as_str(),
            if groups == 1 { "" } else { "s" },
            if functions == 1 { "" } else { "s" },
        ));
    }
    let drivers = paste
        .functions
        .values()
        .filter(|f| f.driver != paste::HostDriver::NotShown)
        .count();
    if drivers > 0 {
        read.push(format!(
            "the driver{} of {drivers} function{}",
            if drivers == 1 { "" } else { "s" },
            if drivers == 1 { "" } else { "s" }
        ));
    }
    if !paste.interfaces.is_empty() {
        let names: Vec<&str> = paste.interfaces.iter().map(|i| i.name.as_str()).collect();
        read.push(format!("interfaces {}", names.join(", ")));
    }
    if let Some(root) = &paste.root {
        read.push(format!("/ on {} (line {})", root.source, root.line));
    }
    match paste.errors.as_slice() {
        [] => {}
        [e] => read.push(format!("the error on line {}", e.line)),
        errors => {
            let lines: Vec<String> = errors.iter().map(|e| e.line.to_string()).collect();
            read.push(format!("error lines {}", lines.join(", ")));
        }
    }
    let v = &paste.versions;
    for (name, value) in [
        ("libvirt", &v.libvirt),
        ("QEMU", &v.qemu),
        ("kernel", &v.kernel),
    ] {
        if let Some(value) = value {
            read.push(format!("{name} {value}"));
        }
    }
    read
}

fn unmapped_interfaces(paste: &Paste, warnings: &mut Vec<String>) {
    for i in &paste.interfaces {
        if i.pci.is_none() && i.up && !i.addresses.is_empty() && i.name != "lo" {
            let virtual_name = [
                "br", "virbr", "vmbr", "bond", "docker", "veth", "tap", "vnet", "wg", "tun",
            ]
            .iter()
            .any(|p| i.name.starts_with(p));
            if !virtual_name {
                warnings.push(format!(
                    "line {}: interface {} is up with {}, and its PCI function is not known (its name is not a PCI path); `ls -l /sys/class/net` would say",
                    i.line,
                    i.name,
                    i.addresses.join(" ")
                ));
            }
        }
    }
}

fn libvirt_note(versions: &Versions) -> Option<String> {
    let (maj, min, mic) = fix::UNASSIGNED_SINCE;
    let since = format!("{maj}.{min}.{mic}");
    match versions.libvirt.as_deref().and_then(|v| Some((v, fix::version_triple(v)?))) {
        Some((v, t)) if t < fix::UNASSIGNED_SINCE => Some(format!(
            "<address type='unassigned'/> needs libvirt {since} or later, and the paste names libvirt {v}: upgrade, or detach each added function by hand before starting (`virsh nodedev-detach pci_DDDD_BB_SS_F`) and leave it out of the XML"
        )),
        Some((v, _)) => Some(format!("<address type='unassigned'/> needs libvirt {since} or later; the paste names {v}")),
        None => Some(format!("<address type='unassigned'/> needs libvirt {since} or later")),
    }
}

/// What remains when the group holds something the host needs.
fn critical_remedies(group: &GroupVerdict, members: &[PciAddress]) -> Vec<String> {
    let named: Vec<String> = group
        .members
        .iter()
        .filter(|m| members.contains(&m.address))
        .map(|m| {
            format!(
                "{} ({})",
                m.address,
                m.needed_for.as_deref().unwrap_or("needed")
            )
        })
        .collect();
    vec![
        format!(
            "IOMMU group {} holds what the host needs: {}. Declaring it unassigned does not keep it on the host: every function of the group must leave its host driver before any of them can go to the guest, so no XML fixes this.",
            group.group,
            named.join(", ")
        ),
        "Move the card to another slot (one wired to the CPU rather than the chipset) and list the groups again.".into(),
        "A board or firmware with ACS on its root ports puts each slot in a group of its own; a firmware update sometimes adds it.".into(),
        "The ACS override (pcie_acs_override=downstream,multifunction, a kernel patch) only pretends the group is split: the card can still reach its former group mates by peer-to-peer DMA that the IOMMU never sees. Use it knowing the guest is no longer isolated from the host.".into(),
    ]
}
