//! The link proof: an assigned NIC does DMA in L2, through L1's IOMMU, and
//! its functions work on L1 again after teardown.
//!
//! L0's QEMU wires the assigned NIC to a second NIC that L1 keeps (both
//! on one netdev hub, so the link exists only through those two devices).
//! L1 gives its NIC the peer address and counts its frames; L2's init
//! brings its NIC up and pings the peer; after teardown L1 sends ARP
//! requests out of the restored NIC and counts the replies, and looks for
//! the ALSA card of a restored audio function.

use serde::{Deserialize, Serialize};

use crate::PciAddress;

/// L1's end of the link, and L2's.
pub const PEER_ADDRESS: &str = "10.91.0.1";
pub const L2_ADDRESS: &str = "10.91.0.2/24";

/// What the runner asks for (a scenario's `[link]`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkRequest {
    /// L1's NIC on the other end of the link: it stays with L1.
    pub peer: PciAddress,
    /// Echo requests L2 sends.
    #[serde(default = "default_pings")]
    pub pings: u32,
}

fn default_pings() -> u32 {
    5
}

impl LinkRequest {
    /// The word on L2's kernel command line that asks its init for the
    /// proof: `mflab.ping=PEER,SELF,COUNT`.
    pub fn l2_cmdline_word(&self) -> String {
        format!("mflab.ping={PEER_ADDRESS},{L2_ADDRESS},{}", self.pings)
    }
}

/// What L2's init reported: `MFLAB-L2-LINK <iface> <driver> <sent> <received>`,
/// or `MFLAB-L2-LINK - - 0 0` when it found no network interface.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct L2Link {
    /// `None`: L2 had no network interface.
    pub interface: Option<String>,
    /// The driver that bound the assigned function in L2.
    pub driver: Option<String>,
    pub sent: u32,
    pub received: u32,
}

/// The proof, as far as it got.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkOutcome {
    /// L2's side; `None` when L2 never reported it.
    pub l2: Option<L2Link>,
    /// Frames L1's peer NIC received and sent while L2 ran (its counters).
    pub peer_rx: u64,
    pub peer_tx: u64,
    /// The type of the default IOMMU domain of the assigned NIC's group in
    /// L1 (`DMA`, `DMA-FQ`, `identity`), from sysfs: what L1's own drivers
    /// get. While vfio-pci holds the group, VFIO attaches a domain of its
    /// own that maps L2's memory, whatever this says.
    pub iommu_domain: Option<String>,
    /// After teardown: each restored function used on L1.
    pub restored_use: Vec<UseProof>,
}

/// A restored function put to use on L1 after teardown.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UseProof {
    pub function: PciAddress,
    /// What was tried: `arping` (a NIC), `alsa` (an audio function).
    pub how: String,
    pub worked: bool,
    /// One line: replies counted, the card found, or why not.
    pub detail: String,
}

impl LinkOutcome {
    /// Why the DMA round trip is not proven, in words that name what did
    /// not work; `None` when L2 got every reply and the peer saw frames
    /// both ways.
    pub fn failure(&self, request: &LinkRequest) -> Option<String> {
        let Some(l2) = &self.l2 else {
            return Some("L2 did not report its link (no MFLAB-L2-LINK line)".into());
        };
        let Some(interface) = &l2.interface else {
            return Some(
                "L2 has no network interface: the assigned functions gave its kernel no NIC".into(),
            );
        };
        if l2.received < request.pings {
            return Some(format!(
                "L2 sent {} echo requests out of {interface} ({}) and got {} replies; L1's peer {} received {} frames and sent {}",
                l2.sent,
                l2.driver.as_deref().unwrap_or("no driver"),
                l2.received,
                request.peer,
                self.peer_rx,
                self.peer_tx
            ));
        }
        if self.peer_rx == 0 || self.peer_tx == 0 {
            return Some(format!(
                "L2 got its replies but L1's peer {} counted {} frames in and {} out: they did not pass through the link",
                request.peer, self.peer_rx, self.peer_tx
            ));
        }
        None
    }

    /// What was proven, one line for the report.
    pub fn summary(&self) -> String {
        let mut s = match &self.l2 {
            Some(L2Link {
                interface: Some(i),
                driver,
                sent,
                received,
            }) => format!(
                "link: L2's {i} ({}) sent {sent} echo requests, got {received} replies; L1's peer counted {} frames in, {} out; the group's default IOMMU domain in L1: {}",
                driver.as_deref().unwrap_or("no driver"),
                self.peer_rx,
                self.peer_tx,
                self.iommu_domain.as_deref().unwrap_or("unknown")
            ),
            Some(_) => "link: L2 had no network interface".into(),
            None => "link: L2 did not report".into(),
        };
        for u in &self.restored_use {
            s.push_str(&format!(
                "; restored {} by {}: {}",
                u.function, u.how, u.detail
            ));
        }
        s
    }
}

/// Reads L2's `MFLAB-L2-LINK` line from its report.
pub fn parse_l2_link(report: &str) -> Option<L2Link> {
    report.lines().rev().find_map(|line| {
        let rest = line.trim().strip_prefix(super::guest_report::LINK)?;
        let words: Vec<&str> = rest.split_whitespace().collect();
        let [interface, driver, sent, received, ..] = words.as_slice() else {
            return None;
        };
        let name = |w: &str| (w != "-").then(|| w.to_string());
        Some(L2Link {
            interface: name(interface),
            driver: name(driver),
            sent: sent.parse().ok()?,
            received: received
                .trim_end_matches(|c: char| !c.is_ascii_digit())
                .parse()
                .ok()?,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> LinkRequest {
        LinkRequest {
            peer: "0000:00:09.0".parse().unwrap(),
            pings: 5,
        }
    }

    #[test]
    fn l2_lines() {
        let link = parse_l2_link("noise\nMFLAB-L2-LINK eth0 e1000 5 5 #27\n").unwrap();
        assert_eq!(link.interface.as_deref(), Some("eth0"));
        assert_eq!((link.sent, link.received), (5, 5));
        let none = parse_l2_link("MFLAB-L2-LINK - - 0 0\n").unwrap();
        assert_eq!(none.interface, None);
        assert_eq!(parse_l2_link("MFLAB-L2-LINK eth0"), None);
    }

    #[test]
    fn failures_name_what_did_not_work() {
        let mut o = LinkOutcome::default();
        assert!(o.failure(&request()).unwrap().contains("did not report"));
        o.l2 = Some(L2Link::default());
        assert!(o
            .failure(&request())
            .unwrap()
            .contains("no network interface"));
        o.l2 = Some(L2Link {
            interface: Some("eth0".into()),
            driver: Some("e1000".into()),
            sent: 5,
            received: 0,
        });
        let why = o.failure(&request()).unwrap();
        assert!(
            why.contains("got 0 replies") && why.contains("0000:00:09.0"),
            "{why}"
        );
        o.l2.as_mut().unwrap().received = 5;
        o.peer_rx = 6;
        o.peer_tx = 6;
        assert_eq!(o.failure(&request()), None);
    }
}
