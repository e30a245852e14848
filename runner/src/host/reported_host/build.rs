//! A reporter's host as an L1 topology: each reported endpoint becomes an
//! emulated function of the same kind, at the reporter's address where
//! QEMU and the firmware can put it, and elsewhere (said in the map) where not.
//!
//! Root bus: a reported slot keeps its number unless L1 uses it (q35's
//! host bridge at 00, the lab's 9p shares at 02 and 03, ICH9 at 1f).
//! Bus N: one reported device in slot 0 sits behind a `pcie-root-port`
//! (without ACS where the report groups a bridge with it, so that L1's
//! kernel does the same); several slots sit behind a conventional
//! `pci-bridge` (which groups itself and what is behind it).
//! Bridges take free root-bus slots in the order of their buses, and an
//! empty root port with `bus-reserve` before one keeps the numbers below
//! N, so that the firmware gives it bus N.

use std::collections::BTreeMap;

use lab::pci::listing::{ReportedFunction, ReportedHost};
use lab::PciAddress;

use super::{LabHost, MappedFunction};
use crate::host::topology::{Bridge, IommuModel, RootPort, Slot, Topology};

/// Root-bus slots L1 has for itself.
const TAKEN: &[u8] = &[0x00, 0x02, 0x03, 0x1f];

/// The QEMU device that stands in for a reported function, by its class,
/// and that device's ids: (spec, vendor:device, class). `grouped`: the
/// report puts it in a group with other endpoints.
pub fn stand_in(class: u32, grouped: bool, nth: usize) -> (String, &'static str, u32) {
    match class >> 8 {
        0x0300..=0x03ff => ("bochs-display".into(), "1234:1111", 0x038000),
        0x0403 => ("ich9-intel-hda".into(), "8086:293e", 0x040300),
        0x0c03 => ("qemu-xhci".into(), "1b36:000d", 0x0c0330),
        // The kernel's ACS quirk for Intel NICs isolates an e1000e from
        // its slot's other functions (as the reporter's kernel did when the
        // NIC has a group of its own); e1000 keeps a slot's group whole.
        0x0200..=0x02ff if grouped => ("e1000".into(), "8086:100e", 0x020000),
        0x0200..=0x02ff => ("e1000e".into(), "8086:10d3", 0x020000),
        0x0108 => (format!("nvme,serial=mflab{nth}"), "1b36:0010", 0x010802),
        0x0106 => ("ich9-ahci".into(), "8086:2922", 0x010601),
        _ => ("pci-testdev".into(), "1b36:0005", 0x00ff00),
    }
}

fn is_bridge(f: &ReportedFunction) -> bool {
    matches!(f.class >> 8, 0x0604 | 0x0609)
}

/// Host bridges are the machine's own (q35 has its own at 00:00.0).
fn is_host_bridge(f: &ReportedFunction) -> bool {
    f.class >> 8 == 0x0600
}

/// One reported device: the functions of one bus:slot.
struct Device<'a> {
    address: PciAddress,
    functions: Vec<&'a ReportedFunction>,
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(
        "{0}: the report has {1} devices and bridges for L1's root bus, which has room for {2}"
    )]
    RootBusFull(String, usize, usize),
    #[error("{0}: no endpoint to build (only host bridges and PCI bridges are listed)")]
    NoEndpoint(String),
}

pub fn build(name: &str, host: &ReportedHost) -> Result<LabHost, BuildError> {
    let mut devices: Vec<Device> = Vec::new();
    let mut endpoints: Vec<&ReportedFunction> = host
        .functions
        .iter()
        .filter(|f| !is_bridge(f) && !is_host_bridge(f))
        .collect();
    endpoints.sort_by_key(|f| f.address);
    for f in endpoints {
        match devices.last_mut() {
            Some(d) if d.address.same_slot(f.address) => d.functions.push(f),
            _ => devices.push(Device {
                address: f.address.function0(),
                functions: vec![f],
            }),
        }
    }
    if devices.is_empty() {
        return Err(BuildError::NoEndpoint(name.into()));
    }
    let groups = host.groups();
    let group_of = |a: PciAddress| groups.iter().find(|(_, m)| m.contains(&a)).map(|(g, _)| *g);
    // A reported bridge in the same group as an endpoint of bus N.
    let bridge_grouped_with = |bus: u8| {
        host.functions.iter().filter(|f| is_bridge(f)).any(|b| {
            group_of(b.address).is_some_and(|g| {
                groups[&g]
                    .iter()
                    .any(|a| a.bus == bus && host.function(*a).is_some_and(|f| !is_bridge(f)))
            })
        })
    };

    let mut root_slots: Vec<Slot> = Vec::new();
    let mut moved_root: Vec<&Device> = Vec::new();
    let mut by_bus: BTreeMap<u8, Vec<&Device>> = BTreeMap::new();
    for d in &devices {
        if d.address.bus == 0 {
            if TAKEN.contains(&d.address.slot) {
                moved_root.push(d);
            } else {
                root_slots.push(Slot {
                    addr: d.address.slot,
                    functions: Vec::new(),
                });
            }
        } else {
            by_bus.entry(d.address.bus).or_default().push(d);
        }
    }
    let mut free: Vec<u8> = (0..=0x1f)
        .filter(|s| !TAKEN.contains(s) && !root_slots.iter().any(|r| r.addr == *s))
        .collect();
    // Bridges need one slot each, plus one for each gap in bus numbers.
    let mut next_bus = 1u32;
    let mut plan: Vec<(u8, Option<u8>)> = Vec::new(); // (bus, padding reserve before it)
    for &bus in by_bus.keys() {
        let pad = (bus as u32 > next_bus).then(|| (bus as u32 - next_bus - 1) as u8);
        plan.push((bus, pad));
        next_bus = bus as u32 + 1;
    }
    let bridge_slots = plan.len() + plan.iter().filter(|(_, p)| p.is_some()).count();
    if bridge_slots + moved_root.len() > free.len() {
        return Err(BuildError::RootBusFull(
            name.into(),
            root_slots.len() + bridge_slots + moved_root.len(),
            free.len() + root_slots.len(),
        ));
    }
    // Moved root-bus devices take the highest free slots; bridges the
    // lowest, in bus order (which is what gives them their numbers).
    let moved_slots: Vec<u8> = free.split_off(free.len() - moved_root.len());
    let mut free = free.into_iter();

    let mut t = Topology {
        name: name.into(),
        description: format!("built from {name} ({})", host.source),
        iommu: IommuModel::Intel,
        slot: Vec::new(),
        bridge: Vec::new(),
        root_port: Vec::new(),
        switch: Vec::new(),
        expect_groups: Vec::new(),
        option_roms: false,
        links: Vec::new(),
    };
    let mut map: Vec<MappedFunction> = Vec::new();
    let mut nth = 0usize;
    let endpoint_ids: Vec<PciAddress> = devices
        .iter()
        .flat_map(|d| d.functions.iter().map(|f| f.address))
        .collect();
    let grouped = |a: PciAddress| {
        group_of(a).is_some_and(|g| {
            groups[&g]
                .iter()
                .any(|m| *m != a && endpoint_ids.contains(m))
        })
    };
    let mut fillers: Vec<PciAddress> = Vec::new();
    let mut place =
        |d: &Device, lab_slot: PciAddress, why: Option<String>, map: &mut Vec<MappedFunction>| {
            let packed = !d.functions.iter().any(|f| f.address.function == 0);
            let width = if packed {
                d.functions.len()
            } else {
                d.functions
                    .iter()
                    .map(|f| f.address.function as usize + 1)
                    .max()
                    .unwrap_or(1)
            };
            let mut specs = vec![String::new(); width];
            for (i, f) in d.functions.iter().enumerate() {
                let function = if packed { i as u8 } else { f.address.function };
                nth += 1;
                let (spec, ids, class) = stand_in(f.class, grouped(f.address), nth);
                let lab = PciAddress {
                    function,
                    ..lab_slot
                };
                let why = why.clone().or_else(|| {
                    packed.then(|| {
                        "the report has no function 0 in this slot; its functions are packed from 0"
                            .into()
                    })
                });
                map.push(MappedFunction {
                    reported: f.address,
                    lab,
                    reported_ids: format!("{:04x}:{:04x}", f.vendor, f.device),
                    reported_class: format!("{:#08x}", f.class),
                    description: f.description.clone(),
                    device: spec.split(',').next().unwrap_or("").to_string(),
                    lab_ids: ids.into(),
                    lab_class: format!("{class:#08x}"),
                    why: if lab == f.address { None } else { why },
                });
                specs[function as usize] = spec;
            }
            // A gap in the reported function numbers is filled, or the
            // functions after it would not be there for the kernel.
            for (function, s) in specs.iter_mut().enumerate() {
                if s.is_empty() {
                    *s = "pci-testdev".into();
                    fillers.push(PciAddress {
                        function: function as u8,
                        ..lab_slot
                    });
                }
            }
            specs
        };
    for d in devices
        .iter()
        .filter(|d| d.address.bus == 0 && !TAKEN.contains(&d.address.slot))
    {
        let specs = place(d, d.address, None, &mut map);
        let slot = root_slots
            .iter_mut()
            .find(|s| s.addr == d.address.slot)
            .expect("listed");
        slot.functions = specs;
    }
    for (d, lab_slot) in moved_root.iter().zip(moved_slots) {
        let why = format!(
            "slot {:02x} of L1's root bus is {}",
            d.address.slot,
            match d.address.slot {
                0x00 => "q35's host bridge",
                0x1f => "q35's ICH9 (LPC, SATA, SMBus)",
                _ => "one of the lab's 9p shares",
            }
        );
        let specs = place(d, PciAddress::new(0, 0, lab_slot, 0), Some(why), &mut map);
        root_slots.push(Slot {
            addr: lab_slot,
            functions: specs,
        });
    }
    root_slots.sort_by_key(|s| s.addr);
    t.slot = root_slots;
    for (bus, pad) in plan {
        if let Some(reserve) = pad {
            t.root_port.push(RootPort {
                addr: free.next().expect("counted"),
                bus_reserve: reserve,
                disable_acs: false,
                functions: Vec::new(),
            });
        }
        let on_bus = &by_bus[&bus];
        let addr = free.next().expect("counted");
        let conventional = on_bus.len() > 1 || on_bus[0].address.slot != 0;
        if conventional {
            let mut bridge = Bridge {
                addr,
                slot: Vec::new(),
            };
            for d in on_bus {
                let specs = place(d, d.address, None, &mut map);
                bridge.slot.push(Slot {
                    addr: d.address.slot,
                    functions: specs,
                });
            }
            t.bridge.push(bridge);
        } else {
            let specs = place(on_bus[0], on_bus[0].address, None, &mut map);
            t.root_port.push(RootPort {
                addr,
                bus_reserve: 0,
                disable_acs: bridge_grouped_with(bus),
                functions: specs,
            });
        }
    }
    // Reported groups, endpoints only, at their lab addresses.
    let lab_of = |a: PciAddress| map.iter().find(|m| m.reported == a).map(|m| m.lab);
    let mut reported_groups = Vec::new();
    for members in groups.values() {
        let endpoints: Vec<PciAddress> = members
            .iter()
            .copied()
            .filter(|a| lab_of(*a).is_some())
            .collect();
        if !endpoints.is_empty() {
            let mut lab: Vec<PciAddress> = endpoints.iter().filter_map(|a| lab_of(*a)).collect();
            lab.sort();
            t.expect_groups.push(lab);
            reported_groups.push(endpoints);
        }
    }
    let mut bridge_notes: Vec<String> = groups
        .iter()
        .filter_map(|(g, members)| {
            let bridges: Vec<String> = members
                .iter()
                .filter(|a| host.function(**a).is_some_and(is_bridge))
                .map(|a| a.to_string())
                .collect();
            let ends: Vec<String> = members.iter().filter(|a| lab_of(**a).is_some()).map(|a| a.to_string()).collect();
            (!bridges.is_empty() && !ends.is_empty()).then(|| {
                format!(
                    "reported group {g} holds bridge {} beside {}: bridges are not compared (the lab's port in front of them has no ACS, as the group says)",
                    bridges.join(", "),
                    ends.join(", ")
                )
            })
        })
        .collect();
    if !fillers.is_empty() {
        let list: Vec<String> = fillers.iter().map(|a| a.to_string()).collect();
        bridge_notes.push(format!(
            "{} not in the report: pci-testdev fillers, so that the kernel finds the reported function numbers after a gap",
            list.join(", ")
        ));
    }
    map.sort_by_key(|m| m.reported);
    Ok(LabHost {
        topology: t,
        map,
        reported_groups,
        bridge_notes,
    })
}
