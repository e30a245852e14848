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
    let (mut libvirt, mut qemu, mut kernel) = (None, None, None);
    for (i, owned) in owned.iter_mut().enumerate() {
        if *owned {
            continue;
        }
        let body = lines.get(i).trim();
        if let Some(e) = error_line(body, i + 1) {
            *owned = true;
            paste.errors.push(e);
        }
        // Earlier keys are surer: `Running hypervisor: QEMU 6.2.0` names
        // the QEMU that ran, `Using API: QEMU 8.0.0` only libvirt's API.
        if body.starts_with("Using API:") || body.starts_with("Compiled against") {
            continue;
        }
        let libvirt_keys = [
            "Using library: libvirt ",
            "libvirtd (libvirt) ",
            "virsh (libvirt) ",
            "libvirt version: ",
            "libvirt version ",
            "libvirt is ",
            "libvirt ",
        ];
        let qemu_keys = [
            "Running hypervisor: QEMU ",
            "QEMU emulator version ",
            "qemu-kvm version ",
            "QEMU ",
        ];
        let kernel_keys = ["Linux version ", "kernel ", "Kernel "];
        better(&mut libvirt, version_after(body, &libvirt_keys));
        better(&mut qemu, version_after(body, &qemu_keys));
        let kernel_found = version_after(body, &kernel_keys).or_else(|| {
            if after_uname && looks_like_kernel_release(body) {
                Some((0, body.to_string()))
            } else {
                uname_a(body).map(|k| (1, k))
            }
        });
        better(&mut kernel, kernel_found);
        after_uname = body.ends_with("uname -r");
    }
    paste.versions = Versions {
        libvirt: libvirt.map(|(_, v)| v),
        qemu: qemu.map(|(_, v)| v),
        kernel: kernel.map(|(_, v)| v),
    };
}

/// Keeps the version found by the surest key (the lowest index), the
/// first line's among equals.
fn better(kept: &mut Option<(usize, String)>, found: Option<(usize, String)>) {
    if let Some(found) = found {
        if kept.as_ref().is_none_or(|k| found.0 < k.0) {
            *kept = Some(found);
        }
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
/// (Debian 1:6.2+dfsg-2ubuntu6.15)` gives `6.2.0`), with the key's index.
fn version_after(body: &str, keys: &[&str]) -> Option<(usize, String)> {
    keys.iter().enumerate().find_map(|(k, key)| {
        let (_, rest) = body.split_once(key)?;
        let version: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || ".-+_~".contains(*c))
            .collect();
        let version = version.trim_end_matches(['.', '-']);
        let starts_numeric = version.starts_with(|c: char| c.is_ascii_digit());
        (starts_numeric && version.contains('.')).then(|| (k, version.to_string()))
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
        let v = |body: &str, key: &str| version_after(body, &[key]).map(|(_, v)| v);
        assert_eq!(
            v("Using library: libvirt 8.0.0", "Using library: libvirt ").as_deref(),
            Some("8.0.0")
        );
        assert_eq!(
            v(
                "QEMU emulator version 6.2.0 (Debian 1:6.2+dfsg-2ubuntu6.15)",
                "QEMU emulator version "
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
