//! What ran inside L1: the versions of L1's kernel, QEMU and libvirt, as
//! their own `--version` lines say them. The agent gathers them once per
//! L1 and hands them back with every outcome, so a report names what the
//! verdict was reached with (the host's userland or a Debian release's).

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct L1Versions {
    /// `uname -r` inside L1: `6.12.117+deb13-amd64`.
    pub kernel: String,
    /// The first line of `qemu-system-x86_64 --version`.
    pub qemu: String,
    /// `libvirtd --version`; empty when the root has no libvirtd.
    pub libvirt: String,
}

impl L1Versions {
    /// `10.0.13` from "QEMU emulator version 10.0.13 (Debian 1:10.0.13+ds-0+deb13u1)".
    pub fn qemu_number(&self) -> Option<&str> {
        version_after(&self.qemu, "version ")
    }

    /// `11.3.0` from "libvirtd (libvirt) 11.3.0".
    pub fn libvirt_number(&self) -> Option<&str> {
        version_after(&self.libvirt, ") ")
    }

    /// One line for the text report.
    pub fn describe(&self) -> String {
        let libvirt = match self.libvirt_number() {
            Some(v) => format!("libvirt {v}"),
            None => "no libvirtd".to_string(),
        };
        format!(
            "Linux {}, QEMU {}, {libvirt}",
            self.kernel,
            self.qemu_number().unwrap_or(&self.qemu)
        )
    }
}

fn version_after<'a>(line: &'a str, marker: &str) -> Option<&'a str> {
    let rest = &line[line.find(marker)? + marker.len()..];
    rest.split_whitespace()
        .next()
        .filter(|v| v.starts_with(|c: char| c.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_read_from_the_tools_own_lines() {
        let v = L1Versions {
            kernel: "6.12.117+deb13-amd64".into(),
            qemu: "QEMU emulator version 10.0.13 (Debian 1:10.0.13+ds-0+deb13u1)".into(),
            libvirt: "libvirtd (libvirt) 11.3.0".into(),
        };
        assert_eq!(v.qemu_number(), Some("10.0.13"));
        assert_eq!(v.libvirt_number(), Some("11.3.0"));
        assert_eq!(
            v.describe(),
            "Linux 6.12.117+deb13-amd64, QEMU 10.0.13, libvirt 11.3.0"
        );
        assert_eq!(L1Versions::default().libvirt_number(), None);
    }
}
