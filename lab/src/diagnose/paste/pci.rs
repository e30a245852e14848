//! The PCI parts of a paste: the IOMMU group listing (the loop's output
//! in both heading shapes), `find /sys/kernel/iommu_groups -type l`
//! paths, nodedev documents, and `lspci -nnk`/`lspci -k` blocks with
//! their "Kernel driver in use" lines.
//!
//! The group listing and nodedev documents are read by
//! [`crate::pci::listing`], the reader `mflab host` uses; a line it
//! rejects is set aside as unread and the rest read again, so one garbled
//! line costs that line only.

use std::collections::BTreeMap;

use serde::{Serialize, Serializer};

use super::xml::nodedev_regions;
use super::{Lines, Paste, Unread};
use crate::pci::address::PciAddress;
use crate::pci::listing::lspci::{bdf_len, driver_in_use, group_heading};
use crate::pci::listing::nodedev::UNKNOWN_CLASS;
use crate::pci::listing::{
    parse_listing, parse_listing_without_classes, ListingError, ReportedHost,
};

/// Where the paste says a function's group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PciSource {
    /// The `IOMMU Group N` loop.
    GroupListing,
    /// `find /sys/kernel/iommu_groups/ -type l` (or `ls -l` of it).
    FindPaths,
    /// `virsh nodedev-dumpxml`'s `<iommuGroup>`.
    Nodedev,
}

impl PciSource {
    pub fn as_str(self) -> &'static str {
        match self {
            PciSource::GroupListing => "the IOMMU group listing",
            PciSource::FindPaths => "the /sys/kernel/iommu_groups paths",
            PciSource::Nodedev => "virsh nodedev-dumpxml",
        }
    }
}

/// What the host did with a function, as far as the paste says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum HostDriver {
    /// The paste does not say (plain `lspci -nn`, a `find` path).
    #[default]
    NotShown,
    /// `lspci -k` without "Kernel driver in use", nodedev without `<driver>`.
    None,
    Bound(String),
}

impl HostDriver {
    pub fn name(&self) -> Option<&str> {
        match self {
            HostDriver::Bound(d) => Some(d),
            _ => None,
        }
    }
}

impl Serialize for HostDriver {
    /// The driver's name, `"none"`, or null when the paste does not say.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            HostDriver::NotShown => s.serialize_none(),
            HostDriver::None => s.serialize_str("none"),
            HostDriver::Bound(d) => s.serialize_str(d),
        }
    }
}

/// One PCI function, from every part of the paste that names it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PastedFunction {
    pub address: PciAddress,
    /// The 24-bit class code; from a class name when the paste has
    /// `lspci -k` without codes (prog-if 0 then).
    pub class: Option<u32>,
    pub vendor: Option<u16>,
    pub device: Option<u16>,
    pub description: String,
    pub driver: HostDriver,
    /// The first line that names it.
    pub line: usize,
}

impl PastedFunction {
    /// `0604` and `0609`: bridges never need to leave the host.
    pub fn is_bridge(&self) -> bool {
        matches!(self.class.map(|c| c >> 8), Some(0x0604 | 0x0609))
            || self.driver.name() == Some("pcieport")
    }

    pub fn class_code(&self) -> Option<u16> {
        self.class.map(|c| (c >> 8) as u16)
    }
}

pub(super) fn read(file: &str, lines: &Lines, owned: &mut [bool], paste: &mut Paste) {
    let mut functions: BTreeMap<PciAddress, PastedFunction> = BTreeMap::new();
    let mut memberships: Vec<(PciAddress, u32, usize, PciSource)> = Vec::new();

    let nodedev = nodedev_regions(lines.text());
    if !nodedev.is_empty() {
        let mut keep = vec![false; lines.len()];
        for &(s, e) in &nodedev {
            for i in lines.index_of(s)..=lines.index_of(e.saturating_sub(1)) {
                keep[i] = true;
                owned[i] = true;
            }
        }
        if let Some(host) = read_listing(file, lines, keep, &mut paste.unread) {
            merge_listing(
                &host,
                PciSource::Nodedev,
                true,
                &mut functions,
                &mut memberships,
            );
        }
    }

    let blocks = group_blocks(lines, owned);
    if blocks.iter().any(|&k| k) {
        for (i, &k) in blocks.iter().enumerate() {
            owned[i] |= k;
        }
        if let Some(host) = read_listing(file, lines, blocks.clone(), &mut paste.unread) {
            merge_listing(
                &host,
                PciSource::GroupListing,
                false,
                &mut functions,
                &mut memberships,
            );
        }
        // Drivers under the loop's lines (`lspci -nnks`).
        for i in (0..lines.len()).filter(|&i| blocks[i]) {
            if let Some(address) = device_address(lines.get(i)) {
                let (_, driver) = details(lines, i);
                if driver != HostDriver::NotShown {
                    functions.entry(address).or_default().driver = driver;
                }
            }
        }
    }

    for (i, owned) in owned.iter_mut().enumerate() {
        if *owned {
            continue;
        }
        if let Some((group, address)) = find_path(lines.get(i)) {
            *owned = true;
            memberships.push((address, group, i + 1, PciSource::FindPaths));
            functions.entry(address).or_insert_with(|| PastedFunction {
                address,
                line: i + 1,
                ..PastedFunction::default()
            });
        }
    }

    let mut i = 0;
    while i < lines.len() {
        if owned[i] || device_address(lines.get(i)).is_none() {
            i += 1;
            continue;
        }
        let (taken, driver) = details(lines, i);
        match lspci_line(file, lines, i) {
            Ok(mut f) => {
                f.driver = driver;
                merge_function(&mut functions, f);
            }
            Err(why) => paste.unread.push(Unread {
                line: i + 1,
                why: why.to_string(),
            }),
        }
        for line in &mut owned[i..=i + taken] {
            *line = true;
        }
        i += taken + 1;
    }

    paste.groups_from = [
        PciSource::GroupListing,
        PciSource::Nodedev,
        PciSource::FindPaths,
    ]
    .into_iter()
    .find(|s| memberships.iter().any(|m| m.3 == *s));
    let mut groups: BTreeMap<u32, Vec<PciAddress>> = BTreeMap::new();
    let mut group_of: BTreeMap<PciAddress, (u32, usize)> = BTreeMap::new();
    for (address, group, line, _) in memberships {
        match group_of.get(&address) {
            Some(&(first, first_line)) if first != group => paste.unread.push(Unread {
                line,
                why: format!(
                    "{address} is in IOMMU group {group} here but in group {first} on line {first_line}; kept group {first}"
                ),
            }),
            Some(_) => {}
            None => {
                group_of.insert(address, (group, line));
                groups.entry(group).or_default().push(address);
            }
        }
    }
    for members in groups.values_mut() {
        members.sort();
    }
    paste.functions = functions;
    paste.groups = groups;
}

/// Reads the kept lines with the listing reader; a line it rejects is set
/// aside (with the reader's words) and the rest read again.
fn read_listing(
    file: &str,
    lines: &Lines,
    mut keep: Vec<bool>,
    unread: &mut Vec<Unread>,
) -> Option<ReportedHost> {
    for _ in 0..lines.len() {
        let text = lines.only(|i| keep[i]);
        match parse_listing_without_classes(file, &text) {
            Ok(host) => return Some(host),
            Err(ListingError::Empty { .. } | ListingError::NoDevice { .. }) => return None,
            Err(e) => {
                let line = e.place().line as usize;
                unread.push(Unread {
                    line,
                    why: e.to_string(),
                });
                let index = line.saturating_sub(1);
                if !keep.get(index).copied().unwrap_or(false) {
                    return None;
                }
                keep[index] = false;
            }
        }
    }
    None
}

fn merge_listing(
    host: &ReportedHost,
    source: PciSource,
    with_drivers: bool,
    functions: &mut BTreeMap<PciAddress, PastedFunction>,
    memberships: &mut Vec<(PciAddress, u32, usize, PciSource)>,
) {
    for f in &host.functions {
        merge_function(
            functions,
            PastedFunction {
                address: f.address,
                // An old libvirt's nodedev says no class: let lspci say it.
                class: Some(f.class).filter(|&c| !(with_drivers && c == UNKNOWN_CLASS)),
                vendor: Some(f.vendor),
                device: Some(f.device),
                description: f.description.clone(),
                driver: match (&f.driver, with_drivers) {
                    (Some(d), _) => HostDriver::Bound(d.clone()),
                    (None, true) => HostDriver::None,
                    (None, false) => HostDriver::NotShown,
                },
                line: f.line,
            },
        );
    }
    for (group, members) in host.groups() {
        for address in members {
            let line = host.function(address).map_or_else(
                || {
                    host.members_not_dumped
                        .iter()
                        .find(|m| m.address == address)
                        .map_or(0, |m| m.line)
                },
                |f| f.line,
            );
            memberships.push((address, group, line, source));
        }
    }
}

/// Adds what `new` knows to what is known of its function.
fn merge_function(functions: &mut BTreeMap<PciAddress, PastedFunction>, new: PastedFunction) {
    let Some(old) = functions.get_mut(&new.address) else {
        functions.insert(new.address, new);
        return;
    };
    // Codes read from ids beat a class guessed from its name.
    if old.class.is_none() || (old.vendor.is_none() && new.vendor.is_some()) {
        old.class = new.class.or(old.class);
    }
    old.vendor = old.vendor.or(new.vendor);
    old.device = old.device.or(new.device);
    if old.description.is_empty() {
        old.description = new.description;
    }
    if new.driver != HostDriver::NotShown {
        old.driver = new.driver;
    }
    if old.line == 0 {
        old.line = new.line;
    }
}

/// Marks the lines of the IOMMU group listing: each heading, the device
/// lines under it (or on it), their detail lines and blank lines between,
/// up to the first line that is none of those.
fn group_blocks(lines: &Lines, owned: &[bool]) -> Vec<bool> {
    let mut block = vec![false; lines.len()];
    let mut inside = false;
    let mut last_device = false;
    for i in 0..lines.len() {
        if owned[i] {
            inside = false;
            continue;
        }
        let line = lines.get(i);
        let body = line.trim();
        if group_heading(line).is_some() {
            inside = true;
            block[i] = true;
            last_device = group_heading(line).is_some_and(|(_, after)| after < line.len());
            continue;
        }
        if !inside {
            continue;
        }
        if body.is_empty() {
            last_device = false;
            continue;
        }
        if bdf_len(body).is_some() {
            block[i] = true;
            last_device = true;
        } else if last_device && (is_detail(body) || line.len() > body.len() + 1) {
            block[i] = true;
        } else {
            inside = false;
        }
    }
    block
}

/// The address of a device line (one that starts with a PCI address).
fn device_address(line: &str) -> Option<PciAddress> {
    let body = line.trim_start();
    let len = bdf_len(body)?;
    body[..len].parse().ok()
}

fn is_detail(body: &str) -> bool {
    [
        "Subsystem:",
        "Kernel driver in use:",
        "Kernel modules:",
        "DeviceName:",
    ]
    .iter()
    .any(|k| body.starts_with(k))
}

/// The detail lines under device line `i` (`lspci -k`'s, `-v`'s): how
/// many follow, and the driver they say. A device line with `Kernel
/// modules:` or `Subsystem:` but no "Kernel driver in use" has no driver.
fn details(lines: &Lines, i: usize) -> (usize, HostDriver) {
    let indent = |l: &str| l.len() - l.trim_start().len();
    let own = indent(lines.get(i));
    let mut taken = 0;
    let mut driver = HostDriver::NotShown;
    for j in i + 1..lines.len() {
        let line = lines.get(j);
        let body = line.trim();
        if body.is_empty() || bdf_len(body).is_some() || group_heading(line).is_some() {
            break;
        }
        if !(is_detail(body) || indent(line) > own) {
            break;
        }
        taken += 1;
        if let Some(d) = driver_in_use(body) {
            driver = HostDriver::Bound(d.to_string());
        } else if is_detail(body) && driver == HostDriver::NotShown {
            driver = HostDriver::None;
        }
    }
    (taken, driver)
}

/// `/sys/kernel/iommu_groups/13/devices/0000:01:00.0`, alone (find) or in
/// an `ls -l` line: the group and the address.
fn find_path(line: &str) -> Option<(u32, PciAddress)> {
    let (_, after) = line.split_once("/sys/kernel/iommu_groups/")?;
    let (group, after) = after.split_once("/devices/")?;
    let group: u32 = group.parse().ok()?;
    let token = after.split_whitespace().next()?;
    Some((group, token.parse().ok()?))
}

/// Why [`lspci_line`] set a device line aside.
#[derive(Debug, thiserror::Error)]
enum UnreadLine {
    /// The listing reader's own words.
    #[error(transparent)]
    Listing(#[from] ListingError),
    /// `lspci -k`'s class name without a code, and not one lspci prints.
    #[error("{address}: found the class '{class_name}' without a code, expected `lspci -nn` output ([cccc] after the class name) or a class name lspci prints")]
    ClassName {
        address: PciAddress,
        class_name: String,
    },
}

/// Reads a device line outside the group listing: `lspci -nn`'s with its
/// codes, or `lspci -k`'s with names only (class from its name).
fn lspci_line(file: &str, lines: &Lines, i: usize) -> Result<PastedFunction, UnreadLine> {
    // The line alone, after as many newlines as precede it: the reader's
    // line:column stay the paste's without copying the whole paste.
    let text = format!("{}{}", "\n".repeat(i), lines.get(i));
    match parse_listing(file, &text) {
        Ok(host) => {
            let f = &host.functions[0];
            Ok(PastedFunction {
                address: f.address,
                class: Some(f.class),
                vendor: Some(f.vendor),
                device: Some(f.device),
                description: f.description.clone(),
                driver: HostDriver::NotShown,
                line: i + 1,
            })
        }
        Err(ListingError::NoIds { address, .. } | ListingError::NoClass { address, .. }) => {
            let body = lines.get(i).trim();
            let after = body[bdf_len(body).unwrap_or(0)..].trim();
            let (class_name, names) = after.split_once(": ").unwrap_or((after, ""));
            let class = class_from_name(class_name).ok_or_else(|| UnreadLine::ClassName {
                address,
                class_name: class_name.to_string(),
            })?;
            let names = names
                .find(" (rev ")
                .map_or(names, |cut| &names[..cut])
                .trim();
            Ok(PastedFunction {
                address,
                class: Some(u32::from(class) << 8),
                vendor: None,
                device: None,
                description: format!("{class_name}: {names}"),
                driver: HostDriver::NotShown,
                line: i + 1,
            })
        }
        Err(e) => Err(e.into()),
    }
}

/// The class code of a class name as lspci prints it (pci.ids' names),
/// for the classes that matter to a verdict.
pub(crate) fn class_from_name(name: &str) -> Option<u16> {
    const NAMES: &[(&str, u16)] = &[
        ("SCSI storage controller", 0x0100),
        ("IDE interface", 0x0101),
        ("RAID bus controller", 0x0104),
        ("SATA controller", 0x0106),
        ("Serial Attached SCSI controller", 0x0107),
        ("Non-Volatile memory controller", 0x0108),
        ("Mass storage controller", 0x0180),
        ("Ethernet controller", 0x0200),
        ("Network controller", 0x0280),
        ("VGA compatible controller", 0x0300),
        ("3D controller", 0x0302),
        ("Display controller", 0x0380),
        ("Multimedia video controller", 0x0400),
        ("Multimedia audio controller", 0x0401),
        ("Audio device", 0x0403),
        ("Multimedia controller", 0x0480),
        ("RAM memory", 0x0500),
        ("Memory controller", 0x0580),
        ("Host bridge", 0x0600),
        ("ISA bridge", 0x0601),
        ("PCI bridge", 0x0604),
        ("Bridge", 0x0680),
        ("Communication controller", 0x0780),
        ("Serial controller", 0x0700),
        ("System peripheral", 0x0880),
        ("IOMMU", 0x0806),
        ("Signal processing controller", 0x1180),
        ("Encryption controller", 0x1080),
        ("USB controller", 0x0c03),
        ("SMBus", 0x0c05),
        ("Serial bus controller", 0x0c80),
        ("Non-Essential Instrumentation", 0x1300),
        ("Unassigned class", 0xff00),
    ];
    NAMES
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name.trim()))
        .map(|&(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_paths_in_find_and_ls_shapes() {
        let a: PciAddress = "0000:01:00.1".parse().unwrap();
        assert_eq!(
            find_path("/sys/kernel/iommu_groups/13/devices/0000:01:00.1"),
            Some((13, a))
        );
        assert_eq!(
            find_path("lrwxrwxrwx 1 root root 0 Jan  5 10:11 /sys/kernel/iommu_groups/13/devices/0000:01:00.1 -> ../../../../devices/pci0000:00/0000:00:01.0/0000:01:00.1"),
            Some((13, a))
        );
        assert_eq!(find_path("ls /sys/kernel/iommu_groups/"), None);
    }

    #[test]
    fn lspci_k_class_names() {
        assert_eq!(class_from_name("Audio device"), Some(0x0403));
        assert_eq!(class_from_name("SMBus"), Some(0x0c05));
        assert_eq!(class_from_name("Frobnicator"), None);
    }
}
