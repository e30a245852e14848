//! `--release debian-13` and `--release debian-testing`: L1's userland is
//! trixie's or forky's root (built with debootstrap into the cache), its
//! kernel boots L1 and L2, and the report names what ran: libvirt 11.x
//! and QEMU 10.x on trixie, libvirt 12.x and QEMU 11.x on forky. On
//! trixie the same scenarios pass behind virtio-iommu, with the same L2
//! views as behind intel-iommu; Debian 12's kernel, which lacks
//! VIRTIO_IOMMU, is refused before any boot. Needs root, debootstrap,
//! QEMU and the network on first use (or a cache that has the roots):
//! when one is missing this fails, it never skips.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Mutex, OnceLock};

/// A release under test, and what its L1 must report having run.
struct Release {
    name: &'static str,
    /// In L1's kernel release: `+deb13-amd64`.
    kernel: &'static str,
    /// In `qemu-system-x86_64 --version`: `version 10.`.
    qemu: &'static str,
    /// In `libvirtd --version`: `) 11.`.
    libvirt: &'static str,
}

const TRIXIE: Release = Release {
    name: "debian-13",
    kernel: "+deb13-amd64",
    qemu: "version 10.",
    libvirt: ") 11.",
};

const FORKY: Release = Release {
    name: "debian-testing",
    kernel: "+deb14-amd64",
    qemu: "version 11.",
    libvirt: ") 12.",
};

/// One VM run at a time (the tests of a file run side by side).
static ONE_VM: Mutex<()> = Mutex::new(());

/// Every gpu-audio scenario (`scenarios/gpu-audio-*.toml`), on one shared
/// L1 per backend and topology: the same files the suite runs on the
/// host's Debian 12, so each states both versions' truth.
const SCENARIO_PREFIX: &str = "gpu-audio-";

use common::output as mflab;

/// The root, built (or found in the cache) through mflab itself.
fn build_root(release: &Release) {
    let name = release.name;
    let out = mflab(&["--release", name, "images"]);
    assert!(
        out.status.success(),
        "mflab --release {name} images failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn scenario_paths() -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    let mut paths: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.extension().is_some_and(|x| x == "toml")
                && p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(SCENARIO_PREFIX))
        })
        .map(|p| p.display().to_string())
        .collect();
    paths.sort();
    assert!(paths.len() >= 12, "the gpu-audio scenarios: {paths:?}");
    paths
}

fn scenario_names() -> Vec<String> {
    scenario_paths()
        .iter()
        .map(|p| {
            Path::new(p)
                .file_stem()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect()
}

/// `mflab --release R run --backend both` of the scenarios, on
/// `topology` when given; every run passed; the JSON objects and the
/// JUnit report.
fn run_passing(release: &Release, topology: Option<&str>) -> (Vec<serde_json::Value>, String) {
    let _one = ONE_VM.lock().unwrap_or_else(|e| e.into_inner());
    build_root(release);
    let junit = tempfile::NamedTempFile::new().unwrap();
    let junit_path = junit.path().display().to_string();
    let mut args = vec![
        "--release",
        release.name,
        "run",
        "--backend",
        "both",
        "--format",
        "json",
        "--junit",
        &junit_path,
    ];
    if let Some(t) = topology {
        args.extend(["--topology", t]);
    }
    let scenarios = scenario_paths();
    args.extend(scenarios.iter().map(String::as_str));
    let out = mflab(&args);
    let outcomes = common::all_passed(
        &out,
        scenarios.len(),
        &format!("on {} ({topology:?})", release.name),
        |o| format!("L1 ran {}", o["l1_versions"]),
    );
    (outcomes, std::fs::read_to_string(junit.path()).unwrap())
}

/// The versions L1 reported: every run that booted an L1 names them.
fn assert_ran(release: &Release, outcomes: &[serde_json::Value]) {
    for o in outcomes.iter().filter(|o| !o["l1_versions"].is_null()) {
        let v = &o["l1_versions"];
        let (kernel, qemu, libvirt) = (
            v["kernel"].as_str().unwrap_or(""),
            v["qemu"].as_str().unwrap_or(""),
            v["libvirt"].as_str().unwrap_or(""),
        );
        assert!(kernel.contains(release.kernel), "L1 ran kernel {kernel}");
        assert!(qemu.contains(release.qemu), "L1 ran {qemu}");
        assert!(libvirt.contains(release.libvirt), "L1 ran {libvirt}");
    }
    assert!(
        outcomes.iter().any(|o| !o["l1_versions"].is_null()),
        "no run reported L1's versions"
    );
}

/// What L2's kernel saw of the display and audio functions, per scenario and backend.
fn l2_views(outcomes: &[serde_json::Value]) -> BTreeMap<String, Vec<serde_json::Value>> {
    outcomes
        .iter()
        .map(|o| {
            // The display (0x03…) and audio (0x04…) functions: what the
            // scenarios are about. L2's bridges and chipset functions are
            // the machine's, and L2's console has been seen to lose a byte
            // of one of their lines (the host bridge's, behind virtio-iommu).
            let assigned: Vec<serde_json::Value> = o["l2_guest"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|f| {
                    f["class"]
                        .as_str()
                        .is_some_and(|c| c.starts_with("0x03") || c.starts_with("0x04"))
                })
                .cloned()
                .collect();
            (format!("{} [{}]", o["scenario"], o["backend"]), assigned)
        })
        .collect()
}

/// The intel-iommu runs, once for both tests that read them.
fn on_intel_iommu() -> &'static (Vec<serde_json::Value>, String) {
    static RUNS: OnceLock<(Vec<serde_json::Value>, String)> = OnceLock::new();
    RUNS.get_or_init(|| run_passing(&TRIXIE, None))
}

/// Every scenario passed on `release` and its JUnit names carry it.
fn assert_passed_and_named(release: &Release, outcomes: &[serde_json::Value], junit: &str) {
    assert_ran(release, outcomes);
    for s in scenario_names() {
        assert!(
            junit.contains(&format!("name=\"{s} [{}]\"", release.name)),
            "JUnit names carry the release:\n{junit}"
        );
    }
}

#[test]
fn gpu_audio_scenarios_pass_on_trixie_s_userland_and_name_libvirt_11_and_qemu_10() {
    let (outcomes, junit) = on_intel_iommu();
    assert_passed_and_named(&TRIXIE, outcomes, junit);
}

#[test]
fn gpu_audio_scenarios_pass_on_forky_s_userland_and_name_libvirt_12_and_qemu_11() {
    let (outcomes, junit) = run_passing(&FORKY, None);
    assert_passed_and_named(&FORKY, &outcomes, &junit);
}

#[test]
fn behind_virtio_iommu_l2_sees_what_it_sees_behind_intel_iommu() {
    let (intel, _) = on_intel_iommu();
    let (virtio, _) = run_passing(&TRIXIE, Some("gpu-audio-virtio-iommu"));
    assert_ran(&TRIXIE, &virtio);
    assert_eq!(l2_views(&virtio), l2_views(intel));
}

#[test]
fn debian_12_s_kernel_is_refused_for_virtio_iommu_before_booting() {
    let scenarios = scenario_paths();
    let out = mflab(&[
        "--kernel",
        "debian-12",
        "run",
        "--topology",
        "gpu-audio-virtio-iommu",
        &scenarios[0],
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr:\n{stderr}");
    assert!(stderr.contains("VIRTIO_IOMMU"), "{stderr}");
    assert!(!stderr.contains("booting L1"), "nothing booted: {stderr}");
}

#[test]
fn an_iommufd_scenario_is_refused_before_booting_on_a_kernel_without_iommufd() {
    let scenario = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../scenarios/iommufd/gpu-audio-unassigned-iommufd.toml")
        .display()
        .to_string();
    for kernel in ["debian-12", "debian-testing"] {
        let out = mflab(&["--kernel", kernel, "run", &scenario]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{kernel}: stderr:\n{stderr}");
        assert!(
            stderr.contains("CONFIG_IOMMUFD (module iommufd)")
                && stderr.contains("CONFIG_VFIO_DEVICE_CDEV")
                && stderr.contains("--kernel debian-testing+iommufd"),
            "{kernel}: {stderr}"
        );
        assert!(!stderr.contains("booting L1"), "nothing booted: {stderr}");
    }
}
