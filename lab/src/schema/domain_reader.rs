//! Reading a domain XML (or a `<devices>` element, or loose device
//! elements) into the [`Domain`] model.
//!
//! Reading never stops at a value it cannot understand: it reports a
//! `VALUE` diagnostic and reads on, so one run shows every problem. Only
//! XML that is not well-formed stops it (an `XML` diagnostic).

use crate::pci::address::{
    parse_c_number, PciAddress, MAX_BUS, MAX_DOMAIN, MAX_FUNCTION, MAX_SLOT,
};
use crate::schema::diagnostic::{Diagnostic, RuleId, Severity};
use crate::schema::domain::{
    AddressKind, AssignedAttr, Device, Domain, GuestAddress, Hostdev, Located,
};
use crate::schema::xml_tree::{parse_elements, Element};
use crate::source::SourceText;

/// The model of the input plus what could not be read.
pub struct ReadOutcome {
    pub domain: Domain,
    pub diagnostics: Vec<Diagnostic>,
}

impl ReadOutcome {
    /// Whether reading itself failed (bad XML or an unreadable value).
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }
}

/// Reads `text`, naming it `file` in diagnostics.
pub fn read_domain(file: &str, text: &str) -> ReadOutcome {
    let src = SourceText::new(text);
    let mut reader = DomainReader {
        file,
        diagnostics: Vec::new(),
    };
    let mut domain = Domain {
        file: file.to_string(),
        devices: Vec::new(),
    };
    match parse_elements(&src) {
        Err(err) => reader.diagnostics.push(Diagnostic::new(
            RuleId::Xml,
            Severity::Error,
            file,
            err.at,
            err.message,
            err.hint,
        )),
        Ok(roots) => {
            for root in &roots {
                for element in device_elements(root) {
                    domain.devices.push(reader.device(element));
                }
            }
        }
    }
    ReadOutcome {
        domain,
        diagnostics: reader.diagnostics,
    }
}

/// The device elements a top-level element stands for.
fn device_elements(root: &Element) -> Vec<&Element> {
    match root.name.as_str() {
        "domain" => root
            .children_named("devices")
            .flat_map(|d| d.children.iter())
            .collect(),
        "devices" => root.children.iter().collect(),
        _ => vec![root],
    }
}

struct DomainReader<'a> {
    file: &'a str,
    diagnostics: Vec<Diagnostic>,
}

impl DomainReader<'_> {
    fn device(&mut self, element: &Element) -> Device {
        let assigned = element.attr("assigned").map(|raw| AssignedAttr {
            raw: raw.to_string(),
            at: element.at,
        });
        let address = element.child("address").map(|a| self.guest_address(a));
        let acpi_index = element.child("acpi").and_then(|acpi| {
            let raw = acpi.attr("index")?;
            let value = self.number(
                acpi,
                "index",
                raw,
                u32::MAX,
                "a positive number, e.g. index='1'",
            )?;
            Some(Located { value, at: acpi.at })
        });
        let boot_order = element.child("boot").and_then(|boot| {
            let raw = boot.attr("order")?;
            let value = self.number(
                boot,
                "order",
                raw,
                u32::MAX,
                "a positive number, e.g. order='1'",
            )?;
            Some(Located { value, at: boot.at })
        });
        let hostdev = (element.name == "hostdev").then(|| self.hostdev(element));
        Device {
            element: element.name.clone(),
            at: element.at,
            assigned,
            address,
            acpi_index,
            boot_order,
            hostdev,
        }
    }

    fn hostdev(&mut self, element: &Element) -> Hostdev {
        let mode = element.attr("mode").unwrap_or("subsystem").to_string();
        let kind = element.attr("type").unwrap_or_default().to_string();
        let managed = match element.attr("managed") {
            None | Some("no") => false,
            Some("yes") => true,
            Some(other) => {
                self.value_error(
                    element,
                    format!(
                        "Invalid value for attribute 'managed' in element 'hostdev': '{other}'."
                    ),
                    "write managed='yes' (libvirt detaches the device) or managed='no'",
                );
                false
            }
        };
        let source = if mode == "subsystem" && kind == "pci" {
            element
                .child("source")
                .and_then(|s| s.child("address"))
                .and_then(|a| self.pci_address(a).map(|value| Located { value, at: a.at }))
        } else {
            None
        };
        Hostdev {
            mode,
            kind,
            managed,
            source,
            driver_name: element
                .child("driver")
                .and_then(|d| d.attr("name"))
                .map(str::to_string),
            iommufd: element
                .child("driver")
                .and_then(|d| d.attr("iommufd"))
                .is_some_and(|v| v == "yes"),
        }
    }

    fn guest_address(&mut self, element: &Element) -> GuestAddress {
        let kind = match element.attr("type") {
            Some("pci") => match self.pci_address(element) {
                Some(address) if address.domain == 0 && address.bus == 0 && address.slot == 0 => {
                    AddressKind::PciToAssign
                }
                Some(address) => {
                    let multifunction = match element.attr("multifunction") {
                        None | Some("off") => false,
                        Some("on") => true,
                        Some(other) => {
                            self.value_error(
                                element,
                                format!("Invalid value for attribute 'multifunction' in element 'address': '{other}'."),
                                "write multifunction='on' or multifunction='off'",
                            );
                            false
                        }
                    };
                    AddressKind::Pci {
                        address,
                        multifunction,
                    }
                }
                // The error is reported; keep the type so other rules still see a pci address.
                None => AddressKind::Pci {
                    address: PciAddress::new(0, 0, 0, 0),
                    multifunction: false,
                },
            },
            Some("unassigned") => AddressKind::Unassigned,
            Some("none") => AddressKind::None,
            Some(other) => AddressKind::Other(other.to_string()),
            None => {
                self.value_error(
                    element,
                    "No type specified for device address".to_string(),
                    "give the address a type, e.g. <address type='pci' …/> or <address type='unassigned'/>",
                );
                AddressKind::Other(String::new())
            }
        };
        GuestAddress {
            kind,
            at: element.at,
        }
    }

    /// Reads domain/bus/slot/function; a missing part is 0, as in libvirt.
    fn pci_address(&mut self, element: &Element) -> Option<PciAddress> {
        let mut part = |name: &str, max: u32| -> Option<u32> {
            match element.attr(name) {
                None => Some(0),
                Some(raw) => self.number(
                    element,
                    name,
                    raw,
                    max,
                    &format!("write a number from 0 to {max:#x}, in hex with 0x (e.g. {name}='0x1') or in decimal"),
                ),
            }
        };
        let domain = part("domain", MAX_DOMAIN);
        let bus = part("bus", MAX_BUS);
        let slot = part("slot", MAX_SLOT);
        let function = part("function", MAX_FUNCTION);
        Some(PciAddress::new(
            domain? as u16,
            bus? as u8,
            slot? as u8,
            function? as u8,
        ))
    }

    fn number(
        &mut self,
        element: &Element,
        attr: &str,
        raw: &str,
        max: u32,
        hint: &str,
    ) -> Option<u32> {
        match parse_c_number(raw) {
            Some(v) if v <= max => Some(v),
            _ => {
                self.value_error(
                    element,
                    format!(
                        "Invalid value for attribute '{attr}' in element '{}': '{raw}'.",
                        element.name
                    ),
                    hint,
                );
                None
            }
        }
    }

    fn value_error(&mut self, element: &Element, message: String, hint: &str) {
        self.diagnostics.push(Diagnostic::new(
            RuleId::Value,
            Severity::Error,
            self.file,
            element.at,
            message,
            hint,
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::domain::Assignment;

    #[test]
    fn a_hostdev_s_driver_may_ask_for_iommufd() {
        let xml = "<devices><hostdev mode='subsystem' type='pci' managed='yes'><driver iommufd='yes'/><source><address domain='0' bus='0' slot='6' function='0'/></source></hostdev><hostdev mode='subsystem' type='pci' managed='yes'><driver iommufd='no'/><source><address domain='0' bus='0' slot='6' function='1'/></source></hostdev></devices>";
        let out = read_domain("d.xml", xml);
        assert!(out.diagnostics.is_empty(), "{:?}", out.diagnostics);
        let iommufd: Vec<bool> = out
            .domain
            .devices
            .iter()
            .map(|d| d.hostdev.as_ref().unwrap().iommufd)
            .collect();
        assert_eq!(iommufd, [true, false]);
        assert!(out.domain.wants_iommufd());
    }

    #[test]
    fn reads_a_pci_hostdev_completely() {
        let xml = r#"<domain type='kvm'><name>x</name><devices>
  <hostdev mode='subsystem' type='pci' managed='yes'>
    <driver name='vfio'/>
    <source><address domain='0x0000' bus='0x00' slot='0x06' function='0x1'/></source>
    <alias name='hostdev1'/>
    <address type='unassigned'/>
    <rom bar='off'/>
  </hostdev>
  <disk type='file' device='disk'><address type='drive' controller='0' bus='0' unit='0'/></disk>
</devices></domain>"#;
        let out = read_domain("d.xml", xml);
        assert!(out.diagnostics.is_empty(), "{:?}", out.diagnostics);
        let d = &out.domain.devices;
        assert_eq!(d.len(), 2);
        let h = d[0].hostdev.as_ref().unwrap();
        assert!(h.managed && h.is_pci_subsystem());
        assert_eq!(d[0].pci_source(), Some(PciAddress::new(0, 0, 6, 1)));
        assert_eq!(h.driver_name.as_deref(), Some("vfio"));
        assert!(!h.iommufd && !out.domain.wants_iommufd());
        assert_eq!(d[0].assignment(), Assignment::Unassigned);
        assert_eq!(d[1].address.as_ref().unwrap().kind.type_name(), "drive");
    }

    #[test]
    fn decimal_and_hex_are_both_read() {
        let out = read_domain("x", "<hostdev mode='subsystem' type='pci'><source><address bus='6' slot='0x1f' function='7'/></source></hostdev>");
        assert!(out.diagnostics.is_empty());
        assert_eq!(
            out.domain.devices[0].pci_source(),
            Some(PciAddress::new(0, 6, 0x1f, 7))
        );
    }

    #[test]
    fn an_unreadable_slot_is_a_value_error_at_its_element() {
        let out = read_domain("x", "<hostdev mode='subsystem' type='pci'>\n  <source>\n    <address slot='0x2g'/>\n  </source>\n</hostdev>");
        assert_eq!(out.diagnostics.len(), 1);
        let d = &out.diagnostics[0];
        assert_eq!((d.rule, d.line, d.column), (RuleId::Value, 3, 5));
        assert!(d.message.contains("'0x2g'"));
    }

    #[test]
    fn a_pci_address_without_a_slot_is_one_to_assign() {
        // s390's zPCI hostdevs: libvirt picks the PCI slot, the XML names only the zPCI ids.
        let xml = "<devices>
  <hostdev mode='subsystem' type='pci'><source><address bus='6' slot='0' function='0'/></source>
    <address type='pci'><zpci uid='0x0001' fid='0x00000000'/></address></hostdev>
  <hostdev mode='subsystem' type='pci'><source><address bus='6' slot='0' function='1'/></source>
    <address type='pci'/></hostdev>
  <hostdev mode='subsystem' type='pci'><source><address bus='6' slot='1'/></source>
    <address type='pci' bus='0x01'/></hostdev>
</devices>";
        let out = read_domain("x", xml);
        assert!(out.diagnostics.is_empty(), "{:?}", out.diagnostics);
        let d = &out.domain.devices;
        for device in &d[..2] {
            assert_eq!(
                device.address.as_ref().unwrap().kind,
                AddressKind::PciToAssign
            );
            assert_eq!(device.guest_pci(), None);
            assert_eq!(device.address.as_ref().unwrap().kind.type_name(), "pci");
        }
        // Bus 1 without a slot is 0000:01:00.0, an address (as in libvirt).
        assert_eq!(d[2].guest_pci(), Some((PciAddress::new(0, 1, 0, 0), false)));
    }

    #[test]
    fn managed_defaults_to_no() {
        let out = read_domain(
            "x",
            "<hostdev type='pci'><source><address slot='6'/></source></hostdev>",
        );
        assert!(!out.domain.devices[0].hostdev.as_ref().unwrap().managed);
    }

    #[test]
    fn malformed_xml_is_one_xml_error() {
        let out = read_domain("x", "<domain><devices></domain>");
        assert_eq!(out.diagnostics.len(), 1);
        assert_eq!(out.diagnostics[0].rule, RuleId::Xml);
    }
}
