//! A bug report's own host in the lab: the reporter's pasted PCI listing
//! (read by [`lab::pci::listing`]) becomes an L1 topology with the
//! reporter's addresses and groups ([`build`]), the reporter's XML is
//! pointed at the lab's addresses where they differ ([`rewrite`]), and
//! the groups L1's kernel formed are compared with the reported ones
//! ([`groups`]).
//!
//! A topology built from a listing is named `host:PATH` wherever a
//! topology name goes (scenarios, the suite's shared L1s): loading that
//! name reads and builds the listing again, which is pure and quick.

pub mod build;
pub mod groups;
pub mod rewrite;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use lab::pci::listing::{parse_listing, ListingError};
use lab::pci::view::{HostView, PciFunction};
use lab::PciAddress;
use serde::Serialize;

use crate::host::topology::{Slot, Topology};

/// The prefix of a topology name that is a listing's path.
pub const PREFIX: &str = "host:";

/// Why a reporter's listing gives no host: it cannot be read, it is no
/// listing (FILE:LINE:COLUMN), or the lab cannot build it.
#[derive(Debug, thiserror::Error)]
pub enum LabHostError {
    #[error("{}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Listing(#[from] ListingError),
    #[error(transparent)]
    Build(#[from] build::BuildError),
}

fn read_listing(path: &Path) -> Result<String, LabHostError> {
    std::fs::read_to_string(path).map_err(|source| LabHostError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// What a reported host became in the lab.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabHost {
    pub topology: Topology,
    /// Every reported endpoint, by reported address.
    pub map: Vec<MappedFunction>,
    /// The reported IOMMU groups, endpoints only, at reported addresses.
    pub reported_groups: Vec<Vec<PciAddress>>,
    /// Reported groups that hold a bridge beside endpoints (reported, not checked).
    pub bridge_notes: Vec<String>,
}

/// One line of the host map: a reported function and what stands in for it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MappedFunction {
    pub reported: PciAddress,
    pub lab: PciAddress,
    pub reported_ids: String,
    pub reported_class: String,
    pub description: String,
    /// The QEMU device that stands in for it.
    pub device: String,
    pub lab_ids: String,
    pub lab_class: String,
    /// Why it is not at its reported address (none when it is).
    pub why: Option<String>,
}

impl LabHost {
    /// Reads and builds the listing at `path`; errors are FILE:LINE:COLUMN.
    pub fn load(path: &Path) -> Result<LabHost, LabHostError> {
        let text = read_listing(path)?;
        let name = path.display().to_string();
        let host = parse_listing(&name, &text)?;
        let mut built = build::build(&name, &host)?;
        built.topology.name = topology_name(path);
        Ok(built)
    }

    /// The lab address of a reported function, when it has a stand-in.
    pub fn lab_address(&self, reported: PciAddress) -> Option<PciAddress> {
        self.map
            .iter()
            .find(|m| m.reported == reported)
            .map(|m| m.lab)
    }

    pub fn reported_address(&self, lab: PciAddress) -> Option<PciAddress> {
        self.map.iter().find(|m| m.lab == lab).map(|m| m.reported)
    }

    /// The functions that do not sit at their reported address.
    pub fn moved(&self) -> impl Iterator<Item = &MappedFunction> {
        self.map.iter().filter(|m| m.reported != m.lab)
    }

    /// The host map as text lines: one per function that sits elsewhere,
    /// one for all those at their reported address.
    pub fn map_lines(&self) -> Vec<String> {
        let same: Vec<String> = self
            .map
            .iter()
            .filter(|m| m.lab == m.reported)
            .map(|m| format!("{} {} [{}]", m.reported, m.device, m.lab_ids))
            .collect();
        let mut lines: Vec<String> = self
            .moved()
            .map(|m| {
                let why = m
                    .why
                    .as_deref()
                    .map_or(String::new(), |w| format!(" ({w})"));
                format!(
                    "{} [{}] class {} -> {} {} [{}]{why}",
                    m.reported, m.reported_ids, m.reported_class, m.lab, m.device, m.lab_ids
                )
            })
            .collect();
        if !same.is_empty() {
            lines.insert(0, format!("at the reported address: {}", same.join(", ")));
        }
        lines
    }

    /// The topology as a topology file (the format of
    /// `images/topologies/*.toml`), the host map in its comments.
    pub fn to_toml(&self) -> String {
        let t = &self.topology;
        let mut s = String::new();
        let _ = writeln!(s, "# L1 topology for a reported host (mflab host).");
        let _ = writeln!(s, "# Host map: reported function -> the lab's stand-in.");
        for line in self.map_lines() {
            let _ = writeln!(s, "#   {line}");
        }
        for note in &self.bridge_notes {
            let _ = writeln!(s, "# note: {note}");
        }
        let _ = writeln!(s, "description = {}", quote(&t.description));
        let _ = writeln!(s, "iommu = {}", quote(t.iommu.qemu_name()));
        let groups: Vec<String> = t
            .expect_groups
            .iter()
            .map(|g| {
                let members: Vec<String> = g.iter().map(|a| quote(&a.to_string())).collect();
                format!("[{}]", members.join(", "))
            })
            .collect();
        let _ = writeln!(
            s,
            "# The reported groups (endpoints) at the lab's addresses; mflab compares L1's with them, the lab's bridges and gap fillers aside."
        );
        let _ = writeln!(s, "expect_groups = [{}]", groups.join(", "));
        let functions = |s: &mut String, f: &[String]| {
            let f: Vec<String> = f.iter().map(|x| quote(x)).collect();
            let _ = writeln!(s, "functions = [{}]", f.join(", "));
        };
        let slot = |s: &mut String, table: &str, slot: &Slot| {
            let _ = writeln!(s, "\n[[{table}]]\naddr = {:#04x}", slot.addr);
            functions(s, &slot.functions);
        };
        for x in &t.slot {
            slot(&mut s, "slot", x);
        }
        for b in &t.bridge {
            let _ = writeln!(s, "\n[[bridge]]\naddr = {:#04x}", b.addr);
            for x in &b.slot {
                slot(&mut s, "bridge.slot", x);
            }
        }
        for p in &t.root_port {
            let _ = writeln!(s, "\n[[root_port]]\naddr = {:#04x}", p.addr);
            if p.bus_reserve > 0 {
                let _ = writeln!(s, "bus_reserve = {}", p.bus_reserve);
            }
            if p.disable_acs {
                let _ = writeln!(s, "disable_acs = true");
            }
            if !p.functions.is_empty() {
                functions(&mut s, &p.functions);
            }
        }
        for w in &t.switch {
            let _ = writeln!(s, "\n[[switch]]\naddr = {:#04x}", w.addr);
            for d in &w.downstream {
                let _ = writeln!(s, "[[switch.downstream]]");
                functions(&mut s, &d.functions);
            }
        }
        s
    }
}

fn quote(s: &str) -> String {
    format!("{s:?}")
}

/// The topology name of a listing: `host:` and its absolute path.
pub fn topology_name(path: &Path) -> String {
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    format!("{PREFIX}{}", abs.display())
}

/// The listing a topology name names, when it is one.
pub fn listing_path(topology: &str) -> Option<&Path> {
    topology.strip_prefix(PREFIX).map(Path::new)
}

#[cfg(test)]
mod tests;

/// The reporter's host as a host view, at the reported addresses, for
/// `mflab plan --host`: ids, classes and groups as reported; the listing
/// says nothing of drivers, so every function has none.
pub fn host_view(path: &Path) -> Result<HostView, LabHostError> {
    let text = read_listing(path)?;
    let host = parse_listing(&path.display().to_string(), &text)?;
    let groups = host.groups();
    let group_of = |a: PciAddress| groups.iter().find(|(_, m)| m.contains(&a)).map(|(g, _)| *g);
    let functions = host
        .functions
        .iter()
        .map(|f| {
            let bridge = matches!(f.class >> 8, 0x0604 | 0x0609);
            let multifunction = host
                .functions
                .iter()
                .filter(|o| o.address.same_slot(f.address))
                .count()
                > 1;
            let function = PciFunction {
                address: f.address,
                vendor: f.vendor,
                device: f.device,
                class: f.class,
                header_type: u8::from(bridge) | if multifunction { 0x80 } else { 0 },
                driver: None,
                driver_override: None,
                iommu_group: group_of(f.address),
            };
            (f.address, function)
        })
        .collect();
    Ok(HostView { functions, groups })
}
