//! The reporter's XML pointed at the lab: only the `<source>` addresses
//! of functions that could not sit at their reported address change, and
//! every other byte stays as the reporter wrote it.

use lab::PciAddress;

use super::LabHost;

/// `text` with each `<source><address …/></source>` that names a moved
/// function rewritten to its lab address, and what was rewritten.
pub fn rewrite_sources(text: &str, host: &LabHost) -> (String, Vec<(PciAddress, PciAddress)>) {
    let mut out = String::with_capacity(text.len());
    let mut done = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("<source") {
        let Some(end) = rest[start..].find("</source>").map(|e| start + e) else {
            break;
        };
        out.push_str(&rest[..start]);
        let source = &rest[start..end];
        out.push_str(&rewrite_addresses(source, host, &mut done));
        rest = &rest[end..];
    }
    out.push_str(rest);
    (out, done)
}

fn rewrite_addresses(
    source: &str,
    host: &LabHost,
    done: &mut Vec<(PciAddress, PciAddress)>,
) -> String {
    let mut out = String::new();
    let mut rest = source;
    while let Some(start) = rest.find("<address") {
        let Some(end) = rest[start..].find('>').map(|e| start + e + 1) else {
            break;
        };
        out.push_str(&rest[..start]);
        let tag = &rest[start..end];
        match address_of(tag).and_then(|a| Some((a, host.lab_address(a)?))) {
            Some((reported, lab)) if lab != reported => {
                out.push_str(&format!(
                    "<address domain='{:#06x}' bus='{:#04x}' slot='{:#04x}' function='{:#x}'/>",
                    lab.domain, lab.bus, lab.slot, lab.function
                ));
                done.push((reported, lab));
            }
            _ => out.push_str(tag),
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// The PCI address an `<address domain= bus= slot= function=/>` tag names
/// (numbers as libvirt reads them: hex with 0x, octal with 0, decimal).
fn address_of(tag: &str) -> Option<PciAddress> {
    let attr = |name: &str| -> Option<u32> {
        let at = tag.find(&format!(" {name}="))? + name.len() + 2;
        let quote = tag[at..].chars().next()?;
        let value = &tag[at + 1..];
        let value = &value[..value.find(quote)?];
        let v = value.trim();
        if let Some(hex) = v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
            u32::from_str_radix(hex, 16).ok()
        } else if v.len() > 1 && v.starts_with('0') {
            u32::from_str_radix(&v[1..], 8).ok()
        } else {
            v.parse().ok()
        }
    };
    Some(PciAddress::new(
        attr("domain").unwrap_or(0) as u16,
        attr("bus").unwrap_or(0) as u8,
        attr("slot")? as u8,
        attr("function").unwrap_or(0) as u8,
    ))
}
