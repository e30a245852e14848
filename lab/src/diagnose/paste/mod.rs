//! A bug report as pasted: every part mflab can read, found in any order
//! and mix, and the lines it could not read.
//!
//! The paste is read in passes over its lines. Each pass takes the lines
//! of one kind and leaves the others: the domain XML and nodedev
//! documents first (they span lines), then the IOMMU group listing, the
//! `find /sys/kernel/iommu_groups` paths, `lspci -k` blocks, and single
//! lines (`ip`, `findmnt`/`lsblk`, error lines, versions). Prose, prompts,
//! markdown fences and tracebacks are what no pass takes.
//!
//! Readers that need positions get the paste with every line they do not
//! own blanked (newlines kept), so what they report is the paste's own
//! line:column.

mod host_state;
mod pci;
mod words;
mod xml;

use std::collections::BTreeMap;

use serde::Serialize;

pub use host_state::{Interface, RootFs};
pub use pci::{HostDriver, PastedFunction, PciSource};
pub use words::{ReportedError, Versions};
pub use xml::{XmlKind, XmlPart};

use crate::pci::address::PciAddress;

/// Everything read from one paste.
#[derive(Clone, Debug, Default)]
pub struct Paste {
    /// The domain XML, or the bare `<hostdev>` elements.
    pub xml: Option<XmlPart>,
    /// Every PCI function the paste names, by address.
    pub functions: BTreeMap<PciAddress, PastedFunction>,
    /// IOMMU group -> members, as the paste gives them.
    pub groups: BTreeMap<u32, Vec<PciAddress>>,
    /// Where the groups came from; `None` when the paste has none.
    pub groups_from: Option<PciSource>,
    pub errors: Vec<ReportedError>,
    pub interfaces: Vec<Interface>,
    pub root: Option<RootFs>,
    pub versions: Versions,
    /// Lines that looked like data and could not be read.
    pub unread: Vec<Unread>,
}

/// A line of the paste that a reader could not read, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Unread {
    pub line: usize,
    pub why: String,
}

impl Paste {
    pub fn function(&self, address: PciAddress) -> Option<&PastedFunction> {
        self.functions.get(&address)
    }

    /// The group of a function, with its members.
    pub fn group_of(&self, address: PciAddress) -> Option<(u32, &[PciAddress])> {
        self.groups
            .iter()
            .find(|(_, m)| m.contains(&address))
            .map(|(g, m)| (*g, m.as_slice()))
    }
}

/// Reads a paste, naming it `file` in positions.
pub fn read_paste(file: &str, text: &str) -> Paste {
    let lines = Lines::new(text);
    let mut owned = vec![false; lines.len()];
    let mut paste = Paste::default();
    paste.xml = xml::read(file, &lines, &mut owned, &mut paste.unread);
    pci::read(file, &lines, &mut owned, &mut paste);
    host_state::read(&lines, &mut owned, &mut paste);
    words::read(&lines, &mut owned, &mut paste);
    paste.unread.sort_by_key(|u| u.line);
    paste.unread.dedup();
    paste
}

/// The paste's lines, with mail quoting (`> `) and carriage returns
/// blanked so that columns stay those of the paste.
pub(crate) struct Lines {
    /// The paste with quote marks and `\r` replaced by spaces.
    work: String,
    /// Byte ranges of each line in `work`, without its newline.
    spans: Vec<(usize, usize)>,
}

impl Lines {
    fn new(text: &str) -> Lines {
        let mut work = String::with_capacity(text.len());
        let mut spans = Vec::new();
        for raw in text.split_inclusive('\n') {
            let start = work.len();
            let body = raw.trim_end_matches(['\n', '\r']);
            let quote = quote_prefix(body);
            work.extend(std::iter::repeat_n(' ', quote));
            work.push_str(&body[quote..]);
            let end = work.len();
            work.extend(std::iter::repeat_n(' ', raw.len() - body.len()));
            if raw.ends_with('\n') {
                work.pop();
                work.push('\n');
            }
            spans.push((start, end));
        }
        Lines { work, spans }
    }

    pub(crate) fn len(&self) -> usize {
        self.spans.len()
    }

    /// Line `i` (0-based), quote marks blanked, no newline.
    pub(crate) fn get(&self, i: usize) -> &str {
        let (start, end) = self.spans[i];
        &self.work[start..end]
    }

    pub(crate) fn start(&self, i: usize) -> usize {
        self.spans[i].0
    }

    /// The line index holding byte `offset`.
    pub(crate) fn index_of(&self, offset: usize) -> usize {
        self.spans.partition_point(|&(s, _)| s <= offset).max(1) - 1
    }

    /// The text with only the lines `keep` says blank-free; the others
    /// are spaces, so offsets and line:column are those of the paste.
    pub(crate) fn only(&self, keep: impl Fn(usize) -> bool) -> String {
        let mut out = String::with_capacity(self.work.len());
        for i in 0..self.len() {
            let line = self.get(i);
            if keep(i) {
                out.push_str(line);
            } else {
                out.extend(std::iter::repeat_n(' ', line.len()));
            }
            let next = self.spans.get(i + 1).map_or(self.work.len(), |s| s.0);
            out.push_str(&self.work[self.spans[i].1..next]);
        }
        out
    }

    /// The whole paste, quote marks blanked.
    pub(crate) fn text(&self) -> &str {
        &self.work
    }
}

/// The length of a mail quote prefix (`> `, `>> `, `> > `).
fn quote_prefix(line: &str) -> usize {
    let mut n = 0;
    let b = line.as_bytes();
    while n < b.len() && b[n] == b'>' {
        n += 1;
        if b.get(n) == Some(&b' ') {
            n += 1;
        }
    }
    // `>` alone closes an XML start tag written over several lines.
    if n > 0 && n == b.len() && !line.starts_with("> ") {
        return 0;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_and_crlf_are_blanked_in_place() {
        let lines = Lines::new("> > IOMMU Group 1:\r\n>\tx\n<a\n>\n");
        assert_eq!(lines.get(0), "    IOMMU Group 1:");
        assert_eq!(lines.get(1), " \tx");
        assert_eq!(lines.get(3), ">");
        assert_eq!(lines.start(1), 20);
        assert_eq!(lines.index_of(21), 1);
        // The `\r` is a blank too, so the next line starts where it did.
        assert_eq!(
            lines.only(|i| i == 1),
            format!("{}\n \tx\n  \n \n", " ".repeat(19))
        );
    }
}
