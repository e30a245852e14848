//! Single lines with words mflab knows: the error the reporter saw
//! (libvirt's and QEMU's), and the versions they name.

use serde::Serialize;

use super::{Lines, Paste};
use crate::pci::address::PciAddress;

/// An error line about VFIO groups, as libvirt or QEMU wrote it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ReportedError {
    pub line: usize,
    /// The line, trimmed.
    pub text: String,
    /// The group it names (`group 1 is not viable`).
    pub group: Option<u32>,
    /// The function it names (`vfio 0000:01:00.0:`, `host=0000:01:00.0`).
    pub address: Option<PciAddress>,
}

impl ReportedError {
    /// The words a replay must find in the lab's error to say it
    /// reproduced this one: QEMU's `group N is not viable` when the line
    /// has it, else the line's own text after its last `error:`.
    pub fn words(&self) -> String {
        match self.group {
            Some(g) if self.text.contains("not viable") => format!("group {g} is not viable"),
            _ => self
                .text
                .rsplit_once("error: ")
                .map_or(self.text.as_str(), |(_, e)| e)
                .to_string(),
        }
    }
}

/// Versions the paste names.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Versions {
    pub libvirt: Option<String>,
    pub qemu: Option<String>,
    pub kernel: Option<String>,
}

pub(super) fn read(lines: &Lines, owned: &mut [bool], paste: &mut Paste) {
    let mut after_uname = false;
    for (i, owned) in owned.iter_mut().enumerate() {
        if *owned {
            continue;
        }
        let body = lines.get(i).trim();
        if let Some(e) = error_line(body, i + 1) {
            *owned = true;
            paste.errors.push(e);
        }
        let v = &mut paste.versions;
        if let Some(x) = version_after(
            body,
            &[
                "Using library: libvirt ",
                "libvirtd (libvirt) ",
                "virsh (libvirt) ",
                "libvirt version: ",
                "libvirt ",
            ],
        ) {
            v.libvirt.get_or_insert(x);
        }
        if let Some(x) = version_after(
            body,
            &[
                "Running hypervisor: QEMU ",
                "QEMU emulator version ",
                "qemu-kvm version ",
                "QEMU ",
            ],
        ) {
            v.qemu.get_or_insert(x);
        }
        if let Some(x) = version_after(body, &["Linux version ", "kernel ", "Kernel "]) {
            v.kernel.get_or_insert(x);
        } else if after_uname && looks_like_kernel_release(body) {
            v.kernel.get_or_insert(body.to_string());
        } else if let Some(x) = uname_a(body) {
            v.kernel.get_or_insert(x);
        }
        after_uname = body.ends_with("uname -r");
    }
}

/// A line with QEMU's or libvirt's words about a VFIO group.
fn error_line(body: &str, line: usize) -> Option<ReportedError> {
    let lower = body.to_ascii_lowercase();
    // A shell loop over /sys/kernel/iommu_groups is a command, not an error.
    if lower.contains("$(") || lower.starts_with("for ") || lower.contains("; do") {
        return None;
    }
    let about_groups = lower.contains("not viable")
        || lower.contains("within the iommu_group")
        || (lower.contains("vfio") && lower.contains("error"))
        || lower.contains("failed to setup container");
    if !about_groups {
        return None;
    }
    let group = number_after(&lower, "group ");
    let address = address_after(body, "vfio ")
        .or_else(|| address_after(body, "host="))
        .or_else(|| address_after(body, "vfio: "));
    Some(ReportedError {
        line,
        text: body.to_string(),
        group,
        address,
    })
}

fn number_after(text: &str, key: &str) -> Option<u32> {
    text.match_indices(key).find_map(|(i, _)| {
        let rest = &text[i + key.len()..];
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        rest[..digits].parse().ok()
    })
}

fn address_after(text: &str, key: &str) -> Option<PciAddress> {
    text.match_indices(key).find_map(|(i, _)| {
        let rest = &text[i + key.len()..];
        let token: String = rest
            .chars()
            .take_while(|c| c.is_ascii_hexdigit() || *c == ':' || *c == '.')
            .collect();
        token.trim_end_matches([':', '.']).parse().ok()
    })
}

/// The version number right after one of `keys` (`8.0.0`, `6.2.0
/// (Debian 1:6.2+dfsg-2ubuntu6.15)` gives `6.2.0`).
fn version_after(body: &str, keys: &[&str]) -> Option<String> {
    keys.iter().find_map(|key| {
        let (_, rest) = body.split_once(key)?;
        let version: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || ".-+_~".contains(*c))
            .collect();
        let version = version.trim_end_matches(['.', '-']);
        let starts_numeric = version.starts_with(|c: char| c.is_ascii_digit());
        (starts_numeric && version.contains('.')).then(|| version.to_string())
    })
}

/// `6.1.0-18-amd64`, `6.5.0-14-generic`, `6.8.12-4-pve`.
fn looks_like_kernel_release(body: &str) -> bool {
    let mut parts = body.split(['.', '-']);
    let numeric =
        |p: Option<&str>| p.is_some_and(|p| !p.is_empty() && p.bytes().all(|c| c.is_ascii_digit()));
    numeric(parts.next()) && numeric(parts.next()) && !body.contains(' ')
}

/// `Linux host 6.1.0-18-amd64 #1 SMP …` (`uname -a`).
fn uname_a(body: &str) -> Option<String> {
    let mut words = body.split_whitespace();
    if words.next()? != "Linux" {
        return None;
    }
    words.next()?;
    let release = words.next()?;
    looks_like_kernel_release(release).then(|| release.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qemu_and_libvirt_error_lines() {
        let e = error_line("error: internal error: qemu unexpectedly closed the monitor: 2024-01-05T10:11:12.123456Z qemu-system-x86_64: -device vfio-pci,host=0000:01:00.0,id=hostdev0,bus=pci.5,addr=0x0: vfio 0000:01:00.0: group 1 is not viable", 3).unwrap();
        assert_eq!(e.group, Some(1));
        assert_eq!(e.address, Some("0000:01:00.0".parse().unwrap()));
        assert_eq!(e.words(), "group 1 is not viable");
        let e = error_line(
            "Please ensure all devices within the iommu_group are bound to their vfio bus driver.",
            4,
        )
        .unwrap();
        assert_eq!((e.group, e.address), (None, None));
        assert!(error_line("I get an error when I start it", 1).is_none());
    }

    #[test]
    fn versions() {
        assert_eq!(
            version_after("Using library: libvirt 8.0.0", &["Using library: libvirt "]).as_deref(),
            Some("8.0.0")
        );
        assert_eq!(
            version_after(
                "QEMU emulator version 6.2.0 (Debian 1:6.2+dfsg-2ubuntu6.15)",
                &["QEMU emulator version "]
            )
            .as_deref(),
            Some("6.2.0")
        );
        assert_eq!(version_after("libvirt is great", &["libvirt "]), None);
        assert!(looks_like_kernel_release("6.1.0-18-amd64"));
        assert!(!looks_like_kernel_release("6 cores"));
        assert_eq!(
            uname_a("Linux pve 6.8.12-4-pve #1 SMP PREEMPT_DYNAMIC").as_deref(),
            Some("6.8.12-4-pve")
        );
    }
}
