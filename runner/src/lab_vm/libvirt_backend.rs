//! One scenario carried out by a real libvirtd inside L1, observed from
//! outside. The steps, whose end mirrors their start:
//! 1. [`DaemonSlot::get`]: the L1's private daemon, started for its first
//!    libvirt scenario and kept for the next (see `serve` for its health);
//! 2. [`define`]: the user's hostdevs, word for word, in a bootable L2 domain;
//! 3. [`start_paused`]: `virsh start --paused` (libvirt's own detach), the
//!    drivers during, `query-pci` through libvirt's monitor pass-through;
//! 4. [`resume_and_wait`]: `virsh resume`, L2's report, its power-off;
//! 5. [`undefine`], undoing 2 and 3: `destroy` if L2 still runs (libvirt
//!    reattaches on stop), `undefine`; the view after is
//!    [`super::l1_state::finish`]'s, taken after libvirt's own reattach.
//!
//! libvirt's errors are kept word for word. Only what [`lab::lab_fault`]
//! calls the lab's is retried.

use std::ops::ControlFlow;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::lab_vm::l2::guest::qmp_view;
use lab::lab_fault::{of_libvirt_l2, of_short_report, of_virsh_call};
use lab::machine::accel::Accel;
use lab::protocol::guest_report::{guest_report_complete, parse_guest_report};
use lab::protocol::paths::{L2_DOMAIN_XML, L2_QEMU_LOG, L2_SERIAL_LOG};
use lab::protocol::{
    function_rows, Depth, GuestFunction, Progress, RunOutcome, RunRequest, Stage, StepAction,
};
use lab::schema::device_text::{device_texts, DeviceText};

use super::l1_state::{begin, finish, sysfs};
use super::libvirt_domain::l2_domain;
use super::libvirtd::{DaemonSlot, Libvirtd, ShutOffWait, VirshOutput, DOMAIN_NAME};
use super::L1Error;

pub fn run(
    req: &RunRequest,
    work: &Path,
    progress: &dyn Fn(Progress),
    daemons: &mut DaemonSlot,
) -> RunOutcome {
    let mut out = match begin(req, work) {
        ControlFlow::Continue(out) => out,
        ControlFlow::Break(done) => return done,
    };
    // The link proof's far end (`super::link_proof`), as on mflab's backend.
    let peer = match req.link.as_ref().filter(|_| req.depth == Depth::Guest) {
        Some(link) => match super::link_proof::PeerLink::up(link) {
            Ok(peer) => Some(peer),
            Err(e) => {
                out.error = Some(e.to_string());
                return finish(out);
            }
        },
        None => None,
    };
    let mut iommu_domain = None;
    if let Err(e) = steps(req, work, &mut out, progress, daemons, &mut iommu_domain) {
        out.error = Some(e.to_string());
    }
    if let Some(peer) = peer {
        let report = lab::protocol::guest_report::read_l2_output(&work.join(L2_SERIAL_LOG));
        let link = super::link_proof::after_l2(&peer, iommu_domain, &report);
        // libvirt reattached on the domain's stop: what it took, it gave back.
        let restored = super::link_proof::taken_from_host(&out);
        super::link_proof::conclude(peer, link, &restored, &mut out);
    }
    finish(out)
}

fn steps(
    req: &RunRequest,
    work: &Path,
    out: &mut RunOutcome,
    progress: &dyn Fn(Progress),
    daemons: &mut DaemonSlot,
    iommu_domain: &mut Option<String>,
) -> Result<(), L1Error> {
    let hostdevs: Vec<DeviceText> = device_texts(&req.xml)
        .into_iter()
        .filter(|d| d.element == "hostdev")
        .collect();
    if hostdevs.is_empty() && req.steps.is_empty() {
        return Err(L1Error::NoHostdev);
    }
    // mflab's own L2 leaves its RAM file for the next one: not for this one.
    super::l2_ram::give_back(work);
    progress(Progress::LibvirtdStarting);
    let daemon = timed(out, Stage::LibvirtdStart, || {
        daemons.get(req.libvirt_bin.as_deref())
    })?;
    let accel = super::kvm::l2_accel();
    out.l2_accel = Some(accel);
    let serial = work.join(L2_SERIAL_LOG);
    timed(out, Stage::Define, || {
        define(daemon, &hostdevs, accel, req, &serial, work)
    })?;
    let result = start_paused(req, daemon, out, progress).and_then(|started| {
        // While libvirt holds the functions: the IOMMU domain of the
        // first one it took for the guest.
        let taken: Vec<lab::PciAddress> = super::link_proof::taken_from_host(out)
            .into_iter()
            .map(|(a, _)| a)
            .collect();
        *iommu_domain = super::link_proof::iommu_domain(&taken);
        if started {
            resume_and_wait(req, daemon, accel, &serial, out, progress)
        } else {
            Ok(())
        }
    });
    // L2's QEMU log (its stderr, libvirt's command line) lives in L1's
    // tmpfs: kept beside the serial log for whoever reads a failure.
    std::fs::copy(
        format!("/var/log/libvirt/qemu/{DOMAIN_NAME}.log"),
        work.join(L2_QEMU_LOG),
    )
    .ok();
    progress(Progress::Teardown);
    timed(out, Stage::Undefine, || undefine(daemon));
    result
}

/// Step 2: `virsh define` of the L2 domain around the user's hostdevs.
fn define(
    daemon: &Libvirtd,
    hostdevs: &[DeviceText],
    accel: Accel,
    req: &RunRequest,
    serial: &Path,
    work: &Path,
) -> Result<(), L1Error> {
    let extra: Vec<String> = req.link.iter().map(|l| l.l2_cmdline_word()).collect();
    let cmdline = crate::lab_vm::l2::guest::l2_kernel_cmdline(&extra);
    let mut xml = l2_domain(
        hostdevs,
        accel,
        &req.l2_kernel,
        &req.l2_initrd,
        &cmdline,
        serial,
    );
    if !req.steps.is_empty() {
        let resets = req.steps.iter().any(|s| s.action.reboots());
        let acpi = req.steps.iter().any(|s| s.action == StepAction::Reboot);
        xml = super::steps::libvirt_domain_for_steps(&xml, resets, acpi);
    }
    let domain_file = work.join(L2_DOMAIN_XML);
    std::fs::write(&domain_file, &xml)?;
    let defined = daemon.virsh(&["define", &domain_file.to_string_lossy()]);
    if !defined.ok {
        return Err(L1Error::Virsh(defined.error_text()));
    }
    Ok(())
}

/// A failed virsh call as the run's failure, and as a lab fault when it hung.
fn failed(call: &VirshOutput, out: &mut RunOutcome) -> L1Error {
    out.lab_fault = of_virsh_call(call.timed_out, &call.error_text());
    L1Error::Virsh(call.error_text())
}

/// Step 3: start paused; true when L2 is to be resumed (guest depth).
fn start_paused(
    req: &RunRequest,
    daemon: &Libvirtd,
    out: &mut RunOutcome,
    progress: &dyn Fn(Progress),
) -> Result<bool, L1Error> {
    if req.depth == Depth::Plan {
        return Ok(false); // libvirt has no "plan": define is its static verdict
    }
    progress(Progress::L2Starting);
    let started = timed(out, Stage::Start, || {
        daemon.virsh(&["start", "--paused", DOMAIN_NAME])
    });
    if !started.ok {
        return Err(failed(&started, out));
    }
    out.l1_during = function_rows(sysfs()).unwrap_or_default();
    progress(Progress::BindDone);
    // libvirt puts each hostdev behind a pcie-root-port. Before the firmware
    // numbers those buses, query-pci cannot list what is behind them, so at
    // guest depth the view is taken once L2 runs and the buses have numbers.
    if req.depth == Depth::Qmp {
        out.l2_qmp = query_pci(daemon)?;
        return Ok(false);
    }
    Ok(true)
}

/// Step 4: resume, take the QMP view once the buses are numbered, wait for
/// L2's power-off and read its report.
fn resume_and_wait(
    req: &RunRequest,
    daemon: &Libvirtd,
    accel: Accel,
    serial: &Path,
    out: &mut RunOutcome,
    progress: &dyn Fn(Progress),
) -> Result<(), L1Error> {
    let events = serial.with_file_name(lab::protocol::paths::L2_EVENTS_LOG);
    let watch = daemon.watch_shutdown(&events);
    let boot = Instant::now();
    let resumed = daemon.virsh(&["resume", DOMAIN_NAME]);
    if !resumed.ok {
        return Err(failed(&resumed, out));
    }
    progress(Progress::L2Running);
    let start = Instant::now();
    let mut previous = None;
    // With steps the QMP view is not asserted (the spare root ports would
    // keep a domain without hostdevs "unnumbered" for the whole wait).
    while req.steps.is_empty()
        && start.elapsed() < Duration::from_secs(30)
        && daemon.domstate() == "running"
    {
        let view = query_pci(daemon)?;
        // The same numbered view twice: the firmware is done numbering.
        let settled = buses_numbered(&view) && previous.as_ref() == Some(&view);
        out.l2_qmp = view.clone();
        if settled {
            break;
        }
        previous = Some(view);
        std::thread::sleep(Duration::from_millis(50));
    }
    if req.kill_l2 {
        std::thread::sleep(Duration::from_millis(500));
        daemon.virsh(&["destroy", DOMAIN_NAME]);
        return Err(L1Error::Killed { how: "destroyed" });
    }
    // L2 powers off 5-10 s after `resume` here under KVM; the same
    // allowance as mflab's own L2 (TCG's included).
    let timeout = super::mflab_backend::l2_timeout(accel);
    if !req.steps.is_empty() {
        let work = serial.parent().unwrap_or(Path::new("."));
        super::steps::libvirt_steps(req, daemon, serial, work, timeout, out)?;
    }
    // libvirt's L2 goes through SeaBIOS (and its bridges) before its
    // kernel prints: half of L2's time for the first byte.
    let silent = || crate::lab_vm::l2::guest::silent_for(serial, boot, timeout / 2);
    let wait = daemon.wait_shut_off(timeout, &silent);
    let powered_off = wait == ShutOffWait::ShutOff;
    let silenced = match &wait {
        ShutOffWait::GaveUp(why) => Some(why.as_str()),
        _ => None,
    };
    out.timings
        .insert(Stage::LibvirtL2Boot, boot.elapsed().as_secs_f64());
    let report = lab::protocol::guest_report::read_l2_output(serial);
    out.l2_guest = parse_guest_report(&report);
    // Why QEMU ended, where the report does not say: its SHUTDOWN event
    // reaches virsh a moment after the domain is shut off.
    let mut reason = None;
    if !guest_report_complete(&report) {
        let until = Instant::now() + Duration::from_secs(2);
        while reason.is_none() && Instant::now() < until {
            reason = super::libvirtd::shutdown_reason(
                &std::fs::read_to_string(&events).unwrap_or_default(),
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    drop(watch);
    out.lab_fault = of_libvirt_l2(&report, powered_off, reason.as_deref(), silenced);
    if out.lab_fault.is_none() && req.steps.is_empty() {
        out.lab_fault = of_short_report(&report);
    }
    if !powered_off {
        return Err(match silenced {
            Some(why) => L1Error::Silent(why.to_string()),
            None => L1Error::NoPowerOff { timeout },
        });
    }
    if !guest_report_complete(&report) {
        return Err(L1Error::ReportCutShort);
    }
    progress(Progress::L2Booted);
    Ok(())
}

/// Runs `step` and records its seconds as `stage`.
fn timed<T>(out: &mut RunOutcome, stage: Stage, step: impl FnOnce() -> T) -> T {
    let t = Instant::now();
    let result = step();
    out.timings.insert(stage, t.elapsed().as_secs_f64());
    result
}

/// Whether the firmware has numbered the buses behind libvirt's root
/// ports: no bridge at all, or a function seen off bus 0 and none on bus
/// 0xff, where SeaBIOS puts a bridge's secondary bus while it probes it.
fn buses_numbered(view: &[GuestFunction]) -> bool {
    if !view.iter().any(GuestFunction::is_bridge) {
        return true;
    }
    view.iter().any(|f| f.bdf.bus != 0) && !view.iter().any(|f| f.bdf.bus == 0xff)
}

/// Step 5: the domain goes, whatever happened (libvirt reattaches on stop).
fn undefine(daemon: &Libvirtd) {
    if daemon.domstate() != "shut off" {
        daemon.virsh(&["destroy", DOMAIN_NAME]);
    }
    daemon.virsh(&["undefine", DOMAIN_NAME]);
}

fn query_pci(daemon: &Libvirtd) -> Result<Vec<GuestFunction>, L1Error> {
    let pci = daemon.virsh(&[
        "qemu-monitor-command",
        DOMAIN_NAME,
        r#"{"execute":"query-pci"}"#,
    ]);
    if !pci.ok {
        return Ok(Vec::new()); // the domain stopped meanwhile
    }
    let reply: serde_json::Value = serde_json::from_str(&pci.stdout).map_err(L1Error::QueryPci)?;
    let buses: Vec<qapi::qmp::PciInfo> =
        serde_json::from_value(reply["return"].clone()).map_err(L1Error::QueryPci)?;
    Ok(qmp_view(&buses))
}

#[cfg(test)]
mod tests {
    use super::*;
    use lab::PciAddress;

    fn f(bdf: &str, class: &str) -> GuestFunction {
        GuestFunction {
            bdf: bdf.parse::<PciAddress>().unwrap(),
            vendor: "0x1b36".into(),
            device: "0x000c".into(),
            class: class.into(),
            driver: None,
        }
    }

    #[test]
    fn buses_are_numbered_once_a_function_is_seen_behind_a_root_port() {
        let port = f("0000:00:02.0", "0x0604");
        assert!(!buses_numbered(std::slice::from_ref(&port)));
        assert!(buses_numbered(&[port, f("0000:01:00.0", "0x0300")]));
        assert!(buses_numbered(&[f("0000:00:05.0", "0x0300")]));
        // Seen: SeaBIOS probing behind a pcie-to-pci bridge on bus 0xff,
        // the display behind the other root port not numbered yet.
        let probing = [
            f("0000:00:01.0", "0x0604"),
            f("0000:01:00.0", "0x0604"),
            f("0000:ff:01.0", "0x0403"),
        ];
        assert!(!buses_numbered(&probing));
    }
}
