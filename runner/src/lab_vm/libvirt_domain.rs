//! The libvirt domain L2 runs as: the user's devices, word for word,
//! inside a bootable domain of the lab's (L2's kernel and initramfs, a
//! serial log, nothing L2 does not need).

use std::path::Path;

use lab::machine::accel::Accel;
use lab::schema::device_text::DeviceText;

use super::libvirtd::DOMAIN_NAME;

/// The bootable L2 domain around the user's devices: L2's kernel and
/// initramfs (booted with `cmdline`), a serial log, no balloon; its type
/// follows L2's accelerator.
pub fn l2_domain(
    devices: &[DeviceText],
    accel: Accel,
    kernel: &Path,
    initrd: &Path,
    cmdline: &str,
    serial: &Path,
) -> String {
    l2_domain_with(devices, accel, kernel, initrd, cmdline, serial, true)
}

/// `lab_devices`: the lab's serial log, its report port (a virtio-serial
/// channel into a file beside it, on a controller at the root bus's slot
/// 0x1e so that libvirt's root ports, and the buses of the user's
/// hostdevs behind them, are numbered as without it), and no balloon or
/// USB controller (L2 needs none). A static verdict on the user's own devices leaves them
/// out, so that only the user's devices meet libvirt's checks.
pub fn l2_domain_with(
    devices: &[DeviceText],
    accel: Accel,
    kernel: &Path,
    initrd: &Path,
    cmdline: &str,
    serial: &Path,
    lab_devices: bool,
) -> String {
    let mut xml = format!(
        "<domain type='{}'>\n  <name>{DOMAIN_NAME}</name>\n  <memory unit='MiB'>256</memory>\n  <vcpu>{}</vcpu>\n  <os>\n    <type arch='x86_64' machine='q35'>hvm</type>\n    <kernel>{}</kernel>\n    <initrd>{}</initrd>\n    <cmdline>{}</cmdline>\n  </os>\n  <features><acpi/></features>\n  <cpu mode='{}'/>\n  <on_poweroff>destroy</on_poweroff>\n  <on_reboot>destroy</on_reboot>\n  <devices>\n{}",
        accel.libvirt_domain_type(),
        // Two vCPUs, one booted: `crate::lab_vm::l2::guest::L2_VCPUS` says why.
        crate::lab_vm::l2::guest::L2_VCPUS,
        kernel.display(),
        initrd.display(),
        cmdline,
        match accel {
            Accel::Kvm => "host-passthrough",
            Accel::Tcg => "host-model",
        },
        if lab_devices {
            format!(
                "    <serial type='file'><source path='{}'/><target port='0'/></serial>\n    <controller type='virtio-serial' index='0'><address type='pci' domain='0x0000' bus='0x00' slot='0x1e' function='0x0'/></controller>\n    <channel type='file'><source path='{}'/><target type='virtio' name='{}'/></channel>\n    <memballoon model='none'/>\n    <controller type='usb' model='none'/>\n",
                serial.display(),
                serial.with_file_name(lab::protocol::paths::L2_REPORT_LOG).display(),
                lab::protocol::paths::L2_REPORT_PORT
            )
        } else {
            String::new()
        },
    );
    for d in devices {
        xml.push_str("    ");
        xml.push_str(&d.text);
        xml.push('\n');
    }
    xml.push_str("  </devices>\n</domain>\n");
    xml
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_l2_domain_carries_the_users_devices_verbatim() {
        let devices = lab::schema::device_text::device_texts("<hostdev mode='subsystem' type='pci' managed='yes'><source><address slot='0x06' function='0x1'/></source><address type='unassigned'/></hostdev>");
        let xml = l2_domain(
            &devices,
            Accel::Kvm,
            Path::new("/l2/vmlinux"),
            Path::new("/l2/initrd"),
            crate::lab_vm::l2::guest::L2_KERNEL_CMDLINE,
            Path::new("/mflab/l2-serial.log"),
        );
        assert!(xml.contains("<domain type='kvm'>"));
        assert!(xml.contains(&devices[0].text));
        assert!(xml.contains("<kernel>/l2/vmlinux</kernel>"));
        let checked = lab::schema::check::check_text("d.xml", &xml);
        assert!(!checked.has_errors(), "{:?}", checked.diagnostics);
        assert!(xml.contains("<channel type='file'><source path='/mflab/l2-report.log'/><target type='virtio' name='mflab.report'/></channel>"), "{xml}");
        assert_eq!(
            checked.domain.devices.len(),
            6,
            "serial, report port and its controller, balloon, usb controller, the hostdev"
        );
    }
}
