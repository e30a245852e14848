//! L1's part of the link proof ([`lab::protocol::link`]): L1's own NIC at
//! the far end of the link the assigned NIC is wired to, its frame
//! counters while L2 runs, and after teardown each restored function put
//! to use.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use lab::protocol::link::{LinkOutcome, LinkRequest, UseProof, PEER_ADDRESS};
use lab::protocol::RunOutcome;
use lab::PciAddress;

use super::l1_state::SYSFS;
use super::L1Error;

const BUSYBOX: &str = "/bin/busybox";

fn pci_dir(address: PciAddress) -> PathBuf {
    Path::new(SYSFS)
        .join("bus/pci/devices")
        .join(address.to_string())
}

/// The network interface a PCI function's driver made, waiting up to
/// `wait` for it (a driver just bound registers it a moment later).
fn interface_of(address: PciAddress, wait: Duration) -> Option<String> {
    let start = Instant::now();
    loop {
        let found = std::fs::read_dir(pci_dir(address).join("net"))
            .ok()
            .and_then(|mut d| d.next())
            .and_then(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned());
        if found.is_some() || start.elapsed() >= wait {
            return found;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// busybox's `ip`: busybox-static is what L1 already needs (its
/// initramfs is built from it), where iproute2 may be missing on a host.
fn ip(args: &[&str]) -> Result<(), L1Error> {
    let command = format!("ip {}", args.join(" "));
    let out = match Command::new(BUSYBOX).arg("ip").args(args).output() {
        Ok(out) => out,
        Err(source) => return Err(L1Error::Spawn { command, source }),
    };
    if out.status.success() {
        Ok(())
    } else {
        Err(L1Error::Command {
            command,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

/// Whether the interface has a carrier, waiting up to `wait`: an e1000's
/// link comes up a moment after the interface does, and what is sent
/// before is lost.
fn carrier(interface: &str, wait: Duration) -> bool {
    let start = Instant::now();
    loop {
        let up = std::fs::read_to_string(format!("/sys/class/net/{interface}/carrier"))
            .is_ok_and(|c| c.trim() == "1");
        if up || start.elapsed() >= wait {
            return up;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn counter(interface: &str, name: &str) -> u64 {
    std::fs::read_to_string(format!("/sys/class/net/{interface}/statistics/{name}"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// L1's NIC at the far end, up with [`PEER_ADDRESS`], and its counters
/// when it came up.
pub struct PeerLink {
    pub request: LinkRequest,
    interface: String,
    rx0: u64,
    tx0: u64,
}

impl PeerLink {
    pub fn up(request: &LinkRequest) -> Result<PeerLink, L1Error> {
        let interface = interface_of(request.peer, Duration::from_secs(3))
            .ok_or(L1Error::NoInterface { peer: request.peer })?;
        ip(&["addr", "flush", "dev", &interface])?;
        ip(&[
            "addr",
            "add",
            &format!("{PEER_ADDRESS}/24"),
            "dev",
            &interface,
        ])?;
        ip(&["link", "set", &interface, "up"])?;
        if !carrier(&interface, Duration::from_secs(10)) {
            return Err(L1Error::NoCarrier {
                interface,
                peer: request.peer,
            });
        }
        Ok(PeerLink {
            request: request.clone(),
            rx0: counter(&interface, "rx_packets"),
            tx0: counter(&interface, "tx_packets"),
            interface,
        })
    }

    /// Frames in and out since it came up.
    pub fn frames(&self) -> (u64, u64) {
        (
            counter(&self.interface, "rx_packets").saturating_sub(self.rx0),
            counter(&self.interface, "tx_packets").saturating_sub(self.tx0),
        )
    }

    pub fn down(self) {
        let _ = ip(&["addr", "flush", "dev", &self.interface]);
        let _ = ip(&["link", "set", &self.interface, "down"]);
    }
}

/// The type of the IOMMU domain of the first assigned function's group,
/// read while vfio-pci holds it (`DMA`, `DMA-FQ`, `identity`).
pub fn iommu_domain(assigned: &[PciAddress]) -> Option<String> {
    let first = assigned.first()?;
    std::fs::read_to_string(pci_dir(*first).join("iommu_group/type"))
        .ok()
        .map(|t| t.trim().to_string())
}

/// What L2's run showed: its report's link line and the peer's frames.
pub fn after_l2(peer: &PeerLink, iommu_domain: Option<String>, l2_report: &str) -> LinkOutcome {
    let (peer_rx, peer_tx) = peer.frames();
    LinkOutcome {
        l2: lab::protocol::link::parse_l2_link(l2_report),
        peer_rx,
        peer_tx,
        iommu_domain,
        restored_use: Vec::new(),
    }
}

/// After teardown: each restored function that has a use test, used.
/// A NIC sends ARP requests for the peer out of its own interface (the
/// reply can only come back over the link); an audio function must have
/// registered its ALSA card again.
pub fn use_restored(peer: &PeerLink, restored: &[(PciAddress, u32)]) -> Vec<UseProof> {
    restored
        .iter()
        .filter(|(a, _)| *a != peer.request.peer)
        .filter_map(|&(function, class)| match class >> 8 {
            0x0200 => Some(arping(function)),
            0x0403 => Some(sound_card(function)),
            _ => None,
        })
        .collect()
}

fn arping(function: PciAddress) -> UseProof {
    let proof = |worked, detail: String| UseProof {
        function,
        how: "arping".into(),
        worked,
        detail,
    };
    let Some(interface) = interface_of(function, Duration::from_secs(5)) else {
        return proof(false, "its driver made no network interface".into());
    };
    if let Err(e) = ip(&["link", "set", &interface, "up"]) {
        return proof(false, e.to_string());
    }
    if !carrier(&interface, Duration::from_secs(10)) {
        let _ = ip(&["link", "set", &interface, "down"]);
        return proof(
            false,
            format!("{interface} came up without a carrier within 10 s"),
        );
    }
    // Duplicate-address-detection probes (busybox's `arping -D`: sender
    // 0.0.0.0): L1 answers a probe for its own address even when the
    // asker is another of its interfaces, where it drops a request whose
    // sender is one of its own addresses. `-I` sends out of this
    // interface whatever the routes say; "Received N response(s)" counts
    // the replies.
    let out = Command::new(BUSYBOX)
        .args([
            "arping",
            "-D",
            "-c",
            "3",
            "-w",
            "6",
            "-I",
            &interface,
            PEER_ADDRESS,
        ])
        .output();
    let _ = ip(&["addr", "flush", "dev", &interface]);
    let _ = ip(&["link", "set", &interface, "down"]);
    let text = match out {
        Ok(o) => String::from_utf8_lossy(&o.stdout).into_owned(),
        Err(e) => return proof(false, format!("busybox arping: {e}")),
    };
    let replies = text
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("Received ")?
                .split_whitespace()
                .next()?
                .parse::<u32>()
                .ok()
        })
        .unwrap_or(0);
    proof(
        replies > 0,
        format!(
            "{interface} sent ARP probes for the peer's address and got {replies} {}",
            if replies == 1 { "reply" } else { "replies" }
        ),
    )
}

fn sound_card(function: PciAddress) -> UseProof {
    let dir = pci_dir(function).join("sound");
    let start = Instant::now();
    let card = loop {
        let card = std::fs::read_dir(&dir).ok().and_then(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .find(|n| n.starts_with("card"))
        });
        if card.is_some() || start.elapsed() > Duration::from_secs(5) {
            break card;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    UseProof {
        function,
        how: "alsa".into(),
        worked: card.is_some(),
        detail: match card {
            Some(c) => format!("its driver registered ALSA {c} again"),
            None => "no ALSA card came back for it".into(),
        },
    }
}

/// After teardown: the restored functions (address, class) used, the far
/// end down, and the proof's verdict in the run's outcome. A proof that
/// did not hold is the run's failure (the system's, not the lab's), in
/// words that name what did not work.
pub fn conclude(
    peer: PeerLink,
    mut link: LinkOutcome,
    restored: &[(PciAddress, u32)],
    out: &mut RunOutcome,
) {
    link.restored_use = use_restored(&peer, restored);
    let why = link
        .failure(&peer.request)
        .map(|w| format!("link proof: {w}"))
        .or_else(|| {
            link.restored_use
                .iter()
                .find(|u| !u.worked)
                .map(|u| format!("restore by use: {} ({}): {}", u.function, u.how, u.detail))
        });
    peer.down();
    if out.error.is_none() {
        out.error = why;
    }
    out.link = Some(link);
}

/// The functions a run took from a host driver (on one before, on
/// vfio-pci during), with their classes: what teardown gave back.
pub fn taken_from_host(out: &RunOutcome) -> Vec<(PciAddress, u32)> {
    out.l1_during
        .iter()
        .filter(|d| d.driver.as_deref() == Some(lab::pci::view::VFIO_DRIVER))
        .filter_map(|d| {
            let before = out.l1_before.iter().find(|b| b.bdf == d.bdf)?;
            let driver = before.driver.as_deref()?;
            if driver == lab::pci::view::VFIO_DRIVER {
                return None;
            }
            let class = u32::from_str_radix(before.class.trim_start_matches("0x"), 16).ok()?;
            Some((d.bdf, class))
        })
        .collect()
}
