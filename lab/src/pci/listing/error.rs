//! Why a listing cannot be read, and where: `FILE:LINE:COLUMN: found ..., expected ...`.

use std::fmt;

use crate::pci::address::PciAddress;
use crate::source::Pos;

/// Where in which input something was found: prints as `FILE:LINE:COLUMN`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Place {
    pub file: String,
    /// 1-based.
    pub line: u32,
    /// 1-based, in characters (a tab is one).
    pub column: u32,
}

impl Place {
    pub fn pos(&self) -> Pos {
        Pos {
            line: self.line,
            column: self.column,
        }
    }
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

/// A listing that cannot be read; each says what was found and what was expected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ListingError {
    #[error("{at}: found an empty listing, expected the output of the IOMMU group loop, of `lspci -nn` or of `virsh nodedev-dumpxml`")]
    Empty { at: Place },
    #[error("{at}: found no PCI device in the listing, expected lines such as `01:00.0 VGA compatible controller [0300]: NVIDIA Corporation GK104 [GeForce GTX 760] [10de:1187]` or `<device>` documents with `<capability type='pci'>`")]
    NoDevice { at: Place },
    #[error("{at}: found the device line of {address} without vendor:device ids, expected them as `[vvvv:dddd]` after the device name, as `lspci -nn` prints them")]
    NoIds { at: Place, address: PciAddress },
    #[error("{at}: found the device line of {address} without a class code, expected `[cccc]` right before the ':' after the class name, as `lspci -nn` prints it")]
    NoClass { at: Place, address: PciAddress },
    #[error("{at}: found {address} before any IOMMU group heading, expected `IOMMU Group N` above it or in front of it, as in the rest of this listing")]
    NoGroup { at: Place, address: PciAddress },
    #[error("{at}: found {address} a second time (first on line {first_line}), expected each function once")]
    Duplicate {
        at: Place,
        address: PciAddress,
        first_line: usize,
    },
    #[error("{at}: found {address} in IOMMU group {group}, but line {first_line} puts it in group {first_group}; expected each function in one group")]
    TwoGroups {
        at: Place,
        address: PciAddress,
        group: u32,
        first_group: u32,
        first_line: usize,
    },
    #[error("{at}: found {found}, expected {expected}")]
    Unreadable {
        at: Place,
        found: String,
        expected: String,
    },
    #[error("{at}: the XML is not well-formed: {message}")]
    Xml { at: Place, message: String },
}

impl ListingError {
    /// Where the error is, for tests and for callers that render it their way.
    pub fn place(&self) -> &Place {
        match self {
            ListingError::Empty { at }
            | ListingError::NoDevice { at }
            | ListingError::NoIds { at, .. }
            | ListingError::NoClass { at, .. }
            | ListingError::NoGroup { at, .. }
            | ListingError::Duplicate { at, .. }
            | ListingError::TwoGroups { at, .. }
            | ListingError::Unreadable { at, .. }
            | ListingError::Xml { at, .. } => at,
        }
    }
}
