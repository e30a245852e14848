//! libvirt's static verdict (`mflab check --backend libvirt`): `virsh
//! define`, then `undefine`, of each file's devices in the lab's domain.

use std::path::Path;

use lab::machine::accel::Accel;
use lab::protocol::{CheckItem, LibvirtVerdict};
use lab::schema::device_text::device_texts;

use super::error::L1Error;
use super::libvirt_domain::l2_domain_with;
use super::libvirtd::{Libvirtd, DOMAIN_NAME};

/// `virsh define` then `undefine` for each file, its devices wrapped in
/// the lab's L2 domain (XML that is not well-formed goes in as it is, so
/// that libvirt's own parser speaks).
pub fn check_with_libvirt(
    items: &[CheckItem],
    work: &Path,
    libvirt_bin: Option<&Path>,
) -> Result<Vec<LibvirtVerdict>, L1Error> {
    let daemon = Libvirtd::start(work, libvirt_bin)?;
    let mut verdicts = Vec::new();
    for item in items {
        let well_formed = !lab::schema::check::check_text(&item.file, &item.xml)
            .diagnostics
            .iter()
            .any(|d| d.rule == lab::RuleId::Xml);
        let devices = if well_formed {
            device_texts(&item.xml)
        } else {
            let raw = item.xml.trim_start();
            let raw = if raw.starts_with("<?xml") {
                raw.split_once("?>").map_or(raw, |(_, rest)| rest)
            } else {
                raw
            };
            vec![lab::schema::device_text::DeviceText {
                element: "raw".into(),
                text: raw.to_string(),
            }]
        };
        let xml = l2_domain_with(
            &devices,
            Accel::Tcg,
            Path::new("/l2/vmlinux"),
            Path::new("/l2/initrd"),
            crate::lab_vm::l2::guest::L2_KERNEL_CMDLINE,
            &work.join("check-serial.log"),
            false,
        );
        let file = work.join("check-domain.xml");
        std::fs::write(&file, xml)?;
        let defined = daemon.virsh(&["define", &file.to_string_lossy()]);
        if defined.ok {
            daemon.virsh(&["undefine", DOMAIN_NAME]);
        }
        verdicts.push(LibvirtVerdict {
            file: item.file.clone(),
            accepted: defined.ok,
            message: (!defined.ok).then(|| {
                defined
                    .error_text()
                    .trim_start_matches("Failed to define domain from /mflab/check-domain.xml / ")
                    .to_string()
            }),
        });
    }
    Ok(verdicts)
}
