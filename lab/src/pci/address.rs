//! A PCI function address, `DDDD:BB:SS.F`, as the kernel and libvirt print it.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// One PCI function: domain, bus, slot (device) and function.
///
/// Ordered the way `lspci` sorts, so sorted lists read naturally.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct PciAddress {
    pub domain: u16,
    pub bus: u8,
    pub slot: u8,
    pub function: u8,
}

/// The largest value each part of a PCI address may take.
pub const MAX_DOMAIN: u32 = 0xffff;
pub const MAX_BUS: u32 = 0xff;
pub const MAX_SLOT: u32 = 0x1f;
pub const MAX_FUNCTION: u32 = 7;

impl PciAddress {
    pub const fn new(domain: u16, bus: u8, slot: u8, function: u8) -> Self {
        PciAddress {
            domain,
            bus,
            slot,
            function,
        }
    }

    /// The same slot, function 0: where the multifunction bit lives.
    pub fn function0(self) -> Self {
        PciAddress {
            function: 0,
            ..self
        }
    }

    /// Whether two addresses name functions of the same slot.
    pub fn same_slot(self, other: PciAddress) -> bool {
        self.domain == other.domain && self.bus == other.bus && self.slot == other.slot
    }

    /// `SS.F` — the form QEMU's `addr=` property takes on a root bus.
    pub fn qemu_addr(self) -> String {
        format!("{:02x}.{:x}", self.slot, self.function)
    }
}

impl fmt::Display for PciAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04x}:{:02x}:{:02x}.{:x}",
            self.domain, self.bus, self.slot, self.function
        )
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("'{0}' is not a PCI address; write it as DDDD:BB:SS.F, e.g. 0000:00:06.1")]
pub struct BadPciAddress(pub String);

impl FromStr for PciAddress {
    type Err = BadPciAddress;

    /// Accepts `DDDD:BB:SS.F` and the short `BB:SS.F` (domain 0), all hex.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || BadPciAddress(text.to_string());
        let (front, function) = text.rsplit_once('.').ok_or_else(bad)?;
        let parts: Vec<&str> = front.split(':').collect();
        let (domain, bus, slot) = match parts.as_slice() {
            [d, b, s] => (*d, *b, *s),
            [b, s] => ("0", *b, *s),
            _ => return Err(bad()),
        };
        let hex = |s: &str, max: u32| -> Result<u32, BadPciAddress> {
            if s.is_empty() || s.len() > 4 {
                return Err(bad());
            }
            let v = u32::from_str_radix(s, 16).map_err(|_| bad())?;
            if v > max {
                return Err(bad());
            }
            Ok(v)
        };
        Ok(PciAddress {
            domain: hex(domain, MAX_DOMAIN)? as u16,
            bus: hex(bus, MAX_BUS)? as u8,
            slot: hex(slot, MAX_SLOT)? as u8,
            function: hex(function, MAX_FUNCTION)? as u8,
        })
    }
}

impl Serialize for PciAddress {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for PciAddress {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Parses a number the way libvirt reads address attributes: C's
/// `strtoul` with base 0, so `0x1f` is hex, `017` is octal, `31` decimal.
pub fn parse_c_number(text: &str) -> Option<u32> {
    let t = text.trim();
    let (digits, radix) = if let Some(hex) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        (hex, 16)
    } else if t.len() > 1 && t.starts_with('0') {
        (&t[1..], 8)
    } else {
        (t, 10)
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    u32::from_str_radix(digits, radix).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_text() {
        let a: PciAddress = "0000:00:06.1".parse().unwrap();
        assert_eq!(a, PciAddress::new(0, 0, 6, 1));
        assert_eq!(a.to_string(), "0000:00:06.1");
        assert_eq!(
            "06:1f.7".parse::<PciAddress>().unwrap(),
            PciAddress::new(0, 6, 0x1f, 7)
        );
    }

    #[test]
    fn rejects_out_of_range_parts() {
        assert!("0000:00:20.0".parse::<PciAddress>().is_err());
        assert!("0000:00:06.8".parse::<PciAddress>().is_err());
        assert!("0000:00:06".parse::<PciAddress>().is_err());
        assert!("zz:00:06.0".parse::<PciAddress>().is_err());
    }

    #[test]
    fn numbers_follow_strtoul_base_0() {
        assert_eq!(parse_c_number("0x1f"), Some(31));
        assert_eq!(parse_c_number("31"), Some(31));
        assert_eq!(parse_c_number("017"), Some(15));
        assert_eq!(parse_c_number("0"), Some(0));
        assert_eq!(parse_c_number("0x2g"), None);
        assert_eq!(parse_c_number("08"), None);
        assert_eq!(parse_c_number(""), None);
        assert_eq!(parse_c_number("0x"), None);
    }

    #[test]
    fn sorts_like_lspci() {
        let mut v = [
            PciAddress::new(0, 1, 0, 0),
            PciAddress::new(0, 0, 6, 1),
            PciAddress::new(0, 0, 6, 0),
        ];
        v.sort();
        assert_eq!(v[0], PciAddress::new(0, 0, 6, 0));
        assert_eq!(v[2], PciAddress::new(0, 1, 0, 0));
    }
}
