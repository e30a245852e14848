use lab::pci::listing::parse_listing;
use lab::protocol::FunctionRow;

use super::*;
use crate::host::topology::{self, pcie};

const X79: &str = include_str!("../../../../lab/tests/listings/gpu-audio-groups.txt");
const TURING: &str = include_str!("../../../../lab/tests/listings/turing-one-line.txt");
const NIC: &str = include_str!("../../../../lab/tests/listings/nic-lspci-nn-crlf.txt");

fn built(text: &str) -> LabHost {
    let host = parse_listing("r.txt", text).unwrap();
    build::build("r.txt", &host).unwrap()
}

fn a(s: &str) -> PciAddress {
    s.parse().unwrap()
}

/// The map's lab addresses are where the firmware and kernel put the
/// topology's functions, and the printed file reads back as the same topology.
fn consistent(lab: &LabHost) {
    let placed: Vec<PciAddress> = pcie::functions(&lab.topology)
        .iter()
        .map(|(a, _)| *a)
        .collect();
    for m in &lab.map {
        assert!(placed.contains(&m.lab), "{} not placed: {placed:?}", m.lab);
    }
    let mut again = topology::parse("r.txt", &lab.to_toml()).unwrap();
    again.name = lab.topology.name.clone();
    assert_eq!(again, lab.topology, "{}", lab.to_toml());
}

#[test]
fn a_gpu_behind_a_root_port_keeps_bus_1_and_its_group() {
    let lab = built(X79);
    consistent(&lab);
    assert_eq!(lab.lab_address(a("01:00.0")), Some(a("01:00.0")));
    assert_eq!(lab.lab_address(a("01:00.1")), Some(a("01:00.1")));
    let port = &lab.topology.root_port[0];
    assert_eq!(port.functions, ["bochs-display", "ich9-intel-hda"]);
    assert_eq!(port.bus_reserve, 0);
    assert!(lab
        .topology
        .expect_groups
        .contains(&vec![a("01:00.0"), a("01:00.1")]));
    // The reporter's ICH9 slot is the lab's own: moved, and said why.
    let sata = lab.map.iter().find(|m| m.reported == a("00:1f.2")).unwrap();
    assert_ne!(sata.lab.slot, 0x1f);
    assert_eq!(sata.device, "ich9-ahci");
    assert!(sata.why.as_deref().unwrap().contains("ICH9"));
    // 00:05.0, .2, .4 keep their function numbers (the gaps are filled).
    let s5 = lab.topology.slot.iter().find(|s| s.addr == 5).unwrap();
    assert_eq!(s5.functions.len(), 5);
    // Bridges and host bridges get no stand-in.
    assert_eq!(lab.lab_address(a("00:01.0")), None);
    assert_eq!(lab.lab_address(a("00:00.0")), None);
}

#[test]
fn four_functions_of_a_turing_card_share_one_slot_behind_a_port() {
    let lab = built(TURING);
    consistent(&lab);
    assert_eq!(
        lab.topology.root_port[0].functions,
        [
            "bochs-display",
            "ich9-intel-hda",
            "qemu-xhci",
            "pci-testdev"
        ]
    );
    assert!(lab.moved().next().is_none(), "{:?}", lab.map_lines());
    assert!(lab.reported_groups.contains(&vec![
        a("01:00.0"),
        a("01:00.1"),
        a("01:00.2"),
        a("01:00.3")
    ]));
}

#[test]
fn far_buses_are_reached_with_reserving_ports() {
    let lab = built(NIC);
    consistent(&lab);
    assert_eq!(lab.lab_address(a("c6:00.1")), Some(a("c6:00.1")));
    assert_eq!(lab.lab_address(a("c3:00.0")), Some(a("c3:00.0")));
    let nic = lab.map.iter().find(|m| m.reported == a("c6:00.0")).unwrap();
    assert_eq!(nic.device, "e1000", "a NIC pair stays one group");
    // Port (buses 1..bf), port c0 (the second root complex's IOMMU
    // function), port (c1..c2), port c3 (NVMe), port (c4..c5), port c6.
    let reserves: Vec<u8> = lab
        .topology
        .root_port
        .iter()
        .map(|p| p.bus_reserve)
        .collect();
    assert_eq!(reserves, [0xc0 - 2, 0, 1, 0, 1, 0]);
    // The reported IOMMU functions at 00:00.2 and c0:00.2 sit elsewhere.
    assert!(lab.moved().any(|m| m.reported == a("00:00.2")));
}

#[test]
fn only_moved_sources_are_rewritten() {
    let lab = built(X79);
    let xml = "<hostdev mode='subsystem' type='pci' managed='yes'>\n  <source>\n    <address domain='0x0000' bus='0x00' slot='0x1f' function='0x2'/>\n  </source>\n  <address type='pci' domain='0x0000' bus='0x00' slot='0x1f' function='0x2'/>\n</hostdev>\n<hostdev mode='subsystem' type='pci'><source><address domain='0x0000' bus='0x01' slot='0x00' function='0x1'/></source></hostdev>";
    let (out, done) = rewrite::rewrite_sources(xml, &lab);
    let to = lab.lab_address(a("00:1f.2")).unwrap();
    assert_eq!(done, [(a("00:1f.2"), to)]);
    assert!(out.contains(&format!(
        "slot='{:#04x}' function='0x2'/>\n  </source>",
        to.slot
    )));
    // The guest address and the other hostdev are as written.
    assert!(
        out.contains("<address type='pci' domain='0x0000' bus='0x00' slot='0x1f' function='0x2'/>")
    );
    assert!(out.ends_with(
        "<address domain='0x0000' bus='0x01' slot='0x00' function='0x1'/></source></hostdev>"
    ));
}

fn row(bdf: &str, class: &str, group: u32) -> FunctionRow {
    FunctionRow {
        bdf: a(bdf),
        vendor: "0x1234".into(),
        device: "0x1111".into(),
        class: class.into(),
        driver: None,
        iommu_group: Some(group),
    }
}

#[test]
fn groups_that_differ_fail_with_both_groupings() {
    let lab = built(TURING);
    let mut rows: Vec<FunctionRow> = lab
        .map
        .iter()
        .map(|m| {
            row(
                &m.lab.to_string(),
                "0x038000",
                m.lab.bus as u32 + 10 * m.lab.slot as u32,
            )
        })
        .collect();
    rows.push(row("00:04.0", "0x060400", 2));
    let ok = groups::check(&lab, &rows);
    assert_eq!(ok.mismatch, None);
    // The USB function split off into a group of its own.
    let usb = rows.iter_mut().find(|r| r.bdf == a("01:00.2")).unwrap();
    usb.iommu_group = Some(99);
    let bad = groups::check(&lab, &rows).mismatch.unwrap();
    assert!(bad.contains("reported:"), "{bad}");
    assert!(bad.contains("group 99: {0000:01:00.2}"), "{bad}");
}

#[test]
fn groups_differ_turns_the_verdict_around() {
    let lab = built(TURING);
    let same: Vec<FunctionRow> = lab
        .map
        .iter()
        .map(|m| row(&m.lab.to_string(), "0x038000", m.lab.bus as u32))
        .collect();
    let mut notes = Vec::new();
    assert_eq!(groups::verdict(&lab, &same, false, &mut notes), None);
    let expected_but_same = groups::verdict(&lab, &same, true, &mut notes).unwrap();
    assert!(
        expected_but_same.contains("they match"),
        "{expected_but_same}"
    );
    let mut split = same.clone();
    split.retain(|r| r.bdf != a("01:00.3"));
    // A reported function L1 does not have is a difference too.
    let absent = groups::check(&lab, &split).mismatch.unwrap();
    assert!(absent.contains("0000:01:00.3: not in L1"), "{absent}");
    let mut notes = Vec::new();
    assert_eq!(groups::verdict(&lab, &split, true, &mut notes), None);
    assert!(notes
        .iter()
        .any(|n| n.starts_with("as the scenario expects")));
}
