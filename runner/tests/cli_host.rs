//! `mflab host`, `mflab plan --host` and `mflab run --xml … --host`: a
//! reporter's listing read, built, and its mistakes named before any VM.

use mflab::host::topology;

mod common;
use common::output as mflab;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn host_prints_a_topology_file_that_reads_back() {
    let out = mflab(&["host", "scenarios/reports/gtx1070/iommu-groups.txt"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let printed = text(&out.stdout);
    let t = topology::parse("printed", &printed).unwrap();
    assert_eq!(t.root_port.len(), 1);
    assert!(
        t.root_port[0].disable_acs,
        "the report groups the root port with the card"
    );
    assert_eq!(
        t.root_port[0].functions,
        ["bochs-display", "ich9-intel-hda"]
    );
    assert!(printed.contains("0000:00:1f.6 [8086:15bc] class 0x020000 -> 0000:00:1e.6 e1000e"));
}

#[test]
fn host_json_has_the_host_map() {
    let out = mflab(&[
        "host",
        "--format",
        "json",
        "lab/tests/listings/nic-lspci-nn-crlf.txt",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let nic = v["host_map"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["reported"] == "0000:c6:00.1")
        .unwrap();
    assert_eq!(nic["lab"], "0000:c6:00.1");
    assert_eq!(nic["reported_ids"], "8086:1572");
    assert_eq!(nic["device"], "e1000");
}

#[test]
fn a_malformed_listing_is_named_at_its_line_before_any_vm() {
    let out = mflab(&["host", "lab/tests/listings/malformed-no-ids.txt"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("lab/tests/listings/malformed-no-ids.txt:3:80: "));
    let out = mflab(&[
        "run",
        "--xml",
        "scenarios/reports/gtx1070/gpu-only.xml",
        "--host",
        "lab/tests/listings/malformed-two-groups.txt",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("lab/tests/listings/malformed-two-groups.txt:"),
        "{err}"
    );
    assert!(!err.contains("booting"), "{err}");
}

#[test]
fn plan_on_the_reporters_host_names_the_undeclared_audio_function() {
    let out = mflab(&[
        "plan",
        "--host",
        "scenarios/reports/gtx1070/iommu-groups.txt",
        "scenarios/reports/gtx1070/gpu-only.xml",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let o = text(&out.stdout) + &text(&out.stderr);
    assert!(o.contains("error[R11]"), "{o}");
    assert!(o.contains("also holds 0000:01:00.1"), "{o}");
    assert!(o.contains("<hostdev mode='subsystem' type='pci' managed='yes'><source><address domain='0x0000' bus='0x01' slot='0x00' function='0x1'/></source><address type='unassigned'/></hostdev>"), "{o}");
}

#[test]
fn rules_depth_runs_the_reporters_xml_without_a_vm() {
    let out = mflab(&[
        "run",
        "--xml",
        "scenarios/reports/rtx2080/display-and-audio.xml",
        "--host",
        "scenarios/reports/rtx2080/iommu-groups.txt",
        "--depth",
        "rules",
        "--format",
        "json",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["host_map"].as_array().unwrap().len(), 6);
}
