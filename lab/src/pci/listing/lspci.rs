//! The line formats: plain `lspci -nn`, and `lspci -nns` lines under
//! `IOMMU Group N` headings.
//!
//! A device line is one whose first word (after indentation, or after a
//! group heading on the same line) has the shape of a PCI address,
//! `[DDDD:]BB:SS.F`; every other line is text around the listing and is
//! read past, except that an indented `Bus: primary=..., secondary=BB`
//! under a bridge (`lspci -nnv`) says which bus is behind it.

use super::{Collector, ListingError, ReportedFunction};
use crate::pci::address::{PciAddress, MAX_DOMAIN, MAX_FUNCTION, MAX_SLOT};

/// Reads every line; `grouped` when the listing has group headings, so
/// that every device line must come under one.
pub(super) fn read(host: &mut Collector, grouped: bool) -> Result<(), ListingError> {
    let text = host.text();
    let mut group: Option<u32> = None;
    // The function whose `lspci -v` detail lines follow, if any.
    let mut last: Option<usize> = None;
    // (bridge, its secondary bus) from `Bus:` detail lines.
    let mut bridges: Vec<(PciAddress, u8)> = Vec::new();
    let mut start = 0;
    for raw in text.split_inclusive('\n') {
        let line_start = start;
        start += raw.len();
        let line = raw.trim_end_matches(['\n', '\r']);
        let body = line.trim_start();
        let mut at = line_start + (line.len() - body.len());
        let mut rest = body;
        if let Some((number, after)) = group_heading(body) {
            group = Some(number);
            last = None;
            at += after;
            rest = &body[after..];
        } else if body.is_empty() {
            last = None;
            continue;
        }
        if rest.is_empty() {
            continue;
        }
        if bdf_len(rest).is_none() {
            let indented = body.len() != line.len();
            match last {
                Some(i) if indented => {
                    if let Some(bus) = secondary_bus(rest) {
                        bridges.push((host.functions[i].address, bus));
                    }
                    if let Some(driver) = driver_in_use(rest) {
                        host.functions[i].driver = Some(driver.to_string());
                    }
                }
                _ => last = None,
            }
            continue;
        }
        let mut function = device_line(host, rest, at)?;
        if grouped && group.is_none() {
            return Err(ListingError::NoGroup {
                at: host.place(at),
                address: function.address,
            });
        }
        function.iommu_group = if grouped { group } else { None };
        last = Some(host.functions.len());
        host.function(function, at)?;
    }
    for function in &mut host.functions {
        function.parent = bridges
            .iter()
            .find(|(bridge, bus)| {
                bridge.domain == function.address.domain && *bus == function.address.bus
            })
            .map(|(bridge, _)| *bridge);
    }
    Ok(())
}

/// `IOMMU Group 1`, `IOMMU group 1:` (any case, spaces or tabs), alone on
/// its line or in front of a device line: the group number and the byte
/// offset in `line` of what follows the heading (after its blanks).
///
/// A line that starts so but goes on with something else than a device
/// line (`IOMMU group 1 is the one with my GPU`) is text, not a heading.
pub(crate) fn group_heading(line: &str) -> Option<(u32, usize)> {
    let body = line.trim_start();
    let mut words = body.splitn(2, char::is_whitespace);
    if !words.next()?.eq_ignore_ascii_case("iommu") {
        return None;
    }
    let after_iommu = words.next()?.trim_start();
    let mut words = after_iommu.splitn(2, char::is_whitespace);
    if !words.next()?.eq_ignore_ascii_case("group") {
        return None;
    }
    let after_group = words.next()?.trim_start();
    let digits = after_group.len()
        - after_group
            .trim_start_matches(|c: char| c.is_ascii_digit())
            .len();
    let number: u32 = after_group[..digits].parse().ok()?;
    let tail = &after_group[digits..];
    let tail = tail.strip_prefix(':').unwrap_or(tail);
    let rest = tail.trim_start();
    if !rest.is_empty() && (tail.len() == rest.len() || bdf_len(rest).is_none()) {
        return None;
    }
    Some((number, line.len() - rest.len()))
}

/// The length of the PCI address that starts `text`, when it has the shape
/// lspci prints (`BB:SS.F` or `DDDD:BB:SS.F`, hex) and a blank or the end
/// of the line follows. The values are checked later, with their columns.
pub(crate) fn bdf_len(text: &str) -> Option<usize> {
    let b = text.as_bytes();
    let hex_run = |from: usize| {
        b.get(from..).map_or(0, |tail| {
            tail.iter().take_while(|c| c.is_ascii_hexdigit()).count()
        })
    };
    let mut i = 0;
    let first = hex_run(0);
    if (4..=8).contains(&first) && b.get(first) == Some(&b':') {
        i = first + 1;
    }
    if hex_run(i) != 2
        || b.get(i + 2) != Some(&b':')
        || hex_run(i + 3) != 2
        || b.get(i + 5) != Some(&b'.')
    {
        return None;
    }
    if hex_run(i + 6) != 1 {
        return None;
    }
    let end = i + 7;
    match b.get(end) {
        None => Some(end),
        Some(c) if c.is_ascii_whitespace() => Some(end),
        _ => None,
    }
}

/// The address at the start of a device line, with its values checked;
/// `at` is the line's byte offset in the input, for errors.
fn address(host: &Collector, token: &str, at: usize) -> Result<PciAddress, ListingError> {
    let parts: Vec<&str> = token.split([':', '.']).collect();
    let (domain, rest) = match parts.as_slice() {
        [d, rest @ ..] if rest.len() == 3 => (*d, rest),
        rest => ("0", rest),
    };
    let values: Vec<u32> = [domain, rest[0], rest[1], rest[2]]
        .iter()
        .map(|p| u32::from_str_radix(p, 16).unwrap_or(u32::MAX))
        .collect();
    let domain_len = if rest.len() == parts.len() {
        0
    } else {
        domain.len() + 1
    };
    let checks = [
        (values[0], MAX_DOMAIN, 0, "a domain of at most ffff"),
        (values[2], MAX_SLOT, domain_len + 3, "a slot of at most 1f"),
        (
            values[3],
            MAX_FUNCTION,
            domain_len + 6,
            "a function of at most 7",
        ),
    ];
    for (value, max, offset, expected) in checks {
        if value > max {
            return Err(ListingError::Unreadable {
                at: host.place(at + offset),
                found: format!("'{token}'"),
                expected: format!("a PCI address with {expected}"),
            });
        }
    }
    Ok(PciAddress::new(
        values[0] as u16,
        values[1] as u8,
        values[2] as u8,
        values[3] as u8,
    ))
}

/// Reads `BB:SS.F Class name [cccc]: Vendor Device [vvvv:dddd] (rev xx)
/// (prog-if pp [name])`, starting at byte `at` of the input.
fn device_line(host: &Collector, line: &str, at: usize) -> Result<ReportedFunction, ListingError> {
    let bdf = bdf_len(line).expect("a device line starts with an address");
    let address = address(host, &line[..bdf], at)?;
    let after = &line[bdf..];
    let Some((ids_at, vendor, device)) = last_ids(after) else {
        let named = after
            .find(" (rev ")
            .or_else(|| after.find(" (prog-if "))
            .map_or(after, |cut| &after[..cut])
            .trim_end();
        return Err(ListingError::NoIds {
            at: host.place(at + bdf + named.len()),
            address,
        });
    };
    let colon = after[..ids_at].find(':');
    let class = colon.and_then(|c| class_code(&after[..c]));
    let (Some(colon), Some((class_at, class))) = (colon, class) else {
        let offset = colon.unwrap_or(after.len() - after.trim_start().len());
        return Err(ListingError::NoClass {
            at: host.place(at + bdf + offset),
            address,
        });
    };
    let class_name = after[..class_at].trim();
    let names = after[colon + 1..ids_at].trim();
    let description = match (class_name.is_empty(), names.is_empty()) {
        (false, false) => format!("{class_name}: {names}"),
        (true, _) => names.to_string(),
        (false, true) => class_name.to_string(),
    };
    let prog_if = prog_if(&after[ids_at..]).unwrap_or(0);
    Ok(ReportedFunction {
        address,
        class: (u32::from(class) << 8) | u32::from(prog_if),
        vendor,
        device,
        description,
        iommu_group: None,
        parent: None,
        driver: None,
        line: host.line_of(at),
    })
}

/// The last `[vvvv:dddd]` of `text`: its offset, vendor and device.
/// Names may hold brackets (`[AMD/ATI]`, `[GeForce GTX 760]`, even
/// `[Radeon RX 6800/6800 XT / 6900 XT]`); only the ids have this shape
/// and lspci prints them last, before `(rev xx)` and `(prog-if ...)`.
pub(crate) fn last_ids(text: &str) -> Option<(usize, u16, u16)> {
    text.match_indices('[').rev().find_map(|(i, _)| {
        let inside = text.get(i + 1..i + 11)?;
        let (vendor, device) = inside.strip_suffix(']')?.split_once(':')?;
        Some((i, hex4(vendor)?, hex4(device)?))
    })
}

/// The `[cccc]` that ends the class part (`VGA compatible controller [0300]`):
/// its offset and value.
pub(crate) fn class_code(text: &str) -> Option<(usize, u16)> {
    let trimmed = text.trim_end();
    let open = trimmed.strip_suffix(']')?.rfind('[')?;
    Some((open, hex4(&trimmed[open + 1..trimmed.len() - 1])?))
}

/// The prog-if byte of `(prog-if 00 [VGA controller])`, when present.
pub(crate) fn prog_if(text: &str) -> Option<u8> {
    let (_, after) = text.split_once("(prog-if ")?;
    u8::from_str_radix(after.get(..2)?, 16).ok()
}

/// The secondary bus of an `lspci -v` bridge detail line,
/// `Bus: primary=00, secondary=01, subordinate=01, sec-latency=0`.
fn secondary_bus(detail: &str) -> Option<u8> {
    let fields = detail.trim_start().strip_prefix("Bus:")?;
    let (_, after) = fields.split_once("secondary=")?;
    u8::from_str_radix(after.get(..2)?, 16).ok()
}

/// The driver of an `lspci -k` detail line, `Kernel driver in use: igb`.
pub(crate) fn driver_in_use(detail: &str) -> Option<&str> {
    let driver = detail.trim().strip_prefix("Kernel driver in use:")?.trim();
    (!driver.is_empty() && !driver.contains(char::is_whitespace)).then_some(driver)
}

pub(crate) fn hex4(text: &str) -> Option<u16> {
    if text.len() != 4 || !text.bytes().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    u16::from_str_radix(text, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headings_in_their_spellings() {
        assert_eq!(group_heading("IOMMU Group 1:"), Some((1, 14)));
        assert_eq!(group_heading("IOMMU group 12"), Some((12, 14)));
        assert_eq!(group_heading("\tIOMMU  Group\t3:"), Some((3, 16)));
        assert_eq!(group_heading("IOMMU Group 3 01:00.0 VGA"), Some((3, 14)));
        assert_eq!(
            group_heading("IOMMU Group 3: 0000:01:00.0 VGA"),
            Some((3, 15))
        );
        assert_eq!(group_heading("  iommu GROUP 7"), Some((7, 15)));
    }

    #[test]
    fn prose_about_groups_is_not_a_heading() {
        assert_eq!(group_heading("IOMMU group 1 is the one with my GPU"), None);
        assert_eq!(group_heading("IOMMU groups:"), None);
        assert_eq!(group_heading("IOMMU Group x"), None);
        assert_eq!(group_heading("IOMMU Group 101:00.0"), None);
    }

    #[test]
    fn addresses_have_lspci_shapes() {
        assert_eq!(bdf_len("01:00.0 VGA"), Some(7));
        assert_eq!(bdf_len("0000:01:00.0\tVGA"), Some(12));
        assert_eq!(bdf_len("c6:00.1"), Some(7));
        assert_eq!(bdf_len("10000:e0:17.0 SATA"), Some(13));
        assert_eq!(bdf_len("12:34:56.7 pm"), None);
        assert_eq!(bdf_len("01:00.0: oops"), None);
        assert_eq!(bdf_len("1:00.0 VGA"), None);
        assert_eq!(bdf_len("$ lspci -nn"), None);
    }

    #[test]
    fn ids_are_the_last_bracket_of_their_shape() {
        let text = " VGA compatible controller [0300]: Advanced Micro Devices, Inc. [AMD/ATI] \
                    Navi 21 [Radeon RX 6800/6800 XT / 6900 XT] [1002:73bf] (rev c1)";
        let (at, vendor, device) = last_ids(text).unwrap();
        assert_eq!((vendor, device), (0x1002, 0x73bf));
        assert!(text[at..].starts_with("[1002:73bf]"));
        assert_eq!(
            last_ids(" Ethernet controller: Intel Corporation I210 (rev 03)"),
            None
        );
        assert_eq!(last_ids(" x [10de:11 87]"), None);
    }

    #[test]
    fn class_code_ends_the_class_name() {
        assert_eq!(
            class_code(" VGA compatible controller [0300]"),
            Some((27, 0x0300))
        );
        assert_eq!(class_code(" Class [ff00] "), Some((7, 0xff00)));
        assert_eq!(class_code(" VGA compatible controller"), None);
        assert_eq!(class_code(" USB controller [0c3]"), None);
    }

    #[test]
    fn prog_if_and_secondary_bus_from_lspci_v() {
        assert_eq!(prog_if(" (rev a1) (prog-if 30 [XHCI])"), Some(0x30));
        assert_eq!(prog_if(" (rev a1)"), None);
        assert_eq!(
            secondary_bus("Bus: primary=00, secondary=0a, subordinate=0b, sec-latency=0"),
            Some(0x0a)
        );
        assert_eq!(
            secondary_bus("Flags: bus master, fast devsel, latency 0"),
            None
        );
    }
}
