//! The minimal fix: the reporter's XML with each blocking function added
//! as an unassigned `<hostdev>` after the last one, in the reporter's own
//! indentation and quotes; nothing else changes.

use super::paste::{XmlKind, XmlPart};
use crate::pci::address::PciAddress;

/// The libvirt release that reads `<address type='unassigned'/>`.
pub const UNASSIGNED_SINCE: (u32, u32, u32) = (6, 0, 0);

/// The reporter's XML with `add` declared unassigned.
pub fn with_unassigned(xml: &XmlPart, add: &[PciAddress]) -> String {
    let mut fixed = xml.posted();
    if add.is_empty() {
        return fixed;
    }
    let (at, indent, unit) = insertion_point(&fixed, xml.kind);
    fixed.insert_str(at, &block(xml.quote, &indent, &unit, add));
    fixed
}

/// Only the added `<hostdev>`s, as they appear in the fixed XML.
pub fn added_hostdevs(xml: &XmlPart, add: &[PciAddress]) -> String {
    let (_, indent, unit) = insertion_point(&xml.posted(), xml.kind);
    block(xml.quote, &indent, &unit, add)
        .trim_start_matches('\n')
        .to_string()
}

fn block(q: char, indent: &str, unit: &str, add: &[PciAddress]) -> String {
    let mut block = String::new();
    let (i1, i2) = (format!("{indent}{unit}"), format!("{indent}{unit}{unit}"));
    for a in add {
        block.push_str(&format!(
            "\n{indent}<hostdev mode={q}subsystem{q} type={q}pci{q} managed={q}yes{q}>\n\
             {i1}<source>\n\
             {i2}<address domain={q}{:#06x}{q} bus={q}{:#04x}{q} slot={q}{:#04x}{q} function={q}{:#x}{q}/>\n\
             {i1}</source>\n\
             {i1}<address type={q}unassigned{q}/>\n\
             {indent}</hostdev>",
            a.domain, a.bus, a.slot, a.function
        ));
    }
    block
}

/// The line of the paste the added hostdevs follow: the last
/// `</hostdev>`'s (else the line before `</devices>`, else the XML's last).
pub fn after_line(xml: &XmlPart) -> usize {
    let text = &xml.text;
    let line_of = |offset: usize| text[..offset].matches('\n').count() + 1;
    if let Some(at) = text.rfind("</hostdev>") {
        return line_of(at);
    }
    match text.rfind("</devices>") {
        Some(at) if xml.kind != XmlKind::Hostdevs => line_of(at) - 1,
        _ => xml.last_line,
    }
}

/// Where to insert (just after the last `</hostdev>`, else before
/// `</devices>`, else at the end), the indentation of the element there,
/// and one indentation step of the reporter's XML.
fn insertion_point(posted: &str, kind: XmlKind) -> (usize, String, String) {
    let line_indent = |offset: usize| {
        let start = posted[..offset].rfind('\n').map_or(0, |i| i + 1);
        let line = &posted[start..];
        line[..line.len() - line.trim_start().len()].to_string()
    };
    let unit = indent_unit(posted);
    if let Some(last) = posted.rfind("</hostdev>") {
        let open = posted[..last].rfind("<hostdev").unwrap_or(last);
        return (last + "</hostdev>".len(), line_indent(open), unit);
    }
    if kind != XmlKind::Hostdevs {
        if let Some(close) = posted.rfind("</devices>") {
            let indent = format!("{}{unit}", line_indent(close));
            let line_start = posted[..close].rfind('\n').unwrap_or(close);
            return (line_start, indent, unit);
        }
    }
    (posted.len(), String::new(), unit)
}

/// The smallest indentation step between consecutive lines, two spaces
/// when the XML is on one line.
fn indent_unit(text: &str) -> String {
    let widths: Vec<&str> = text
        .lines()
        .map(|l| &l[..l.len() - l.trim_start().len()])
        .collect();
    widths
        .windows(2)
        .filter_map(|w| w[1].strip_prefix(w[0]).filter(|d| !d.is_empty()))
        .min_by_key(|d| d.len())
        .map_or_else(|| "  ".to_string(), str::to_string)
}

/// `8.0.0` as numbers, for comparing with [`UNASSIGNED_SINCE`].
pub fn version_triple(v: &str) -> Option<(u32, u32, u32)> {
    let mut parts = v.split(['.', '-', '+', '~']).map(|p| p.parse::<u32>().ok());
    Some((
        parts.next()??,
        parts.next().flatten().unwrap_or(0),
        parts.next().flatten().unwrap_or(0),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indentation_steps() {
        assert_eq!(indent_unit("<a>\n    <b>\n      <c/>\n"), "  ");
        assert_eq!(indent_unit("<a>\n\t<b/>\n"), "\t");
        assert_eq!(indent_unit("<a/>"), "  ");
    }

    #[test]
    fn versions() {
        assert_eq!(version_triple("8.0.0"), Some((8, 0, 0)));
        assert_eq!(version_triple("5.6"), Some((5, 6, 0)));
        assert_eq!(version_triple("x"), None);
    }
}
