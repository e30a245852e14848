//! What the reporter's host is using: network interfaces (`ip -br addr`,
//! `ip addr`/`ip link`, `ls -l /sys/class/net`) and the device holding `/`
//! (`findmnt /`, `df /`, `lsblk`, `ls -l /sys/block`).

use serde::Serialize;

use super::{Lines, Paste};
use crate::pci::address::PciAddress;

/// A network interface the paste shows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Interface {
    pub name: String,
    pub up: bool,
    /// IPv4 and IPv6 addresses with their prefix, as `ip` prints them.
    pub addresses: Vec<String>,
    /// The bridge or bond it is a port of (`ip link`'s `master br0`).
    pub master: Option<String>,
    /// Its PCI function: from `/sys/class/net` when pasted, else from a
    /// predictable name (`enp3s0f1` is 0000:03:00.1).
    pub pci: Option<PciAddress>,
    pub line: usize,
}

impl Interface {
    /// Up with an address of its own or through the bridge it is a port of.
    pub fn carries_traffic<'a>(&'a self, all: &'a [Interface]) -> Option<&'a Interface> {
        if !self.up {
            return None;
        }
        if !self.addresses.is_empty() {
            return Some(self);
        }
        let master = all.iter().find(|i| Some(&i.name) == self.master.as_ref())?;
        (master.up && !master.addresses.is_empty()).then_some(master)
    }
}

/// The block device holding `/`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RootFs {
    /// `/dev/nvme0n1p2`, or the lsblk name.
    pub source: String,
    /// The whole disk: `nvme0n1`, `sda`; `None` for a mapper or md device
    /// whose disk the paste does not show.
    pub disk: Option<String>,
    /// The controller, when `ls -l /sys/block` shows the disk's path.
    pub controller: Option<PciAddress>,
    pub line: usize,
}

pub(super) fn read(lines: &Lines, owned: &mut [bool], paste: &mut Paste) {
    let mut interfaces: Vec<Interface> = Vec::new();
    let mut sysfs_net: Vec<(String, PciAddress)> = Vec::new();
    let mut sysfs_block: Vec<(String, PciAddress)> = Vec::new();
    let mut root: Option<RootFs> = None;
    // lsblk: the top-level disk of the tree being read.
    let mut lsblk_disk: Option<String> = None;
    let mut current: Option<usize> = None;
    for (i, owned) in owned.iter_mut().enumerate() {
        if *owned {
            current = None;
            continue;
        }
        let line = lines.get(i);
        let body = line.trim();
        let mut took = true;
        if let Some(iface) = ip_link_line(body, i + 1) {
            current = Some(interfaces.len());
            push_interface(&mut interfaces, iface);
        } else if let (Some(c), Some(address)) = (current, inet_line(body)) {
            interfaces[c].addresses.push(address);
        } else if let Some(iface) = ip_brief_line(body, i + 1) {
            current = None;
            push_interface(&mut interfaces, iface);
        } else if let Some((name, pci, kind)) = sysfs_link(body) {
            match kind {
                "net" => sysfs_net.push((name, pci)),
                _ => sysfs_block.push((name, pci)),
            }
        } else if let Some(source) = mount_line(body) {
            root = Some(RootFs {
                disk: disk_of(&source),
                source,
                controller: None,
                line: i + 1,
            });
        } else if let Some((name, top_level, mountpoint)) = lsblk_line(line) {
            if top_level {
                lsblk_disk = Some(name.clone());
            }
            if mountpoint == Some("/") && root.is_none() {
                root = Some(RootFs {
                    disk: lsblk_disk.clone().or_else(|| disk_of(&name)),
                    source: name,
                    controller: None,
                    line: i + 1,
                });
            }
        } else {
            took = false;
            if !line.starts_with(char::is_whitespace) {
                current = None;
            }
        }
        *owned |= took;
    }
    for iface in &mut interfaces {
        iface.pci = sysfs_net
            .iter()
            .find(|(n, _)| *n == iface.name)
            .map(|(_, a)| *a)
            .or_else(|| predictable_name_address(&iface.name));
    }
    if let Some(root) = &mut root {
        root.controller = sysfs_block
            .iter()
            .find(|(n, _)| Some(n) == root.disk.as_ref())
            .map(|(_, a)| *a);
    }
    paste.interfaces = interfaces;
    paste.root = root;
}

/// A later line about the same interface adds to it.
fn push_interface(all: &mut Vec<Interface>, new: Interface) {
    match all.iter_mut().find(|i| i.name == new.name) {
        Some(old) => {
            old.up |= new.up;
            old.addresses.extend(new.addresses);
            old.master = old.master.take().or(new.master);
        }
        None => all.push(new),
    }
}

const STATES: &[&str] = &[
    "UP",
    "DOWN",
    "UNKNOWN",
    "LOWERLAYERDOWN",
    "DORMANT",
    "NOTPRESENT",
];

/// `enp3s0f0   UP   192.168.1.20/24 fe80::1/64` (`ip -br addr`), or
/// `ip -br link`'s `enp3s0f0 UP 1c:1b:0d:2c:3d:4e <BROADCAST,…>`.
fn ip_brief_line(body: &str, line: usize) -> Option<Interface> {
    let mut words = body.split_whitespace();
    let name = words.next()?;
    let state = words.next()?;
    if !STATES.contains(&state)
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "@._-".contains(c))
    {
        return None;
    }
    let name = name.split('@').next()?.to_string();
    let addresses = words
        .filter(|w| w.contains('/') && (w.contains('.') || w.contains(':')))
        .map(str::to_string)
        .collect();
    Some(Interface {
        name,
        up: state == "UP" || state == "UNKNOWN",
        addresses,
        master: None,
        pci: None,
        line,
    })
}

/// `2: enp3s0: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc … master br0 state UP …`.
fn ip_link_line(body: &str, line: usize) -> Option<Interface> {
    let (index, rest) = body.split_once(": ")?;
    if index.is_empty() || !index.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let (name, rest) = rest.split_once(": ")?;
    let flags = rest.strip_prefix('<')?.split_once('>')?.0;
    let words: Vec<&str> = rest.split_whitespace().collect();
    let after = |key: &str| {
        words
            .iter()
            .position(|w| *w == key)
            .and_then(|p| words.get(p + 1))
            .map(|s| s.to_string())
    };
    let state = after("state");
    let up = match state.as_deref() {
        Some("UP") => true,
        Some("UNKNOWN") | None => flags.split(',').any(|f| f == "UP"),
        Some(_) => false,
    };
    Some(Interface {
        name: name.split('@').next()?.to_string(),
        up,
        addresses: Vec::new(),
        master: after("master"),
        pci: None,
        line,
    })
}

/// `inet 192.168.1.20/24 brd … scope global enp3s0f0`: the address.
fn inet_line(body: &str) -> Option<String> {
    let mut words = body.split_whitespace();
    match words.next()? {
        "inet" | "inet6" => words.next().map(str::to_string),
        _ => None,
    }
}

/// `enp3s0 -> ../../devices/pci0000:00/0000:00:1c.0/0000:03:00.0/net/enp3s0`
/// (or `/block/nvme0n1`, `/nvme/nvme0/nvme0n1`): the name, the last PCI
/// function on the path, and `net` or `block`.
fn sysfs_link(body: &str) -> Option<(String, PciAddress, &'static str)> {
    let (_, target) = body.split_once(" -> ")?;
    let target = target.split_whitespace().next()?;
    let parts: Vec<&str> = target.split('/').collect();
    let pci = parts.iter().rev().find_map(|p| {
        (p.len() == 12)
            .then(|| p.parse::<PciAddress>().ok())
            .flatten()
    })?;
    let name = parts.last()?.to_string();
    let kind = if target.contains("/net/") {
        "net"
    } else if ["/block/", "/nvme/", "/ata", "/host"]
        .iter()
        .any(|k| target.contains(k))
    {
        "block"
    } else {
        return None;
    };
    Some((name, pci, kind))
}

/// `/      /dev/nvme0n1p2 ext4   rw,relatime` (`findmnt /`) or
/// `/dev/sda2  98G  40G  53G  43% /` (`df /`): the source of `/`.
fn mount_line(body: &str) -> Option<String> {
    let words: Vec<&str> = body.split_whitespace().collect();
    match words.as_slice() {
        ["/", source, ..] if source.starts_with("/dev/") => Some(source.to_string()),
        [source, .., "/"] if source.starts_with("/dev/") && words.len() >= 5 => {
            Some(source.to_string())
        }
        _ => None,
    }
}

/// `├─nvme0n1p2 259:2  0 476G  0 part /`: the name (tree drawing
/// removed), whether it is a top-level disk, and the mount point.
fn lsblk_line(line: &str) -> Option<(String, bool, Option<&str>)> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let majmin = words.get(1)?;
    let (major, minor) = majmin.split_once(':')?;
    if major.is_empty()
        || !major.bytes().all(|c| c.is_ascii_digit())
        || !minor.bytes().all(|c| c.is_ascii_digit())
    {
        return None;
    }
    let raw = words[0];
    let name = raw.trim_start_matches(|c: char| "├└│─|`- ".contains(c));
    if name.is_empty() {
        return None;
    }
    let top_level = name.len() == raw.len() && !line.starts_with(char::is_whitespace);
    let mountpoint = words.iter().skip(6).find(|w| w.starts_with('/')).copied();
    Some((name.to_string(), top_level, mountpoint))
}

/// The whole disk of a partition: `nvme0n1p2` -> `nvme0n1`, `sda2` -> `sda`.
fn disk_of(source: &str) -> Option<String> {
    let name = source.trim_start_matches("/dev/");
    if name.starts_with("mapper/") || name.starts_with("dm-") || name.starts_with("md") {
        return None;
    }
    if let Some(rest) = name.strip_prefix("nvme") {
        let disk_len = rest.find('p').map_or(rest.len(), |p| p);
        return Some(format!("nvme{}", &rest[..disk_len]));
    }
    if name.starts_with("sd") || name.starts_with("vd") || name.starts_with("hd") {
        return Some(
            name.trim_end_matches(|c: char| c.is_ascii_digit())
                .to_string(),
        );
    }
    if let Some(rest) = name.strip_prefix("mmcblk") {
        let disk_len = rest.find('p').unwrap_or(rest.len());
        return Some(format!("mmcblk{}", &rest[..disk_len]));
    }
    None
}

/// systemd's predictable names for PCI: `en` or `wl`, then `P<domain>`,
/// `p<bus>s<slot>`, `f<function>` (decimal), maybe `n…`/`d…`/`u…` after
/// (`wlp13s0f3u4` is a USB stick on the USB controller 0000:0d:00.3).
pub(crate) fn predictable_name_address(name: &str) -> Option<PciAddress> {
    let rest = name
        .strip_prefix("en")
        .or_else(|| name.strip_prefix("wl"))
        .or_else(|| name.strip_prefix("ww"))?;
    let number = |s: &str| -> (Option<u32>, usize) {
        let n = s.bytes().take_while(u8::is_ascii_digit).count();
        (s[..n].parse().ok(), n)
    };
    let (domain, rest) = match rest.strip_prefix('P') {
        Some(r) => {
            let (d, n) = number(r);
            (d?, &r[n..])
        }
        None => (0, rest),
    };
    let rest = rest.strip_prefix('p')?;
    let (bus, n) = number(rest);
    let rest = rest[n..].strip_prefix('s')?;
    let (slot, n) = number(rest);
    let rest = &rest[n..];
    let (function, rest) = match rest.strip_prefix('f') {
        Some(r) => {
            let (f, n) = number(r);
            (f?, &r[n..])
        }
        None => (0, rest),
    };
    // `n…` (port name) and `d…` (dev_port) name the same function; `u…`
    // is a USB device on the USB controller this address names.
    if !(rest.is_empty() || rest.starts_with(['n', 'd', 'u'])) {
        return None;
    }
    let (bus, slot) = (bus?, slot?);
    if domain > 0xffff || bus > 0xff || slot > 0x1f || function > 7 {
        return None;
    }
    Some(PciAddress::new(
        domain as u16,
        bus as u8,
        slot as u8,
        function as u8,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> PciAddress {
        s.parse().unwrap()
    }

    #[test]
    fn predictable_names() {
        assert_eq!(predictable_name_address("enp3s0f1"), Some(a("03:00.1")));
        assert_eq!(predictable_name_address("enp0s31f6"), Some(a("00:1f.6")));
        assert_eq!(
            predictable_name_address("enP1p3s0"),
            Some(a("0001:03:00.0"))
        );
        assert_eq!(predictable_name_address("wlp2s0"), Some(a("02:00.0")));
        assert_eq!(predictable_name_address("enp5s0np0"), Some(a("05:00.0")));
        assert_eq!(predictable_name_address("wlp13s0f3u4"), Some(a("0d:00.3")));
        assert_eq!(predictable_name_address("eno1"), None);
        assert_eq!(predictable_name_address("ens1f0"), None);
        assert_eq!(predictable_name_address("eth0"), None);
    }

    #[test]
    fn ip_lines() {
        let i = ip_brief_line(
            "enp3s0f0         UP             192.168.1.20/24 fe80::1e1b:dff:fe2c:3d4e/64",
            4,
        )
        .unwrap();
        assert!(i.up);
        assert_eq!(i.addresses.len(), 2);
        let i = ip_brief_line("enp3s0f1         DOWN", 5).unwrap();
        assert!(!i.up && i.addresses.is_empty());
        assert!(ip_brief_line("I am UP all night", 1).is_none());
        let i = ip_link_line("2: enp3s0: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc mq master br0 state UP mode DEFAULT group default qlen 1000", 1).unwrap();
        assert_eq!(
            (i.name.as_str(), i.up, i.master.as_deref()),
            ("enp3s0", true, Some("br0"))
        );
        assert_eq!(
            inet_line("inet 192.168.1.2/24 brd 192.168.1.255 scope global br0").as_deref(),
            Some("192.168.1.2/24")
        );
    }

    #[test]
    fn root_sources() {
        assert_eq!(
            mount_line("/      /dev/nvme0n1p2 ext4   rw,relatime").as_deref(),
            Some("/dev/nvme0n1p2")
        );
        assert_eq!(
            mount_line("/dev/sda2        98G   40G   53G  43% /").as_deref(),
            Some("/dev/sda2")
        );
        assert_eq!(mount_line("TARGET SOURCE FSTYPE OPTIONS"), None);
        assert_eq!(disk_of("/dev/nvme0n1p2").as_deref(), Some("nvme0n1"));
        assert_eq!(disk_of("/dev/sda2").as_deref(), Some("sda"));
        assert_eq!(disk_of("/dev/mapper/vg-root"), None);
        assert_eq!(
            lsblk_line("└─nvme0n1p2 259:2    0 476.4G  0 part /"),
            Some(("nvme0n1p2".into(), false, Some("/")))
        );
        assert_eq!(
            lsblk_line("nvme0n1     259:0    0 476.9G  0 disk "),
            Some(("nvme0n1".into(), true, None))
        );
        let (name, pci, kind) = sysfs_link(
            "nvme0n1 -> ../devices/pci0000:00/0000:00:1d.0/0000:05:00.0/nvme/nvme0/nvme0n1",
        )
        .unwrap();
        assert_eq!(
            (name.as_str(), pci, kind),
            ("nvme0n1", a("05:00.0"), "block")
        );
    }
}
