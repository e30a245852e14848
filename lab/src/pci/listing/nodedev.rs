//! `virsh nodedev-dumpxml` output: one or more `<device>` documents, with
//! whatever was pasted between them (prompts, the commands, prose).
//!
//! Each `<device>` is read with quick-xml into a small tree that keeps
//! element text (the fields are `<bus>1</bus>`, not attributes) and byte
//! offsets. A device without `<capability type='pci'>` (a `net_` or
//! `usb_` node device) is read past.

use quick_xml::events::attributes::AttrError;
use quick_xml::events::{BytesStart, Event};
use quick_xml::{Reader, XmlVersion};

use super::{Collector, ListingError, ReportedFunction};
use crate::pci::address::{
    parse_c_number, PciAddress, MAX_BUS, MAX_DOMAIN, MAX_FUNCTION, MAX_SLOT,
};

/// The class of a function whose `<device>` has no `<class>`, when the
/// reader is told to take one ([`super::parse_listing_without_classes`]).
pub const UNKNOWN_CLASS: u32 = 0xff_0000;

/// The byte offset of the next `<device` start tag at or after `from`
/// (`<device>`, `<device/>`, not `<devices>`).
pub(super) fn next_document(text: &str, from: usize) -> Option<usize> {
    let mut i = from;
    while let Some(found) = text.get(i..)?.find("<device") {
        let at = i + found;
        match text.as_bytes().get(at + 7) {
            Some(b'>' | b'/') => return Some(at),
            Some(c) if c.is_ascii_whitespace() => return Some(at),
            _ => i = at + 7,
        }
    }
    None
}

/// Reads every `<device>` document of the input.
pub(super) fn read(host: &mut Collector) -> Result<(), ListingError> {
    let mut from = 0;
    while let Some(start) = next_document(host.text(), from) {
        let (device, end) = read_document(host, start)?;
        from = end;
        pci_device(host, &device)?;
    }
    Ok(())
}

/// An element with its text; offsets are bytes of the whole input.
#[derive(Debug)]
struct Node {
    name: String,
    at: usize,
    attrs: Vec<(String, String)>,
    text: String,
    /// Where the first non-blank character of the text is.
    text_at: Option<usize>,
    children: Vec<Node>,
}

impl Node {
    fn attr(&self, key: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn child(&self, name: &str) -> Option<&Node> {
        self.children.iter().find(|c| c.name == name)
    }
}

/// Reads the element that starts at byte `start`; returns it and the byte
/// offset just after it.
fn read_document(host: &Collector, start: usize) -> Result<(Node, usize), ListingError> {
    let mut reader = Reader::from_str(&host.text()[start..]);
    reader.config_mut().check_end_names = true;
    let mut stack: Vec<Node> = Vec::new();
    loop {
        let at = start + reader.buffer_position() as usize;
        let event = reader.read_event().map_err(|e| ListingError::Xml {
            at: host.place(start + reader.error_position() as usize),
            message: e.to_string(),
        })?;
        let done = match event {
            Event::Start(tag) => {
                stack.push(node(host, &tag, at)?);
                None
            }
            Event::Empty(tag) => Some(node(host, &tag, at)?),
            // check_end_names has made sure the names match.
            Event::End(_) => stack.pop(),
            Event::Text(text) => {
                push_text(&mut stack, &text.xml_content(XmlVersion::Implicit1_0), at);
                None
            }
            Event::CData(text) => {
                push_text(&mut stack, &text.xml_content(XmlVersion::Implicit1_0), at);
                None
            }
            Event::GeneralRef(reference) => {
                let resolved = match reference.resolve_char_ref() {
                    Ok(Some(c)) => Some(c.to_string()),
                    Ok(None) => {
                        quick_xml::escape::resolve_predefined_entity(&reference).map(str::to_string)
                    }
                    Err(_) => None,
                };
                let Some(resolved) = resolved else {
                    return Err(ListingError::Xml {
                        at: host.place(at),
                        message: format!("unknown entity '&{};'", &*reference),
                    });
                };
                push_text(&mut stack, &resolved, at);
                None
            }
            Event::Eof => {
                let open = stack.first().map_or(start, |n| n.at);
                let opened = host.place(open);
                return Err(ListingError::Xml {
                    at: host.place(host.text().len()),
                    message: format!(
                        "<device> opened at line {} column {} is never closed",
                        opened.line, opened.column
                    ),
                });
            }
            _ => None,
        };
        if let Some(done) = done {
            match stack.last_mut() {
                Some(parent) => parent.children.push(done),
                None => return Ok((done, start + reader.buffer_position() as usize)),
            }
        }
    }
}

fn push_text(stack: &mut [Node], text: &str, at: usize) {
    let Some(node) = stack.last_mut() else {
        return;
    };
    let blank = text.len() - text.trim_start().len();
    if node.text_at.is_none() && blank < text.len() {
        node.text_at = Some(at + blank);
    }
    node.text.push_str(text);
}

fn node(host: &Collector, tag: &BytesStart, at: usize) -> Result<Node, ListingError> {
    let name = tag.name().as_ref().to_string();
    let mut attrs = Vec::new();
    for attr in tag.attributes() {
        let attr = attr.map_err(|e| ListingError::Xml {
            at: host.place(at + 1 + attribute_error_offset(&e)),
            message: format!("bad attribute in <{name}>: {e}"),
        })?;
        let key = attr.key.as_ref().to_string();
        let value = attr
            .normalized_value(XmlVersion::Implicit1_0)
            .map_err(|e| ListingError::Xml {
                at: host.place(at),
                message: format!("attribute '{key}' of <{name}>: {e}"),
            })?
            .into_owned();
        attrs.push((key, value));
    }
    Ok(Node {
        name,
        at,
        attrs,
        text: String::new(),
        text_at: None,
        children: Vec::new(),
    })
}

/// quick-xml counts attribute errors from just after the tag's `<`.
fn attribute_error_offset(e: &AttrError) -> usize {
    match e {
        AttrError::ExpectedEq(p)
        | AttrError::ExpectedValue(p)
        | AttrError::UnquotedValue(p)
        | AttrError::ExpectedQuote(p, _)
        | AttrError::Duplicated(p, _) => *p,
    }
}

/// Adds the function a `<device>` describes, and the members of its group.
fn pci_device(host: &mut Collector, device: &Node) -> Result<(), ListingError> {
    let Some(pci) = device
        .children
        .iter()
        .find(|c| c.name == "capability" && c.attr("type") == Some("pci"))
    else {
        return Ok(());
    };
    let address = PciAddress::new(
        number_child(host, pci, "domain", MAX_DOMAIN)? as u16,
        number_child(host, pci, "bus", MAX_BUS)? as u8,
        number_child(host, pci, "slot", MAX_SLOT)? as u8,
        number_child(host, pci, "function", MAX_FUNCTION)? as u8,
    );
    // An older libvirt prints no <class> (the 5.6 of a CentOS 8 report):
    // `mflab host` cannot choose a stand-in without it and says so, while
    // `diagnose`, which has lspci beside it, reads it as UNKNOWN_CLASS.
    let class = match pci.child("class") {
        None if host.class_optional => UNKNOWN_CLASS,
        _ => number_child(host, pci, "class", 0xff_ffff)?,
    };
    let (vendor, vendor_name) = id_child(host, pci, "vendor")?;
    let (device_id, product_name) = id_child(host, pci, "product")?;
    let parent = match device.child("parent") {
        Some(parent) => parent_address(host, parent)?,
        None => None,
    };
    let group = pci.child("iommuGroup");
    let iommu_group = match group {
        Some(group) => {
            let number = number_attr(host, group, "number", u32::MAX)?;
            host.member(address, number, group.at)?;
            Some(number)
        }
        None => None,
    };
    let description = [vendor_name, product_name]
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    let function = ReportedFunction {
        address,
        class,
        vendor: vendor as u16,
        device: device_id as u16,
        description,
        iommu_group,
        parent,
        driver: device
            .child("driver")
            .and_then(|d| d.child("name"))
            .map(|n| n.text.trim().to_string())
            .filter(|n| !n.is_empty()),
        line: host.line_of(device.at),
    };
    host.function(function, device.at)?;
    if let (Some(group), Some(number)) = (group, iommu_group) {
        for member in group.children.iter().filter(|c| c.name == "address") {
            let member_address = PciAddress::new(
                number_attr(host, member, "domain", MAX_DOMAIN)? as u16,
                number_attr(host, member, "bus", MAX_BUS)? as u8,
                number_attr(host, member, "slot", MAX_SLOT)? as u8,
                number_attr(host, member, "function", MAX_FUNCTION)? as u8,
            );
            host.member(member_address, number, member.at)?;
        }
    }
    Ok(())
}

/// The number in `<name>N</name>` under `parent`, at most `max`.
fn number_child(
    host: &Collector,
    parent: &Node,
    name: &str,
    max: u32,
) -> Result<u32, ListingError> {
    let Some(child) = parent.child(name) else {
        return Err(ListingError::Unreadable {
            at: host.place(parent.at),
            found: format!("<capability type='pci'> without <{name}>"),
            expected: format!("<{name}> in it, as virsh nodedev-dumpxml prints it"),
        });
    };
    parse_c_number(&child.text)
        .filter(|&v| v <= max)
        .ok_or_else(|| ListingError::Unreadable {
            at: host.place(child.text_at.unwrap_or(child.at)),
            found: format!("'{}' in <{name}>", child.text.trim()),
            expected: format!("a number of at most {max:#x}"),
        })
}

/// The number in attribute `key` of `node`, at most `max`.
fn number_attr(host: &Collector, node: &Node, key: &str, max: u32) -> Result<u32, ListingError> {
    let value = node.attr(key);
    value
        .and_then(parse_c_number)
        .filter(|&v| v <= max)
        .ok_or_else(|| ListingError::Unreadable {
            at: host.place(attr_offset(host, node, key)),
            found: match value {
                Some(v) => format!("{key}='{v}' in <{}>", node.name),
                None => format!("<{}> without {key}", node.name),
            },
            expected: format!("{key}= a number of at most {max:#x}"),
        })
}

/// `<vendor id='0x10de'>NVIDIA Corporation</vendor>`: the id and the name.
fn id_child<'n>(
    host: &Collector,
    pci: &'n Node,
    name: &str,
) -> Result<(u32, &'n str), ListingError> {
    let Some(child) = pci.child(name) else {
        return Err(ListingError::Unreadable {
            at: host.place(pci.at),
            found: format!("<capability type='pci'> without <{name}>"),
            expected: format!("<{name} id='0x....'> in it, as virsh nodedev-dumpxml prints it"),
        });
    };
    Ok((number_attr(host, child, "id", 0xffff)?, child.text.trim()))
}

/// `<parent>pci_0000_00_01_0</parent>`: the bridge, or `None` for `computer`.
fn parent_address(host: &Collector, parent: &Node) -> Result<Option<PciAddress>, ListingError> {
    let name = parent.text.trim();
    let Some(parts) = name.strip_prefix("pci_") else {
        return Ok(None);
    };
    let address = match parts.split('_').collect::<Vec<_>>().as_slice() {
        [d, b, s, f] => format!("{d}:{b}:{s}.{f}").parse::<PciAddress>().ok(),
        _ => None,
    };
    match address {
        Some(address) => Ok(Some(address)),
        None => Err(ListingError::Unreadable {
            at: host.place(parent.text_at.unwrap_or(parent.at)),
            found: format!("'{name}' in <parent>"),
            expected: "a node device name such as pci_0000_00_01_0, or computer".into(),
        }),
    }
}

/// Where attribute `key` is written in `node`'s start tag (the tag itself
/// when it has none).
fn attr_offset(host: &Collector, node: &Node, key: &str) -> usize {
    let tag = &host.text()[node.at..];
    let tag = &tag[..tag.find('>').unwrap_or(tag.len())];
    let found = tag
        .match_indices(key)
        .find(|(i, _)| {
            tag[..*i].ends_with(char::is_whitespace)
                && tag[i + key.len()..].trim_start().starts_with('=')
        })
        .map(|(i, _)| i);
    node.at + found.unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::SourceText;

    #[test]
    fn documents_start_at_device_tags_only() {
        let text = "$ virsh nodedev-dumpxml x\n<devices>\n<device>\n<device/>";
        let first = next_document(text, 0).unwrap();
        assert_eq!(&text[first..first + 8], "<device>");
        let second = next_document(text, first + 1).unwrap();
        assert_eq!(&text[second..], "<device/>");
        assert_eq!(next_document(text, second + 1), None);
        assert_eq!(next_document("<devices><deviceX>", 0), None);
    }

    #[test]
    fn a_document_ends_where_its_element_ends() {
        let text = "before <device><name>a &amp; b</name></device> after <b";
        let src = SourceText::new(text);
        let host = Collector::new("t", &src);
        let (device, end) = read_document(&host, 7).unwrap();
        assert_eq!(&text[end..], " after <b");
        assert_eq!(device.child("name").unwrap().text, "a & b");
        assert_eq!(device.child("name").unwrap().text_at, Some(21));
    }

    #[test]
    fn attribute_offsets_point_at_the_attribute() {
        let text = "<address domain='0x0000' bus='0x01'/>";
        let src = SourceText::new(text);
        let host = Collector::new("t", &src);
        let (node, _) = read_document(&host, 0).unwrap();
        assert_eq!(attr_offset(&host, &node, "bus"), 25);
        assert_eq!(attr_offset(&host, &node, "slot"), 0);
    }
}
