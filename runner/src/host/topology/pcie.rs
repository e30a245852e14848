//! PCIe in a topology: `pcie-root-port`s and switches (a root port, an
//! `x3130-upstream` port behind it, `xio3130-downstream` ports on its bus),
//! and the bus numbers the firmware gives every bridge.
//!
//! SeaBIOS numbers buses depth first, in slot order on each bus: a bridge
//! takes the next bus number for its secondary bus, its subtree the ones
//! after, and a Red Hat bridge's `bus-reserve` keeps that many more numbers
//! for itself (its subordinate bus is secondary + reserve). Linux keeps the
//! firmware's numbers, so these are the buses L1's kernel shows.

use serde::Deserialize;

use super::{ShapeError, Slot, Topology};
use lab::PciAddress;

/// A `pcie-root-port` on the root bus and the device in slot 0 behind it
/// (a port's link holds one device; its functions share one slot).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RootPort {
    /// The port's slot on the root bus (function 0).
    pub addr: u8,
    /// Bus numbers kept behind the port beyond its own secondary bus, so
    /// that the next bridge's bus is further on.
    #[serde(default)]
    pub bus_reserve: u8,
    /// A port without ACS (`disable-acs=on`): L1's kernel then puts the
    /// port into the group of what is behind it, as on hosts whose root
    /// ports have no ACS.
    #[serde(default)]
    pub disable_acs: bool,
    /// Function i of the device behind the port; none for an empty port.
    #[serde(default)]
    pub functions: Vec<String>,
}

/// A PCIe switch behind a root port at `addr`: its upstream port, then one
/// downstream port (slot k of the upstream port's bus) per entry.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Switch {
    pub addr: u8,
    pub downstream: Vec<Downstream>,
}

/// A downstream port of a switch and the device in slot 0 behind it.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Downstream {
    #[serde(default)]
    pub functions: Vec<String>,
}

/// The secondary bus of every bridge of a topology, as the firmware numbers them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Buses {
    /// `bridge[i]`'s bus.
    pub bridge: Vec<u8>,
    /// `root_port[i]`'s bus (the bus of the device behind it).
    pub root_port: Vec<u8>,
    /// `switch[i]`: the root port's bus, the upstream port's bus, and each
    /// downstream port's bus.
    pub switch: Vec<(u8, u8, Vec<u8>)>,
}

enum OnRoot {
    Bridge(usize),
    RootPort(usize),
    Switch(usize),
}

/// Numbers the buses the way SeaBIOS does (see the module's comment).
pub fn buses(t: &Topology) -> Buses {
    let mut on_root: Vec<(u8, OnRoot)> = Vec::new();
    on_root.extend(
        t.bridge
            .iter()
            .enumerate()
            .map(|(i, b)| (b.addr, OnRoot::Bridge(i))),
    );
    on_root.extend(
        t.root_port
            .iter()
            .enumerate()
            .map(|(i, p)| (p.addr, OnRoot::RootPort(i))),
    );
    on_root.extend(
        t.switch
            .iter()
            .enumerate()
            .map(|(i, s)| (s.addr, OnRoot::Switch(i))),
    );
    on_root.sort_by_key(|(addr, _)| *addr);
    let mut buses = Buses {
        bridge: vec![0; t.bridge.len()],
        root_port: vec![0; t.root_port.len()],
        switch: vec![(0, 0, Vec::new()); t.switch.len()],
    };
    let mut last: u32 = 0;
    let next = |last: &mut u32| {
        *last += 1;
        (*last).min(255) as u8
    };
    for (_, bridge) in on_root {
        match bridge {
            OnRoot::Bridge(i) => buses.bridge[i] = next(&mut last),
            OnRoot::RootPort(i) => {
                let secondary = next(&mut last);
                buses.root_port[i] = secondary;
                last = last.max(secondary as u32 + t.root_port[i].bus_reserve as u32);
            }
            OnRoot::Switch(i) => {
                let port = next(&mut last);
                let upstream = next(&mut last);
                let downstream = t.switch[i]
                    .downstream
                    .iter()
                    .map(|_| next(&mut last))
                    .collect();
                buses.switch[i] = (port, upstream, downstream);
            }
        }
    }
    buses
}

/// Every function of a topology at the address L1's kernel gives it, with
/// its QEMU device spec, in address order.
pub fn functions(t: &Topology) -> Vec<(PciAddress, String)> {
    let b = buses(t);
    let mut out = Vec::new();
    let mut slot = |bus: u8, slot: u8, functions: &[String]| {
        for (f, spec) in functions.iter().enumerate() {
            out.push((PciAddress::new(0, bus, slot, f as u8), spec.clone()));
        }
    };
    for s in &t.slot {
        slot(0, s.addr, &s.functions);
    }
    for (i, bridge) in t.bridge.iter().enumerate() {
        for s in &bridge.slot {
            slot(b.bridge[i], s.addr, &s.functions);
        }
    }
    for (i, port) in t.root_port.iter().enumerate() {
        slot(b.root_port[i], 0, &port.functions);
    }
    for (i, switch) in t.switch.iter().enumerate() {
        for (k, d) in switch.downstream.iter().enumerate() {
            slot(b.switch[i].2[k], 0, &d.functions);
        }
    }
    out.sort_by_key(|(a, _)| *a);
    out
}

/// The bridges of a topology (root ports, switch ports, pci-bridges) at
/// their addresses in L1.
pub fn bridge_addresses(t: &Topology) -> Vec<PciAddress> {
    let b = buses(t);
    let mut out: Vec<PciAddress> = t
        .bridge
        .iter()
        .map(|x| PciAddress::new(0, 0, x.addr, 0))
        .chain(t.root_port.iter().map(|p| PciAddress::new(0, 0, p.addr, 0)))
        .collect();
    for (i, s) in t.switch.iter().enumerate() {
        out.push(PciAddress::new(0, 0, s.addr, 0));
        out.push(PciAddress::new(0, b.switch[i].0, 0, 0));
        for k in 0..s.downstream.len() {
            out.push(PciAddress::new(0, b.switch[i].1, k as u8, 0));
        }
    }
    out.sort();
    out
}

/// Checks what QEMU and the firmware would refuse or misnumber.
pub fn validate(t: &Topology) -> Result<(), ShapeError> {
    for p in &t.root_port {
        if p.functions.len() > 8 {
            return Err(ShapeError::RootPortFunctions(p.addr));
        }
    }
    for s in &t.switch {
        if s.downstream.is_empty() || s.downstream.len() > 32 {
            return Err(ShapeError::SwitchPorts(s.addr));
        }
        if let Some(d) = s.downstream.iter().find(|d| d.functions.len() > 8) {
            return Err(ShapeError::DownstreamFunctions {
                switch: s.addr,
                functions: d.functions.len(),
            });
        }
    }
    let mut used: Vec<u8> = t.slot.iter().map(|s| s.addr).collect();
    used.extend(t.bridge.iter().map(|b| b.addr));
    used.extend(t.root_port.iter().map(|p| p.addr));
    used.extend(t.switch.iter().map(|s| s.addr));
    used.sort();
    if let Some(w) = used.windows(2).find(|w| w[0] == w[1]) {
        return Err(ShapeError::SlotTwice(w[0]));
    }
    if let Some(addr) = used.iter().find(|a| **a > 0x1f) {
        return Err(ShapeError::PastLastSlot(*addr));
    }
    Ok(())
}

impl Topology {
    /// The `-device` arguments of the root ports and switches, and of what is behind them.
    pub(super) fn pcie_args(&self, args: &mut Vec<String>) {
        // Every PCIe port needs a chassis/slot pair of its own.
        let mut chassis = 16;
        let mut port = |args: &mut Vec<String>, driver: &str, id: &str, bus: &str, addr: u8| {
            args.extend([
                "-device".into(),
                format!(
                    "{driver},id={id},bus={bus},addr={addr:#04x},chassis={chassis},slot={chassis}"
                ),
            ]);
            chassis += 1;
        };
        for (i, p) in self.root_port.iter().enumerate() {
            let id = format!("rp{i}");
            port(args, "pcie-root-port", &id, "pcie.0", p.addr);
            let last = args.last_mut().expect("just pushed");
            if p.bus_reserve > 0 {
                last.push_str(&format!(",bus-reserve={}", p.bus_reserve));
            }
            if p.disable_acs {
                last.push_str(",disable-acs=on");
            }
            self.behind_port(args, &id, &p.functions);
        }
        for (i, s) in self.switch.iter().enumerate() {
            let root = format!("sw{i}");
            let up = format!("sw{i}up");
            port(args, "pcie-root-port", &root, "pcie.0", s.addr);
            args.extend([
                "-device".into(),
                format!("x3130-upstream,id={up},bus={root},addr=0x00"),
            ]);
            for (k, d) in s.downstream.iter().enumerate() {
                let id = format!("sw{i}down{k}");
                port(args, "xio3130-downstream", &id, &up, k as u8);
                self.behind_port(args, &id, &d.functions);
            }
        }
    }

    fn behind_port(&self, args: &mut Vec<String>, bus: &str, functions: &[String]) {
        if !functions.is_empty() {
            let slot = Slot {
                addr: 0,
                functions: functions.to_vec(),
            };
            self.slot_args(args, bus, &slot);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::parse;
    use super::*;

    const SWITCH: &str = r#"
description = "x"
[[root_port]]
addr = 0x04
bus_reserve = 2
functions = ["bochs-display", "ich9-intel-hda"]
[[switch]]
addr = 0x05
[[switch.downstream]]
functions = ["bochs-display", "ich9-intel-hda"]
[[switch.downstream]]
functions = ["e1000e"]
[[bridge]]
addr = 0x1e
[[bridge.slot]]
addr = 1
functions = ["e1000"]
"#;

    #[test]
    fn buses_are_numbered_depth_first_in_slot_order_with_reserves() {
        let t = parse("x", SWITCH).unwrap();
        let b = buses(&t);
        // rp 04: bus 1, reserving 2 and 3; switch at 05: 4, upstream 5, downstream 6 and 7; bridge 1e: 8.
        assert_eq!(b.root_port, [1]);
        assert_eq!(b.switch, [(4, 5, vec![6, 7])]);
        assert_eq!(b.bridge, [8]);
        let addresses: Vec<String> = functions(&t).iter().map(|(a, _)| a.to_string()).collect();
        assert_eq!(
            addresses,
            [
                "0000:01:00.0",
                "0000:01:00.1",
                "0000:06:00.0",
                "0000:06:00.1",
                "0000:07:00.0",
                "0000:08:01.0"
            ]
        );
    }

    #[test]
    fn ports_get_unique_chassis_and_devices_sit_behind_them() {
        let args = parse("x", SWITCH).unwrap().device_args();
        let expected = [
            "pcie-root-port,id=rp0,bus=pcie.0,addr=0x04,chassis=16,slot=16,bus-reserve=2",
            "bochs-display,bus=rp0,addr=0x00.0,multifunction=on,romfile=",
            "ich9-intel-hda,bus=rp0,addr=0x00.1,romfile=",
            "pcie-root-port,id=sw0,bus=pcie.0,addr=0x05,chassis=17,slot=17",
            "x3130-upstream,id=sw0up,bus=sw0,addr=0x00",
            "xio3130-downstream,id=sw0down0,bus=sw0up,addr=0x00,chassis=18,slot=18",
            "bochs-display,bus=sw0down0,addr=0x00.0,multifunction=on,romfile=",
            "ich9-intel-hda,bus=sw0down0,addr=0x00.1,romfile=",
            "xio3130-downstream,id=sw0down1,bus=sw0up,addr=0x01,chassis=19,slot=19",
            "e1000e,bus=sw0down1,addr=0x00.0,romfile=",
        ];
        for e in expected {
            assert!(args.contains(&e.to_string()), "{e} not in {args:?}");
        }
        let bridges: Vec<String> = bridge_addresses(&parse("x", SWITCH).unwrap())
            .iter()
            .map(|a| a.to_string())
            .collect();
        assert_eq!(
            bridges,
            [
                "0000:00:04.0",
                "0000:00:05.0",
                "0000:00:1e.0",
                "0000:04:00.0",
                "0000:05:00.0",
                "0000:05:01.0"
            ]
        );
    }

    #[test]
    fn a_root_bus_slot_used_twice_is_refused() {
        let text =
            "description='x'\n[[slot]]\naddr=4\nfunctions=['e1000']\n[[root_port]]\naddr=4\n";
        let err = parse("x", text).unwrap_err().to_string();
        assert!(err.contains("0x04 is used twice"), "{err}");
    }
}
