//! Listings as bug reporters paste them (`tests/listings/`), read into a
//! reporter's host. A malformed listing `malformed-X.txt` has beside it
//! `malformed-X.err`, the exact error it must give: a new case is two new
//! files.

use std::collections::BTreeMap;
use std::path::PathBuf;

use lab::pci::listing::{parse_listing, ListingError, ListingFormat, ReportedHost};
use lab::PciAddress;

fn listings() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/listings")
}

fn read(name: &str) -> ReportedHost {
    let text = std::fs::read_to_string(listings().join(name)).unwrap();
    parse_listing(name, &text).unwrap_or_else(|e| panic!("{e}"))
}

fn fails(name: &str, text: &str) -> ListingError {
    match parse_listing(name, text) {
        Ok(host) => panic!("{name} was read: {host:?}"),
        Err(e) => e,
    }
}

fn a(text: &str) -> PciAddress {
    text.parse().unwrap()
}

fn members(list: &[&str]) -> Vec<PciAddress> {
    list.iter().map(|t| a(t)).collect()
}

/// Address, class, vendor, device, group of every function, in listing order.
fn summary(host: &ReportedHost) -> Vec<(PciAddress, u32, u16, u16, Option<u32>)> {
    host.functions
        .iter()
        .map(|f| (f.address, f.class, f.vendor, f.device, f.iommu_group))
        .collect()
}

#[test]
fn gpu_and_hdmi_audio_under_headings_with_the_root_port_alone() {
    let host = read("gpu-audio-groups.txt");
    assert_eq!(host.source, ListingFormat::IommuGroups);
    assert_eq!(host.functions.len(), 19);
    let gpu = host.function(a("01:00.0")).unwrap();
    assert_eq!(
        gpu.description,
        "VGA compatible controller: NVIDIA Corporation GK104 [GeForce GTX 760]"
    );
    assert_eq!(
        (gpu.class, gpu.vendor, gpu.device),
        (0x030000, 0x10de, 0x1187)
    );
    assert_eq!(gpu.iommu_group, Some(13));
    assert_eq!(gpu.line, 37);
    assert_eq!(gpu.parent, None);
    let audio = host.function(a("01:00.1")).unwrap();
    assert_eq!(
        (audio.class, audio.vendor, audio.device),
        (0x040300, 0x10de, 0x0e0a)
    );
    let root_port = host.function(a("00:01.0")).unwrap();
    assert_eq!(root_port.class, 0x060400);
    assert_eq!(root_port.iommu_group, Some(1));

    let groups = host.groups();
    assert_eq!(groups.len(), 14);
    assert_eq!(groups[&1], members(&["00:01.0"]));
    assert_eq!(groups[&4], members(&["00:05.0", "00:05.2", "00:05.4"]));
    assert_eq!(groups[&13], members(&["01:00.0", "01:00.1"]));
    assert!(host.members_not_dumped.is_empty());
}

#[test]
fn turing_card_of_four_functions_from_the_one_line_loop() {
    let host = read("turing-one-line.txt");
    assert_eq!(host.source, ListingFormat::IommuGroups);
    assert_eq!(host.functions.len(), 18);
    let card: Vec<_> = summary(&host)
        .into_iter()
        .filter(|f| f.0.bus == 1)
        .collect();
    assert_eq!(
        card,
        vec![
            (a("01:00.0"), 0x030000, 0x10de, 0x1e87, Some(16)),
            (a("01:00.1"), 0x040300, 0x10de, 0x10f8, Some(16)),
            (a("01:00.2"), 0x0c0300, 0x10de, 0x1ad8, Some(16)),
            (a("01:00.3"), 0x0c8000, 0x10de, 0x1ad9, Some(16)),
        ]
    );
    assert_eq!(
        host.function(a("01:00.3")).unwrap().description,
        "Serial bus controller: NVIDIA Corporation TU104 USB Type-C UCSI Controller"
    );
    // A colon in the device name is not the class's colon.
    assert_eq!(
        host.function(a("00:18.1")).unwrap().description,
        "Host bridge: Advanced Micro Devices, Inc. [AMD] Matisse/Vermeer Data Fabric: Device 18h; Function 1"
    );
    let groups = host.groups();
    assert_eq!(
        groups[&16],
        members(&["01:00.0", "01:00.1", "01:00.2", "01:00.3"])
    );
    assert_eq!(groups[&11], members(&["00:18.0", "00:18.1"]));
    assert_eq!(groups.len(), 13);
}

#[test]
fn dual_port_nic_in_plain_lspci_nn_with_crlf() {
    let host = read("nic-lspci-nn-crlf.txt");
    assert_eq!(host.source, ListingFormat::LspciNn);
    assert_eq!(host.functions.len(), 12);
    let nic: Vec<_> = summary(&host)
        .into_iter()
        .filter(|f| f.0.bus == 0xc6)
        .collect();
    assert_eq!(
        nic,
        vec![
            (a("c6:00.0"), 0x020000, 0x8086, 0x1572, None),
            (a("c6:00.1"), 0x020000, 0x8086, 0x1572, None),
        ]
    );
    // No \r left at the end of a description.
    assert_eq!(
        host.function(a("c6:00.1")).unwrap().description,
        "Ethernet controller: Intel Corporation Ethernet Controller X710 for 10GbE SFP+"
    );
    assert_eq!(host.function(a("c6:00.1")).unwrap().line, 14);
    // Without groups in the listing, each slot is a group, numbered in
    // address order: the two ports share one, as with no ACS between them.
    let groups = host.groups();
    let by_slot: Vec<Vec<PciAddress>> = groups.values().cloned().collect();
    assert_eq!(
        by_slot,
        vec![
            members(&["00:00.0", "00:00.2"]),
            members(&["00:01.0"]),
            members(&["00:07.1"]),
            members(&["00:14.0", "00:14.3"]),
            members(&["c0:00.0", "c0:00.2"]),
            members(&["c0:03.1"]),
            members(&["c3:00.0"]),
            members(&["c6:00.0", "c6:00.1"]),
        ]
    );
    assert_eq!(
        groups.keys().copied().collect::<Vec<_>>(),
        (0..8).collect::<Vec<u32>>()
    );
}

#[test]
fn nodedev_dumps_of_gpu_and_audio_with_their_parent_root_port() {
    let host = read("gpu-audio-nodedev.txt");
    assert_eq!(host.source, ListingFormat::NodedevDumpxml);
    assert_eq!(
        summary(&host),
        vec![
            (a("01:00.0"), 0x030000, 0x10de, 0x1187, Some(1)),
            (a("01:00.1"), 0x040300, 0x10de, 0x0e0a, Some(1)),
        ]
    );
    let gpu = &host.functions[0];
    assert_eq!(
        gpu.description,
        "NVIDIA Corporation GK104 [GeForce GTX 760]"
    );
    assert_eq!(gpu.parent, Some(a("00:01.0")));
    assert_eq!(gpu.line, 4);
    assert_eq!(host.functions[1].parent, Some(a("00:01.0")));
    assert_eq!(host.functions[1].line, 32);
    // The root port is in the group but was not dumped: a member, not a function.
    assert_eq!(host.members_not_dumped.len(), 1);
    assert_eq!(host.members_not_dumped[0].address, a("00:01.0"));
    assert_eq!(host.members_not_dumped[0].iommu_group, 1);
    assert_eq!(host.members_not_dumped[0].line, 20);
    assert_eq!(
        host.groups(),
        BTreeMap::from([(1, members(&["00:01.0", "01:00.0", "01:00.1"]))])
    );
}

#[test]
fn lowercase_headings_indented_with_spaces_and_domains() {
    let host = read("groups-lowercase-domain.txt");
    assert_eq!(host.source, ListingFormat::IommuGroups);
    let groups = host.groups();
    assert_eq!(groups[&0], members(&["0000:00:00.0"]));
    assert_eq!(groups[&1], members(&["00:01.0", "01:00.0", "01:00.1"]));
    assert_eq!(groups[&2], members(&["00:14.0"]));
}

#[test]
fn lspci_nnv_fragments_give_prog_if_and_the_bridge_above() {
    let host = read("lspci-nnv-fragments.txt");
    assert_eq!(host.source, ListingFormat::LspciNn);
    assert_eq!(
        summary(&host),
        vec![
            (a("00:01.0"), 0x060400, 0x8086, 0x1901, None),
            (a("01:00.0"), 0x030000, 0x10de, 0x1b81, None),
            (a("00:14.0"), 0x0c0330, 0x8086, 0xa2af, None),
        ]
    );
    // `Bus: primary=00, secondary=01` under 00:01.0.
    assert_eq!(
        host.function(a("01:00.0")).unwrap().parent,
        Some(a("00:01.0"))
    );
    assert_eq!(host.function(a("00:14.0")).unwrap().parent, None);
    assert_eq!(host.function(a("00:01.0")).unwrap().parent, None);
}

#[test]
fn malformed_listings_fail_where_their_err_file_says() {
    let mut cases = 0;
    for entry in std::fs::read_dir(listings()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        if !(name.starts_with("malformed-") && name.ends_with(".txt")) {
            continue;
        }
        let expected = std::fs::read_to_string(path.with_extension("err"))
            .unwrap_or_else(|e| panic!("{name} has no .err beside it: {e}"));
        let err = fails(&name, &std::fs::read_to_string(&path).unwrap());
        assert_eq!(err.to_string(), expected.trim_end(), "{name}");
        let place = err.place();
        assert!(expected.starts_with(&format!("{name}:{}:{}: ", place.line, place.column)));
        cases += 1;
    }
    assert_eq!(cases, 6);
}

const GPU: &str = "01:00.0 VGA compatible controller [0300]: NVIDIA Corporation GK104 [GeForce GTX 760] [10de:1187] (rev a1)";

#[test]
fn a_slot_out_of_range_points_at_the_slot() {
    let err = fails(
        "r.txt",
        "$ lspci -nn\n\t0000:00:20.0 Host bridge [0600]: Intel [8086:3e30]\n",
    );
    assert_eq!(
        err.to_string(),
        "r.txt:2:10: found '0000:00:20.0', expected a PCI address with a slot of at most 1f"
    );
    let err = fails(
        "r.txt",
        "00:02.8 VGA compatible controller [0300]: Intel [8086:3e92]",
    );
    assert_eq!((err.place().line, err.place().column), (1, 7));
}

#[test]
fn a_device_line_without_class_points_at_its_colon() {
    let err = fails(
        "r.txt",
        "01:00.0 VGA compatible controller: NVIDIA Corporation [10de:1187]\n",
    );
    assert!(matches!(err, ListingError::NoClass { .. }), "{err}");
    assert_eq!((err.place().line, err.place().column), (1, 34));
}

#[test]
fn a_bare_address_is_a_device_line_without_ids() {
    let err = fails("r.txt", "IOMMU Group 1:\n  01:00.0\n");
    assert_eq!(
        err.to_string(),
        "r.txt:2:10: found the device line of 0000:01:00.0 without vendor:device ids, \
         expected them as `[vvvv:dddd]` after the device name, as `lspci -nn` prints them"
    );
}

#[test]
fn in_a_group_listing_every_device_needs_a_heading() {
    let text = format!(
        "{GPU}\nIOMMU Group 2:\n\t00:02.0 VGA compatible controller [0300]: Intel [8086:0412]\n"
    );
    let err = fails("r.txt", &text);
    assert!(matches!(err, ListingError::NoGroup { .. }), "{err}");
    assert_eq!((err.place().line, err.place().column), (1, 1));
}

#[test]
fn empty_and_blank_listings() {
    let err = fails("r.txt", "");
    assert_eq!(err.to_string().split(": ").next(), Some("r.txt:1:1"));
    assert!(matches!(err, ListingError::Empty { .. }));
    assert!(matches!(
        fails("r.txt", " \r\n\t\n"),
        ListingError::Empty { .. }
    ));
    assert!(matches!(
        fails("r.txt", "```\n$ lspci -nn\n```\n"),
        ListingError::NoDevice { .. }
    ));
}

#[test]
fn one_line_headings_with_colon_and_domain_and_text_around() {
    let text = format!(
        "See below.\n```text\nIOMMU Group 7: 0000:{GPU}\nIOMMU Group 7: 0000:01:00.1 Audio device [0403]: \
         NVIDIA Corporation GK104 HDMI Audio Controller [10de:0e0a] (rev a1)\n```\nThanks!\n"
    );
    let host = parse_listing("r.md", &text).unwrap();
    assert_eq!(
        host.groups(),
        BTreeMap::from([(7, members(&["01:00.0", "01:00.1"]))])
    );
    assert_eq!(host.functions[0].line, 3);
}

#[test]
fn prose_that_names_a_group_is_not_a_heading() {
    let text = format!("IOMMU group 13 is the problem, here is lspci -nn:\n{GPU}\n");
    let host = parse_listing("r.txt", &text).unwrap();
    assert_eq!(host.source, ListingFormat::LspciNn);
    assert_eq!(host.functions[0].iommu_group, None);
}

const NODEDEV_AUDIO: &str = "<device>
  <name>pci_0000_01_00_1</name>
  <parent>computer</parent>
  <capability type='pci'>
    <class>0x040300</class>
    <domain>0</domain>
    <bus>1</bus>
    <slot>0</slot>
    <function>1</function>
    <product id='0x0e0a'>GK104 HDMI Audio Controller</product>
    <vendor id='0x10de'>NVIDIA Corporation</vendor>
    <iommuGroup number='GROUP'>
      <address domain='0x0000' bus='0x01' slot='0x00' function='0x1'/>
    </iommuGroup>
  </capability>
</device>
";

#[test]
fn nodedev_devices_that_are_not_pci_are_read_past() {
    let net = "<device>\n  <name>net_enp5s0_a8_a1_59_0e_7f_6c</name>\n  <parent>pci_0000_05_00_0</parent>\n  \
               <capability type='net'>\n    <interface>enp5s0</interface>\n  </capability>\n</device>\n";
    let text = format!(
        "virsh # nodedev-dumpxml net_enp5s0\n{net}{}",
        NODEDEV_AUDIO.replace("GROUP", "17")
    );
    let host = parse_listing("r.txt", &text).unwrap();
    assert_eq!(host.functions.len(), 1);
    assert_eq!(host.functions[0].parent, None, "<parent>computer</parent>");
    assert_eq!(host.functions[0].iommu_group, Some(17));
    assert!(host.members_not_dumped.is_empty());
    assert!(matches!(fails("r.txt", net), ListingError::NoDevice { .. }));
}

#[test]
fn nodedev_function_in_two_groups_and_dumped_twice() {
    let text = format!(
        "{}{}",
        NODEDEV_AUDIO.replace("GROUP", "1"),
        NODEDEV_AUDIO.replace("GROUP", "2")
    );
    let err = fails("r.txt", &text);
    assert!(
        matches!(
            err,
            ListingError::TwoGroups {
                group: 2,
                first_group: 1,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!((err.place().line, err.place().column), (28, 5));
    let text = NODEDEV_AUDIO.replace("GROUP", "1").repeat(2);
    let err = fails("r.txt", &text);
    assert!(
        matches!(err, ListingError::Duplicate { first_line: 1, .. }),
        "{err}"
    );
    assert_eq!((err.place().line, err.place().column), (17, 1));
}

#[test]
fn nodedev_bad_values_point_at_them() {
    let err = fails(
        "r.txt",
        &NODEDEV_AUDIO
            .replace("GROUP", "1")
            .replace("<slot>0<", "<slot>0x20<"),
    );
    assert_eq!(
        err.to_string(),
        "r.txt:8:11: found '0x20' in <slot>, expected a number of at most 0x1f"
    );
    let err = fails("r.txt", &NODEDEV_AUDIO.replace("GROUP", "x"));
    assert_eq!(
        err.to_string(),
        "r.txt:12:17: found number='x' in <iommuGroup>, expected number= a number of at most 0xffffffff"
    );
    let err = fails(
        "r.txt",
        &NODEDEV_AUDIO
            .replace("GROUP", "1")
            .replace("</bus>", "</bux>"),
    );
    assert!(matches!(err, ListingError::Xml { .. }), "{err}");
    assert_eq!(err.place().line, 7);
}

mod never_panics {
    use super::*;
    use proptest::prelude::*;

    fn assert_sane(text: &str) {
        if let Err(err) = parse_listing("fuzz.txt", text) {
            let lines = text.split('\n').count() as u32;
            let place = err.place();
            assert!(place.line >= 1 && place.line <= lines, "{err}");
            assert!(place.column >= 1, "{err}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]

        #[test]
        fn lspci_like_text(text in "(IOMMU [Gg]roup [0-9]{1,2}:? |\t|[0-9a-f]{2}:[0-9a-f]{2}\\.[0-9] |\\[[0-9a-f]{4}(:[0-9a-f]{4})?\\]|: |é|\\(rev a1\\)|\r?\n| ){0,30}") {
            assert_sane(&text);
        }

        #[test]
        fn nodedev_like_text(text in "(<device>|</device>|<capability type='pci'>|</capability>|<bus>|</bus>|<iommuGroup number='1'>|<address bus='0x1'/>|0x1f|&amp;|&x;|\n| |x){0,30}") {
            assert_sane(&text);
        }
    }
}
