//! A small element tree read with quick-xml, where every element remembers
//! where it starts, so that each rule can point at the line and column.
//!
//! Text, comments and processing instructions are read past: the rules only
//! look at element names and attributes.

use quick_xml::events::attributes::AttrError;
use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;

use crate::diagnostic::Pos;
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

/// Input that is not well-formed XML, with where reading stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XmlError {
    pub at: Pos,
    pub message: String,
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
        let event = reader.read_event().map_err(|e| XmlError {
            at: src.pos(reader.error_position() as usize),
            message: format!("the XML is not well-formed: {e}"),
        })?;
        match event {
            Event::Start(tag) => {
                let element = element_from(&tag, start, src)?;
                stack.push(element);
            }
            Event::Empty(tag) => {
                let element = element_from(&tag, start, src)?;
                attach(element, &mut stack, &mut roots);
            }
            Event::End(_) => {
                // check_end_names guarantees the names match.
                if let Some(done) = stack.pop() {
                    attach(done, &mut stack, &mut roots);
                }
            }
            Event::Text(text) if stack.is_empty() && !text.as_ref().trim().is_empty() => {
                return Err(XmlError {
                    at: src.pos(start),
                    message: "text outside of any element; the input must be XML elements".into(),
                });
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if let Some(open) = stack.last() {
        return Err(XmlError {
            at: src.pos(src.text().len()),
            message: format!(
                "the XML is not well-formed: <{}> opened at line {} column {} is never closed",
                open.name, open.at.line, open.at.column
            ),
        });
    }
    if roots.is_empty() {
        return Err(XmlError {
            at: src.pos(src.text().len()),
            message: "no XML element found; expected <domain>, <devices> or a device element such as <hostdev>".into(),
        });
    }
    Ok(roots)
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
        let attr = attr.map_err(|e| XmlError {
            at: attribute_error_pos(&e, tag_offset, src),
            message: format!("the XML is not well-formed: bad attribute in <{name}>: {e}"),
        })?;
        let key = attr.key.as_ref().to_string();
        let value = attr
            .normalized_value(quick_xml::XmlVersion::Implicit1_0)
            .map_err(|e| XmlError {
                at,
                message: format!("the XML is not well-formed: attribute '{key}' of <{name}>: {e}"),
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
    fn several_top_level_elements_are_read() {
        assert_eq!(parse("<hostdev/>\n<hostdev/>").unwrap().len(), 2);
    }
}
