//! The agent's run with libvirt as the backend (in L1): the same steps as
//! mflab's own, carried out by libvirtd, observed from outside:
//! 1. L1's view; start libvirtd;
//! 2. wrap the user's hostdevs, word for word, in a bootable L2 domain;
//! 3. `define`, `start --paused` (libvirt's own detach), drivers during,
//!    `query-pci` through libvirt's monitor pass-through;
//! 4. `resume`, wait for L2 to power off, read its report;
//! 5. `undefine`; L1's view after libvirt's own reattach.

use std::path::Path;
use std::time::Duration;

use lab::bind::Sysfs;
use lab::device_text::device_texts;
use lab::inner::{
    guest_report_complete, lab_fault_of_silent_guest, parse_guest_report, qmp_view,
    REPORT_CUT_SHORT,
};
use lab::outcome::{function_rows, Depth, RunOutcome, RunRequest};

use crate::accel::{decide, gather, Accel};
use crate::agent::{finish, manual_detach, SYSFS};
use crate::libvirt::{l2_domain, Libvirtd, DOMAIN_NAME};

pub fn run_with_libvirt(req: &RunRequest, work: &Path) -> RunOutcome {
    let sysfs = Path::new(SYSFS);
    let mut out = RunOutcome::default();
    if let Err(e) = manual_detach(req, &Sysfs::new(SYSFS), work) {
        out.error = Some(e);
        return finish(out, sysfs);
    }
    out.l1_before = function_rows(sysfs).unwrap_or_default();
    if let Err(e) = steps(req, work, &mut out) {
        out.error = Some(e);
    }
    finish(out, sysfs)
}

fn steps(req: &RunRequest, work: &Path, out: &mut RunOutcome) -> Result<(), String> {
    let hostdevs: Vec<_> = device_texts(&req.xml)
        .into_iter()
        .filter(|d| d.element == "hostdev")
        .collect();
    if hostdevs.is_empty() {
        return Err("the XML has no <hostdev> for libvirt to carry out".into());
    }
    // mflab's own L2 leaves its RAM file for the next one: not for this one.
    crate::l2_ram::give_back(work);
    let daemon = Libvirtd::start(work, req.libvirt_bin.as_deref())?;
    let kvm = decide(&gather(Path::new("/"))).accel == Accel::Kvm;
    out.l2_accel = if kvm { "kvm".into() } else { "tcg".into() };
    let serial = work.join("l2-serial.log");
    let xml = l2_domain(&hostdevs, kvm, &req.l2_kernel, &req.l2_initrd, &serial);
    let domain_file = work.join("l2-domain.xml");
    std::fs::write(&domain_file, &xml).map_err(|e| e.to_string())?;

    let defined = daemon.virsh(&["define", &domain_file.to_string_lossy()]);
    if !defined.ok {
        return Err(defined.error_text());
    }
    let result = run_defined(req, &daemon, &serial, out);
    // L2's QEMU log (its stderr, libvirt's command line) lives in L1's
    // tmpfs: kept beside the serial log for whoever reads a failure.
    std::fs::copy(
        format!("/var/log/libvirt/qemu/{DOMAIN_NAME}.log"),
        work.join("l2-qemu.log"),
    )
    .ok();
    // Whatever happened: the domain goes away (libvirt reattaches on stop).
    if daemon.domstate() != "shut off" {
        daemon.virsh(&["destroy", DOMAIN_NAME]);
    }
    daemon.virsh(&["undefine", DOMAIN_NAME]);
    result
}

fn query_pci(daemon: &Libvirtd) -> Result<Vec<lab::outcome::GuestFunction>, String> {
    let pci = daemon.virsh(&[
        "qemu-monitor-command",
        DOMAIN_NAME,
        r#"{"execute":"query-pci"}"#,
    ]);
    if !pci.ok {
        return Ok(Vec::new()); // the domain stopped meanwhile
    }
    let reply: serde_json::Value =
        serde_json::from_str(&pci.stdout).map_err(|e| format!("query-pci: {e}"))?;
    let buses: Vec<qapi::qmp::PciInfo> =
        serde_json::from_value(reply["return"].clone()).map_err(|e| format!("query-pci: {e}"))?;
    Ok(qmp_view(&buses))
}

fn run_defined(
    req: &RunRequest,
    daemon: &Libvirtd,
    serial: &Path,
    out: &mut RunOutcome,
) -> Result<(), String> {
    if req.depth == Depth::Plan {
        return Ok(()); // libvirt has no "plan": define is its static verdict
    }
    let started = daemon.virsh(&["start", "--paused", DOMAIN_NAME]);
    if !started.ok {
        out.lab_fault = started.timed_out.then(|| started.error_text());
        return Err(started.error_text());
    }
    out.l1_during = function_rows(Path::new(SYSFS)).unwrap_or_default();
    // libvirt puts each hostdev behind a pcie-root-port. Before the firmware
    // numbers those buses, query-pci cannot list what is behind them, so at
    // guest depth the view is taken once L2 runs and the buses have numbers.
    if req.depth == Depth::Qmp {
        out.l2_qmp = query_pci(daemon)?;
        return Ok(());
    }
    let resumed = daemon.virsh(&["resume", DOMAIN_NAME]);
    if !resumed.ok {
        out.lab_fault = resumed.timed_out.then(|| resumed.error_text());
        return Err(resumed.error_text());
    }
    let start = std::time::Instant::now();
    while start.elapsed() < Duration::from_secs(30) && daemon.domstate() == "running" {
        let view = query_pci(daemon)?;
        let numbered = !view.iter().any(|f| f.class.starts_with("0x0604"))
            || view.iter().any(|f| !f.bdf.starts_with("0000:00:"));
        out.l2_qmp = view;
        if numbered {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    if req.kill_l2 {
        std::thread::sleep(Duration::from_millis(500));
        daemon.virsh(&["destroy", DOMAIN_NAME]);
        return Err("L2 was destroyed while running (kill_l2)".into());
    }
    // L2 powers off 5-10 s after `resume` here; 60 s is ample under load.
    let timeout = Duration::from_secs(if out.l2_accel == "kvm" { 60 } else { 300 });
    let powered_off = daemon.wait_shut_off(timeout);
    let report = std::fs::read_to_string(serial).unwrap_or_default();
    out.l2_guest = parse_guest_report(&report);
    let complete = guest_report_complete(&report);
    out.lab_fault = if complete {
        // Seen: L2 printed its report and powered off, and libvirt could
        // not end its QEMU ("Failed to terminate process … with SIGKILL"),
        // a vCPU thread stuck in L1's kernel.
        (!powered_off)
            .then(|| "L2 reported, but its QEMU did not exit (stuck in L1's kernel)".into())
    } else {
        lab_fault_of_silent_guest(&report)
    };
    if !powered_off {
        return Err(format!("L2 did not power off within {timeout:?}"));
    }
    if !complete {
        return Err(REPORT_CUT_SHORT.into());
    }
    Ok(())
}

/// One file for libvirt's static verdict.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct CheckItem {
    pub file: String,
    pub xml: String,
}

/// What `virsh define` said of it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LibvirtVerdict {
    pub file: String,
    pub accepted: bool,
    /// libvirt's words when it refused, word for word.
    pub message: Option<String>,
}

/// `virsh define` then `undefine` for each file, its devices wrapped in
/// the lab's L2 domain (XML that is not well-formed goes in as it is, so
/// that libvirt's own parser speaks).
pub fn check_with_libvirt(
    items: &[CheckItem],
    work: &Path,
    libvirt_bin: Option<&Path>,
) -> Result<Vec<LibvirtVerdict>, String> {
    let daemon = Libvirtd::start(work, libvirt_bin)?;
    let mut verdicts = Vec::new();
    for item in items {
        let well_formed = !lab::check::check_text(&item.file, &item.xml)
            .diagnostics
            .iter()
            .any(|d| d.rule == lab::RuleId::Xml);
        let devices = if well_formed {
            device_texts(&item.xml)
        } else {
            let raw = item.xml.trim_start();
            let raw = if raw.starts_with("<?xml") {
                raw.split_once("?>").map_or(raw, |(_, rest)| rest)
            } else {
                raw
            };
            vec![lab::device_text::DeviceText {
                element: "raw".into(),
                text: raw.to_string(),
            }]
        };
        let xml = crate::libvirt::l2_domain_with(
            &devices,
            false,
            Path::new("/l2/vmlinux"),
            Path::new("/l2/initrd"),
            &work.join("check-serial.log"),
            false,
        );
        let file = work.join("check-domain.xml");
        std::fs::write(&file, xml).map_err(|e| e.to_string())?;
        let defined = daemon.virsh(&["define", &file.to_string_lossy()]);
        if defined.ok {
            daemon.virsh(&["undefine", DOMAIN_NAME]);
        }
        verdicts.push(LibvirtVerdict {
            file: item.file.clone(),
            accepted: defined.ok,
            message: (!defined.ok).then(|| {
                defined
                    .error_text()
                    .trim_start_matches("Failed to define domain from /mflab/check-domain.xml / ")
                    .to_string()
            }),
        });
    }
    Ok(verdicts)
}
