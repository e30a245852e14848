//! The domain XML in a paste: a whole `<domain>`, a `<devices>`, or bare
//! `<hostdev>` elements, found by their tags and read by the schema's own
//! reader with the rest of the paste blanked.

use super::{Lines, Unread};
use crate::schema::check::{check_text, Checked};

/// What the XML of a paste was.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum XmlKind {
    Domain,
    Devices,
    Hostdevs,
}

/// The XML found, as the schema read it.
#[derive(Clone, Debug)]
pub struct XmlPart {
    pub kind: XmlKind,
    /// The paste with everything but the XML blanked: offsets and
    /// line:column are the paste's.
    pub text: String,
    /// Byte ranges of the XML regions in `text`.
    pub regions: Vec<(usize, usize)>,
    /// The quote the reporter wrote attributes with.
    pub quote: char,
    /// 1-based lines of the first and last region line.
    pub first_line: usize,
    pub last_line: usize,
}

impl XmlPart {
    /// The reporter's XML, as posted: the regions joined, leading
    /// indentation of the first line kept.
    pub fn posted(&self) -> String {
        self.regions
            .iter()
            .map(|&(s, e)| dedent_start(&self.text, s, e))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Reads it with the schema's reader (R1–R8 included).
    pub fn check(&self, file: &str) -> Checked {
        check_text(file, &self.text)
    }
}

/// The region from the start of its line, so the first line keeps the
/// indentation the later ones are written against.
fn dedent_start(text: &str, start: usize, end: usize) -> String {
    let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
    let lead = &text[line_start..start];
    let from = if lead.trim().is_empty() {
        line_start
    } else {
        start
    };
    text[from..end].to_string()
}

/// Finds the XML and marks its lines owned.
pub(super) fn read(
    _file: &str,
    lines: &Lines,
    owned: &mut [bool],
    unread: &mut Vec<Unread>,
) -> Option<XmlPart> {
    let text = lines.text();
    let nodedev = nodedev_regions(text);
    let find =
        |name: &str, unread: &mut Vec<Unread>| element_regions(text, name, &nodedev, lines, unread);
    let (kind, regions) = if let Some(r) = find("domain", unread) {
        (XmlKind::Domain, r)
    } else if let Some(r) = find("devices", unread) {
        (XmlKind::Devices, r)
    } else {
        (XmlKind::Hostdevs, find("hostdev", unread)?)
    };
    for &(s, e) in &regions {
        for line in &mut owned[lines.index_of(s)..=lines.index_of(e.saturating_sub(1))] {
            *line = true;
        }
    }
    // Everything outside the regions becomes blanks, byte for byte, so
    // that offsets stay the paste's (a prompt before `<domain>`, prose
    // after `</hostdev>` on the same line).
    let mut blanked = String::with_capacity(text.len());
    for (i, c) in text.char_indices() {
        if c == '\n' || regions.iter().any(|&(s, e)| s <= i && i < e) {
            blanked.push(c);
        } else {
            blanked.extend(std::iter::repeat_n(' ', c.len_utf8()));
        }
    }
    let first_line = lines.index_of(regions[0].0) + 1;
    let last_line = lines.index_of(regions.last()?.1.saturating_sub(1)) + 1;
    let text = blanked;
    let quote = quote_of(&text, &regions);
    Some(XmlPart {
        kind,
        text,
        regions,
        quote,
        first_line,
        last_line,
    })
}

/// The byte ranges of every `<name …>…</name>` (or `<name …/>`) outside
/// nodedev documents. An element that is never closed runs to the end of
/// the XML-looking lines that follow it (the reader then says it is not
/// closed, with the line), and is noted as truncated.
fn element_regions(
    text: &str,
    name: &str,
    nodedev: &[(usize, usize)],
    lines: &Lines,
    unread: &mut Vec<Unread>,
) -> Option<Vec<(usize, usize)>> {
    let open = format!("<{name}");
    let close = format!("</{name}>");
    let mut regions = Vec::new();
    let mut from = 0;
    while let Some(found) = text[from..].find(&open) {
        let start = from + found;
        let after = text.as_bytes().get(start + open.len()).copied();
        let in_nodedev = nodedev.iter().any(|&(s, e)| s <= start && start < e);
        // XML starts its line or follows another tag; a `<hostdev` inside
        // a command (`sed -n '/<hostdev/,/<\/hostdev>/p'`) does neither.
        let before = text[..start].trim_end_matches([' ', '\t']);
        let starts_element = before.is_empty() || before.ends_with(['\n', '>']);
        if !starts_element {
            from = start + open.len();
            continue;
        }
        if in_nodedev || !matches!(after, Some(b'>' | b'/' | b' ' | b'\t' | b'\n' | b'\r')) {
            from = start + open.len();
            continue;
        }
        let tag_end = text[start..].find('>').map(|i| start + i + 1);
        let self_closed = tag_end.is_some_and(|e| text[..e].ends_with("/>"));
        let end = if self_closed {
            tag_end
        } else {
            text[start..].find(&close).map(|i| start + i + close.len())
        };
        let end = match end {
            Some(end) => end,
            None => {
                let end = xml_run_end(text, start, lines);
                unread.push(Unread {
                    line: lines.index_of(start) + 1,
                    why: format!(
                        "<{name}> starts here and is never closed: the paste may be cut off"
                    ),
                });
                end
            }
        };
        regions.push((start, end));
        from = end;
    }
    (!regions.is_empty()).then_some(regions)
}

/// The byte ranges of `virsh nodedev-dumpxml` documents: `<device>` (not
/// `<devices>`) to its `</device>`, or to the end when it is not closed.
pub(super) fn nodedev_regions(text: &str) -> Vec<(usize, usize)> {
    let mut regions = Vec::new();
    let mut from = 0;
    while let Some(found) = text[from..].find("<device") {
        let start = from + found;
        match text.as_bytes().get(start + 7) {
            Some(b'>' | b'/' | b' ' | b'\t' | b'\n' | b'\r') => {}
            _ => {
                from = start + 7;
                continue;
            }
        }
        let end = text[start..]
            .find("</device>")
            .map_or(text.len(), |i| start + i + "</device>".len());
        regions.push((start, end));
        from = end;
    }
    regions
}

/// Where the XML that starts at `start` stops looking like XML: the end of
/// the last line of the run of lines that start with `<` (or continue a
/// tag), counted from `start`'s line.
fn xml_run_end(text: &str, start: usize, lines: &Lines) -> usize {
    let first = lines.index_of(start);
    let mut last = first;
    for i in first + 1..lines.len() {
        let body = lines.get(i).trim();
        let looks = body.starts_with('<')
            || body.ends_with('>')
            || body.contains("='")
            || body.contains("=\"");
        if !looks {
            break;
        }
        last = i;
    }
    (lines.start(last) + lines.get(last).len()).min(text.len())
}

fn quote_of(text: &str, regions: &[(usize, usize)]) -> char {
    let (mut single, mut double) = (0, 0);
    for &(s, e) in regions {
        single += text[s..e].matches("='").count();
        double += text[s..e].matches("=\"").count();
    }
    if double > single {
        '"'
    } else {
        '\''
    }
}
