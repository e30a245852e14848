//! A reporter's host, read from the PCI listing pasted into a bug report:
//! the IOMMU group loop (lspci lines under `IOMMU Group N` headings),
//! plain `lspci -nn`, or `virsh nodedev-dumpxml` documents.
//!
//! The format is found from the text ([`ListingFormat::detect`]). Reading is
//! tolerant of what surrounds a listing (prose, shell prompts, markdown
//! fences, CRLF, tabs, `lspci -v` detail lines) and strict about what it
//! cannot read: a line that starts with a PCI address must be a whole
//! `lspci -nn` device line, and every function appears once, in one group.
//!
//! Pure: text in, [`ReportedHost`] or a [`ListingError`] with FILE:LINE:COLUMN out.

mod error;
pub(crate) mod lspci;
pub(crate) mod nodedev;

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

pub use error::{ListingError, Place};

use crate::pci::address::PciAddress;
use crate::source::SourceText;

/// Which of the pasted formats a listing is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ListingFormat {
    /// `lspci -nns` lines under `IOMMU Group N` headings: on the line
    /// itself (`IOMMU Group 1 01:00.0 ...`) or on a line of its own
    /// (`IOMMU Group 1:`, `IOMMU group 1`) above indented device lines.
    IommuGroups,
    /// Plain `lspci -nn` (also `-nnk`, `-nnv`, `-nns`): no groups.
    LspciNn,
    /// One or more `virsh nodedev-dumpxml` `<device>` documents.
    NodedevDumpxml,
}

impl ListingFormat {
    /// The format of `text`: nodedev XML when it holds a `<device>` start
    /// tag, else the group listing when any line is an IOMMU group
    /// heading, else plain `lspci -nn`.
    pub fn detect(text: &str) -> ListingFormat {
        if nodedev::next_document(text, 0).is_some() {
            ListingFormat::NodedevDumpxml
        } else if text.lines().any(|l| lspci::group_heading(l).is_some()) {
            ListingFormat::IommuGroups
        } else {
            ListingFormat::LspciNn
        }
    }

    /// Whether listings of this format say which IOMMU group a function is in.
    pub fn has_groups(self) -> bool {
        !matches!(self, ListingFormat::LspciNn)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ListingFormat::IommuGroups => "IOMMU group listing",
            ListingFormat::LspciNn => "lspci -nn",
            ListingFormat::NodedevDumpxml => "virsh nodedev-dumpxml",
        }
    }
}

impl fmt::Display for ListingFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One PCI function of the reporter's host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ReportedFunction {
    /// Domain 0 when the listing omits it (lspci without `-D`).
    pub address: PciAddress,
    /// The 24-bit class code (class, subclass, prog-if), e.g. 0x030000.
    /// lspci prints only class and subclass (`[0300]`); the prog-if byte
    /// is taken from `(prog-if 00 [VGA controller])` when the line has it
    /// (`lspci -nnv`) and is 0 otherwise. nodedev's `<class>` has all 24 bits.
    pub class: u32,
    pub vendor: u16,
    pub device: u16,
    /// lspci: the class name, `: `, then the vendor and device names, ids
    /// and class code removed: `VGA compatible controller: NVIDIA
    /// Corporation GK104 [GeForce GTX 760]`. nodedev has no class name:
    /// `NVIDIA Corporation GK104 [GeForce GTX 760]` (vendor, product).
    pub description: String,
    /// `None` for plain `lspci -nn`, and for a nodedev device without `<iommuGroup>`.
    pub iommu_group: Option<u32>,
    /// The bridge above it, when the listing says: nodedev's `<parent>`
    /// (`None` for `computer`), or in `lspci -nnv` the bridge whose
    /// `Bus: ... secondary=BB` is this function's bus.
    pub parent: Option<PciAddress>,
    /// The driver bound on the reporter's host, when the listing says:
    /// `Kernel driver in use: X` under the device line (`lspci -k`), or
    /// nodedev's `<driver><name>`. `None` when the listing does not say,
    /// which is not "no driver": plain `lspci -nn` never says.
    pub driver: Option<String>,
    /// The 1-based line it was read from (the `<device>` tag for nodedev).
    pub line: usize,
}

/// A function that a nodedev `<iommuGroup>` names as a member but whose
/// own `<device>` was not dumped: its group is known, its ids are not, so
/// it is a member in [`ReportedHost::groups`] and not a [`ReportedFunction`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GroupMember {
    pub address: PciAddress,
    pub iommu_group: u32,
    /// The line of the first `<address>` that names it.
    pub line: usize,
}

/// What a listing says about the reporter's host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ReportedHost {
    pub source: ListingFormat,
    /// In the order the listing gives them.
    pub functions: Vec<ReportedFunction>,
    /// nodedev only: group members not dumped themselves, sorted by address.
    pub members_not_dumped: Vec<GroupMember>,
}

impl ReportedHost {
    pub fn function(&self, address: PciAddress) -> Option<&ReportedFunction> {
        self.functions.iter().find(|f| f.address == address)
    }

    /// Group number -> members, sorted by address.
    ///
    /// When the listing names groups, these are the reported groups (with
    /// nodedev's [`members_not_dumped`](Self::members_not_dumped)); a
    /// function without a group is in none. When no function has a group
    /// (plain `lspci -nn`, or a nodedev dump of a host without an IOMMU),
    /// the functions of one slot (bus:slot) form one group, as on a host
    /// without ACS between functions, numbered 0, 1, ... in address order;
    /// those numbers are the lab's, not the reporter's.
    pub fn groups(&self) -> BTreeMap<u32, Vec<PciAddress>> {
        let mut groups: BTreeMap<u32, Vec<PciAddress>> = BTreeMap::new();
        let reported = self.functions.iter().any(|f| f.iommu_group.is_some())
            || !self.members_not_dumped.is_empty();
        if reported {
            let listed = self
                .functions
                .iter()
                .filter_map(|f| f.iommu_group.map(|g| (g, f.address)));
            let others = self
                .members_not_dumped
                .iter()
                .map(|m| (m.iommu_group, m.address));
            for (group, address) in listed.chain(others) {
                groups.entry(group).or_default().push(address);
            }
        } else {
            let mut addresses: Vec<PciAddress> = self.functions.iter().map(|f| f.address).collect();
            addresses.sort();
            let mut next = 0;
            for address in addresses {
                let same_slot = groups
                    .values()
                    .next_back()
                    .is_some_and(|members| members[0].same_slot(address));
                if !same_slot {
                    groups.insert(next, Vec::new());
                    next += 1;
                }
                groups.values_mut().next_back().unwrap().push(address);
            }
        }
        for members in groups.values_mut() {
            members.sort();
        }
        groups
    }
}

/// Reads a pasted listing, naming it `name` in errors.
pub fn parse_listing(name: &str, text: &str) -> Result<ReportedHost, ListingError> {
    read_listing(name, text, false)
}

/// As [`parse_listing`], but a nodedev `<device>` without `<class>` is
/// read with [`nodedev::UNKNOWN_CLASS`], for a reader that learns the
/// class elsewhere (`diagnose`, from the lspci beside it).
pub(crate) fn parse_listing_without_classes(
    name: &str,
    text: &str,
) -> Result<ReportedHost, ListingError> {
    read_listing(name, text, true)
}

fn read_listing(
    name: &str,
    text: &str,
    class_optional: bool,
) -> Result<ReportedHost, ListingError> {
    let src = SourceText::new(text);
    let mut host = Collector::new(name, &src);
    host.class_optional = class_optional;
    if text.trim().is_empty() {
        return Err(ListingError::Empty {
            at: host.place(text.len()),
        });
    }
    let source = ListingFormat::detect(text);
    match source {
        ListingFormat::NodedevDumpxml => nodedev::read(&mut host)?,
        ListingFormat::IommuGroups => lspci::read(&mut host, true)?,
        ListingFormat::LspciNn => lspci::read(&mut host, false)?,
    }
    host.finish(source)
}

/// Gathers functions and group memberships from a format's reader, and
/// checks that each function is listed once and is in one group.
struct Collector<'a> {
    file: &'a str,
    src: &'a SourceText<'a>,
    functions: Vec<ReportedFunction>,
    /// Address -> index in `functions`.
    listed: BTreeMap<PciAddress, usize>,
    /// Address -> (group, line) of the first membership seen.
    memberships: BTreeMap<PciAddress, (u32, usize)>,
    /// A nodedev `<device>` may lack `<class>`.
    class_optional: bool,
}

impl<'a> Collector<'a> {
    fn new(file: &'a str, src: &'a SourceText<'a>) -> Self {
        Collector {
            file,
            src,
            functions: Vec::new(),
            listed: BTreeMap::new(),
            memberships: BTreeMap::new(),
            class_optional: false,
        }
    }

    fn text(&self) -> &'a str {
        self.src.text()
    }

    /// The place of a byte offset in the input.
    fn place(&self, offset: usize) -> Place {
        let pos = self.src.pos(offset);
        Place {
            file: self.file.to_string(),
            line: pos.line,
            column: pos.column,
        }
    }

    fn line_of(&self, offset: usize) -> usize {
        self.src.pos(offset).line as usize
    }

    /// Records that `address` is in `group`, named at byte `offset`.
    fn member(
        &mut self,
        address: PciAddress,
        group: u32,
        offset: usize,
    ) -> Result<(), ListingError> {
        let line = self.line_of(offset);
        match self.memberships.get(&address) {
            Some(&(first_group, first_line)) if first_group != group => {
                Err(ListingError::TwoGroups {
                    at: self.place(offset),
                    address,
                    group,
                    first_group,
                    first_line,
                })
            }
            Some(_) => Ok(()),
            None => {
                self.memberships.insert(address, (group, line));
                Ok(())
            }
        }
    }

    /// Adds a function read at byte `offset` (where its address is written).
    fn function(&mut self, function: ReportedFunction, offset: usize) -> Result<(), ListingError> {
        let address = function.address;
        if let Some(group) = function.iommu_group {
            self.member(address, group, offset)?;
        }
        if let Some(&first) = self.listed.get(&address) {
            return Err(ListingError::Duplicate {
                at: self.place(offset),
                address,
                first_line: self.functions[first].line,
            });
        }
        self.listed.insert(address, self.functions.len());
        self.functions.push(function);
        Ok(())
    }

    fn finish(self, source: ListingFormat) -> Result<ReportedHost, ListingError> {
        if self.functions.is_empty() {
            return Err(ListingError::NoDevice {
                at: self.place(self.text().len()),
            });
        }
        let members_not_dumped = self
            .memberships
            .iter()
            .filter(|(address, _)| !self.listed.contains_key(address))
            .map(|(&address, &(iommu_group, line))| GroupMember {
                address,
                iommu_group,
                line,
            })
            .collect();
        Ok(ReportedHost {
            source,
            functions: self.functions,
            members_not_dumped,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn function(address: &str, group: Option<u32>) -> ReportedFunction {
        ReportedFunction {
            address: address.parse().unwrap(),
            class: 0x020000,
            vendor: 0x8086,
            device: 0x1572,
            description: String::new(),
            iommu_group: group,
            parent: None,
            driver: None,
            line: 1,
        }
    }

    fn addresses(list: &[&str]) -> Vec<PciAddress> {
        list.iter().map(|a| a.parse().unwrap()).collect()
    }

    #[test]
    fn without_groups_each_slot_is_a_group() {
        let host = ReportedHost {
            source: ListingFormat::LspciNn,
            functions: vec![
                function("c6:00.1", None),
                function("00:1f.3", None),
                function("c6:00.0", None),
                function("00:1f.0", None),
                function("01:00.0", None),
            ],
            members_not_dumped: Vec::new(),
        };
        let groups = host.groups();
        assert_eq!(groups.len(), 3);
        assert_eq!(groups[&0], addresses(&["00:1f.0", "00:1f.3"]));
        assert_eq!(groups[&1], addresses(&["01:00.0"]));
        assert_eq!(groups[&2], addresses(&["c6:00.0", "c6:00.1"]));
    }

    #[test]
    fn reported_groups_include_members_not_dumped() {
        let host = ReportedHost {
            source: ListingFormat::NodedevDumpxml,
            functions: vec![function("01:00.0", Some(1))],
            members_not_dumped: vec![GroupMember {
                address: "01:00.1".parse().unwrap(),
                iommu_group: 1,
                line: 9,
            }],
        };
        assert_eq!(host.groups()[&1], addresses(&["01:00.0", "01:00.1"]));
    }

    #[test]
    fn formats_are_detected() {
        assert_eq!(
            ListingFormat::detect("$ virsh nodedev-dumpxml pci_0000_01_00_0\n<device>\n"),
            ListingFormat::NodedevDumpxml
        );
        assert_eq!(
            ListingFormat::detect("<devices>\nIOMMU Group 3:\n"),
            ListingFormat::IommuGroups
        );
        assert_eq!(
            ListingFormat::detect("00:00.0 Host bridge [0600]: Intel [8086:3e30]\n"),
            ListingFormat::LspciNn
        );
    }

    #[test]
    fn errors_start_with_file_line_column() {
        let err = parse_listing("r.txt", "\n  \r\n").unwrap_err();
        assert!(matches!(err, ListingError::Empty { .. }));
        assert!(
            err.to_string()
                .starts_with("r.txt:3:1: found an empty listing"),
            "{err}"
        );
        let err = parse_listing("r.txt", "hello\n").unwrap_err();
        assert!(matches!(err, ListingError::NoDevice { .. }));
    }
}
