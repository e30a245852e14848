//! A small element tree read with quick-xml, where every element remembers
//! where it starts, so that each rule can point at the line and column.
//!
//! Text, comments and processing instructions are read past: the rules only
//! look at element names and attributes.

use quick_xml::events::attributes::AttrError;
use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;

use crate::schema::diagnostic::Pos;
use crate::source::SourceText;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Element {
    pub name: String,
    pub at: Pos,
    pub attrs: Vec<(String, String)>,
    pub children: Vec<Element>,
}

impl Element {
    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    pub fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }
}

/// How deep elements may nest: libxml2's default (`xmlParserMaxDepth`),
/// so what libvirt would refuse to parse is refused here too. A domain XML
/// nests six or seven deep; the limit also keeps the tree's walks and its
/// drop, which recurse, well inside the stack.
pub const MAX_DEPTH: usize = 256;

/// Input that is not well-formed XML, with where reading stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XmlError {
    pub at: Pos,
    pub message: String,
    /// What to do about it, in one sentence.
    pub hint: &'static str,
}

const MALFORMED_HINT: &str =
    "fix the XML so that every element is closed and every attribute is quoted";

impl XmlError {
    fn malformed(at: Pos, message: String) -> Self {
        XmlError {
            at,
            message,
            hint: MALFORMED_HINT,
        }
    }
}

/// Reads every top-level element of `src`. Several top-level elements are
/// allowed, because bug reports paste a few `<hostdev>` blocks one after
/// the other.
pub fn parse_elements(src: &SourceText) -> Result<Vec<Element>, XmlError> {
    let mut reader = Reader::from_str(src.text());
    reader.config_mut().check_end_names = true;
    let mut stack: Vec<Element> = Vec::new();
    let mut roots: Vec<Element> = Vec::new();

    loop {
        let start = reader.buffer_position() as usize;
        let event = reader.read_event().map_err(|e| {
            XmlError::malformed(
                src.pos(reader.error_position() as usize),
                format!("the XML is not well-formed: {e}"),
            )
        })?;
        match event {
            Event::Start(tag) => {
                let element = element_from(&tag, start, src)?;
                if stack.len() == MAX_DEPTH {
                    return Err(too_deep(&element));
                }
                stack.push(element);
            }
            Event::Empty(tag) => {
                let element = element_from(&tag, start, src)?;
                if stack.len() == MAX_DEPTH {
                    return Err(too_deep(&element));
                }
                attach(element, &mut stack, &mut roots);
            }
            Event::End(_) => {
                // check_end_names guarantees the names match.
                if let Some(done) = stack.pop() {
                    attach(done, &mut stack, &mut roots);
                }
            }
            Event::Text(text) if stack.is_empty() && !text.as_ref().trim().is_empty() => {
                return Err(XmlError::malformed(
                    src.pos(start),
                    "text outside of any element; the input must be XML elements".into(),
                ));
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if let Some(open) = stack.last() {
        return Err(XmlError::malformed(
            src.pos(src.text().len()),
            format!(
                "the XML is not well-formed: <{}> opened at line {} column {} is never closed",
                open.name, open.at.line, open.at.column
            ),
        ));
    }
    if roots.is_empty() {
        return Err(XmlError::malformed(
            src.pos(src.text().len()),
            "no XML element found; expected <domain>, <devices> or a device element such as <hostdev>".into(),
        ));
    }
    Ok(roots)
}

/// The element one level past [`MAX_DEPTH`].
fn too_deep(element: &Element) -> XmlError {
    XmlError {
        at: element.at,
        message: format!(
            "<{}> is nested {} elements deep; elements may nest at most {MAX_DEPTH} deep (libxml2's limit, so libvirt would not read it either)",
            element.name,
            MAX_DEPTH + 1
        ),
        hint: "a domain XML nests a few elements deep; remove the extra nesting",
    }
}

fn attach(element: Element, stack: &mut [Element], roots: &mut Vec<Element>) {
    match stack.last_mut() {
        Some(parent) => parent.children.push(element),
        None => roots.push(element),
    }
}

fn element_from(
    tag: &BytesStart,
    tag_offset: usize,
    src: &SourceText,
) -> Result<Element, XmlError> {
    let at = src.pos(tag_offset);
    let name = tag.name().as_ref().to_string();
    let mut attrs = Vec::new();
    for attr in tag.attributes() {
        let attr = attr.map_err(|e| {
            XmlError::malformed(
                attribute_error_pos(&e, tag_offset, src),
                format!("the XML is not well-formed: bad attribute in <{name}>: {e}"),
            )
        })?;
        let key = attr.key.as_ref().to_string();
        let value = attr
            .normalized_value(quick_xml::XmlVersion::Implicit1_0)
            .map_err(|e| {
                XmlError::malformed(
                    at,
                    format!("the XML is not well-formed: attribute '{key}' of <{name}>: {e}"),
                )
            })?
            .into_owned();
        attrs.push((key, value));
    }
    Ok(Element {
        name,
        at,
        attrs,
        children: Vec::new(),
    })
}

/// Where in the file an attribute error happened. quick-xml counts from the
/// start of the tag's content, just after `<`.
fn attribute_error_pos(e: &AttrError, tag_offset: usize, src: &SourceText) -> Pos {
    let inside = match e {
        AttrError::ExpectedEq(p)
        | AttrError::ExpectedValue(p)
        | AttrError::UnquotedValue(p)
        | AttrError::ExpectedQuote(p, _) => *p,
        AttrError::Duplicated(p, _) => *p,
    };
    src.pos(tag_offset + 1 + inside)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<Element>, XmlError> {
        parse_elements(&SourceText::new(text))
    }

    #[test]
    fn elements_remember_where_they_start() {
        let roots = parse(
            "<devices>\n  <hostdev managed='yes'>\n    <rom bar='off'/>\n  </hostdev>\n</devices>",
        )
        .unwrap();
        let hostdev = &roots[0].children[0];
        assert_eq!(hostdev.name, "hostdev");
        assert_eq!(hostdev.at, Pos { line: 2, column: 3 });
        assert_eq!(hostdev.attr("managed"), Some("yes"));
        assert_eq!(hostdev.children[0].at, Pos { line: 3, column: 5 });
    }

    #[test]
    fn entities_in_attributes_are_decoded() {
        let roots = parse("<a b='x&amp;y'/>").unwrap();
        assert_eq!(roots[0].attr("b"), Some("x&y"));
    }

    #[test]
    fn mismatched_end_tag_is_an_error_where_it_happens() {
        let err = parse("<hostdev>\n  <source>\n  </hostdev>").unwrap_err();
        assert_eq!(err.at.line, 3);
    }

    #[test]
    fn unclosed_element_is_an_error() {
        let err = parse("<hostdev>\n  <source/>\n").unwrap_err();
        assert!(err.message.contains("never closed"), "{}", err.message);
    }

    #[test]
    fn nesting_stops_at_libxml2s_depth() {
        // One element a line: element n starts on line n.
        let open = |depth: usize| "<a>\n".repeat(depth);
        let err = parse(&format!("{}  <c/>", open(MAX_DEPTH))).unwrap_err();
        assert_eq!(
            err.at,
            Pos {
                line: MAX_DEPTH as u32 + 1,
                column: 3
            }
        );
        assert!(err.message.contains("at most 256 deep"), "{}", err.message);
        assert!(err.message.contains("<c>"), "{}", err.message);
        // Exactly MAX_DEPTH deep is read.
        let ok = format!(
            "{}<c/>{}",
            open(MAX_DEPTH - 1),
            "</a>".repeat(MAX_DEPTH - 1)
        );
        assert!(parse(&ok).is_ok());
    }

    #[test]
    fn several_top_level_elements_are_read() {
        assert_eq!(parse("<hostdev/>\n<hostdev/>").unwrap().len(), 2);
    }
}
