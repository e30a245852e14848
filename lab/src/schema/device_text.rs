//! The device elements of a domain XML as the user wrote them, byte for
//! byte, so that another domain can carry them (the libvirt backend wraps
//! them in a bootable L2 domain, and libvirt must see exactly the user's
//! words).

use quick_xml::events::Event;
use quick_xml::Reader;

/// One device element: its name and its exact text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceText {
    pub element: String,
    pub text: String,
}

/// The device elements of `<domain><devices>…`, of a `<devices>` root, or
/// the top-level elements themselves. Assumes well-formed input (check it
/// first); on bad XML it returns what it found before.
pub fn device_texts(xml: &str) -> Vec<DeviceText> {
    let mut reader = Reader::from_str(xml);
    let mut path: Vec<String> = Vec::new();
    let mut open: Option<(usize, usize, String)> = None; // (depth, start, name)
    let mut out = Vec::new();
    loop {
        let start = reader.buffer_position() as usize;
        let event = match reader.read_event() {
            Ok(Event::Eof) | Err(_) => break,
            Ok(e) => e,
        };
        let is_empty = matches!(event, Event::Empty(_));
        match event {
            Event::Start(tag) | Event::Empty(tag) if open.is_none() => {
                let name = tag.name().as_ref().to_string();
                if is_device(&path, &name) {
                    if is_empty {
                        out.push(DeviceText {
                            element: name.clone(),
                            text: xml[start..reader.buffer_position() as usize].to_string(),
                        });
                    } else {
                        open = Some((path.len(), start, name.clone()));
                    }
                }
                if !is_empty {
                    path.push(name);
                }
            }
            Event::Start(tag) => path.push(tag.name().as_ref().to_string()),
            Event::End(_) => {
                path.pop();
                if let Some((depth, from, name)) = &open {
                    if path.len() == *depth {
                        out.push(DeviceText {
                            element: name.clone(),
                            text: xml[*from..reader.buffer_position() as usize].to_string(),
                        });
                        open = None;
                    }
                }
            }
            _ => {}
        }
    }
    out
}

fn is_device(path: &[String], name: &str) -> bool {
    match path {
        [] => name != "domain" && name != "devices",
        [root] if root == "devices" => true,
        [root, devices] if root == "domain" && devices == "devices" => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_are_copied_byte_for_byte() {
        let xml = "<domain><name>x</name><devices>\n  <hostdev mode='subsystem' type='pci'>\n    <source><address slot='0x06'/></source>\n  </hostdev>\n  <memballoon model='none'/>\n</devices></domain>";
        let d = device_texts(xml);
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].element, "hostdev");
        assert_eq!(d[0].text, "<hostdev mode='subsystem' type='pci'>\n    <source><address slot='0x06'/></source>\n  </hostdev>");
        assert_eq!(d[1].text, "<memballoon model='none'/>");
    }

    #[test]
    fn loose_elements_and_a_devices_root_work_too() {
        assert_eq!(device_texts("<hostdev/><hostdev><rom/></hostdev>").len(), 2);
        assert_eq!(
            device_texts("<devices><disk/><hostdev/></devices>")[1].element,
            "hostdev"
        );
    }
}
