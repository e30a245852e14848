//! Scenario steps on a running L2, for both backends.
//!
//! - mflab: [`mflab_steps`] hands the run's journal and the domain's
//!   functions to `crate::lab_vm::l2::hotplug_run`, which carries the steps out over
//!   QMP; [`mflab_teardown`] reattaches every journal once L2 is gone.
//! - libvirt: [`libvirt_steps`] runs `virsh attach-device --live` /
//!   `detach-device --live` for each hostdev of a step, in the order
//!   written (one device per call, as virsh takes them), keeps libvirt's
//!   errors word for word, and reads the live domain (`virsh dumpxml`)
//!   after each step.
//!
//! After each step, on both, L2's init is asked over its second serial
//! port to rescan its PCI bus and report again, and L1's drivers are read.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::lab_vm::l2::control::ControlPort;
use crate::lab_vm::l2::hotplug_run::StepsRun;
use lab::assign::bind::{Detached, Sysfs};
use lab::assign::hotplug::Attached;
use lab::assign::plan::Plan;
use lab::lab_fault::{of_lost_ready, of_silent_guest};
use lab::protocol::guest_report::{guest_ready_for_steps, ACPI_KERNEL_ARG, STEPS_KERNEL_ARG};
use lab::protocol::paths::L2_CONTROL_LOG;
use lab::protocol::{function_rows, LiveHostdev, RunOutcome, RunRequest, StepAction, StepOutcome};
use lab::schema::check::check_text;
use lab::schema::device_text::device_texts;
use lab::schema::domain::AddressKind;

use super::l1_state::{sysfs, SYSFS};
use super::libvirtd::{Libvirtd, DOMAIN_NAME};
use super::L1Error;

/// L2's control port (its ttyS1), under L1's /run: Unix socket paths
/// must stay under 108 bytes.
pub const L2_CONTROL_SOCKET: &str = "l2ctl.sock";

/// Spare pcie-root-ports in libvirt's q35 L2: libvirt adds ports only for
/// the devices a domain has at define time, and a hot-plugged hostdev
/// needs an empty one.
const SPARE_ROOT_PORTS: usize = 4;

/// How long libvirt may take to finish a detach it reported as "sent"
/// (it waits 5 s for QEMU's DEVICE_DELETED itself, then goes on).
const LIBVIRT_DETACH_TIMEOUT: Duration = Duration::from_secs(20);

pub fn mflab_steps(req: &RunRequest, work: &Path, plan: &Plan, detached: Detached) -> StepsRun {
    let domain = check_text(&req.xml_name, &req.xml).domain;
    let managed = |f| {
        domain
            .devices
            .iter()
            .any(|d| d.pci_source() == Some(f) && d.hostdev.as_ref().is_some_and(|h| h.managed))
    };
    StepsRun {
        requests: req.steps.clone(),
        sysfs: sysfs().to_path_buf(),
        work: work.to_path_buf(),
        serial_log: work.join(lab::protocol::paths::L2_SERIAL_LOG),
        attached: Attached::from_plan(plan, &managed),
        detached: vec![detached],
        outcomes: Vec::new(),
    }
}

pub fn mflab_teardown(steps: StepsRun, out: &mut RunOutcome) {
    let t = Instant::now();
    out.steps = steps.outcomes.clone();
    if let Err(e) = steps.reattach_all(&Sysfs::new(SYSFS)) {
        let text = format!("reattach: {e}");
        out.error = Some(match out.error.take() {
            Some(first) => format!("{first}; {text}"),
            None => text,
        });
    }
    out.timings
        .insert(lab::protocol::Stage::Teardown, t.elapsed().as_secs_f64());
}

/// The lab's additions to libvirt's L2 domain for a run with steps: the
/// control port as a second serial port, spare root ports, and the
/// kernel argument that keeps L2's init up.
pub fn libvirt_domain_for_steps(xml: &str, resets: bool, acpi: bool) -> String {
    let mut extra = format!(
        "    <serial type='unix'><source mode='bind' path='/run/{L2_CONTROL_SOCKET}'/><target port='1'/></serial>\n"
    );
    // libvirt wants the root complex written first once any PCI controller is.
    extra.push_str("    <controller type='pci' index='0' model='pcie-root'/>\n");
    for i in 1..=SPARE_ROOT_PORTS {
        extra.push_str(&format!(
            "    <controller type='pci' index='{i}' model='pcie-root-port'/>\n"
        ));
    }
    let words = match acpi {
        true => format!(" {STEPS_KERNEL_ARG} {ACPI_KERNEL_ARG}"),
        false => format!(" {STEPS_KERNEL_ARG}"),
    };
    let xml = xml
        .replacen("</cmdline>", &format!("{words}</cmdline>"), 1)
        .replacen("  </devices>", &format!("{extra}  </devices>"), 1);
    if !resets {
        return xml;
    }
    // A reset step: L2 reboots in place (not destroyed, as the lab's L2
    // otherwise is on a reboot), and its QEMU traces vfio's reset paths.
    xml.replacen(
        "<domain type='",
        "<domain xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0' type='",
        1,
    )
    .replacen(
        "<on_reboot>destroy</on_reboot>",
        "<on_reboot>restart</on_reboot>",
        1,
    )
    .replacen(
        "</domain>",
        &format!(
            "  <qemu:commandline>\n    <qemu:arg value='-trace'/>\n    <qemu:arg value='{}'/>\n  </qemu:commandline>\n</domain>",
            crate::lab_vm::reset_watch::RESET_TRACE
        ),
        1,
    )
}

/// Every step through virsh, once L2's init has made its first report;
/// then L2 is told to power off.
pub fn libvirt_steps(
    req: &RunRequest,
    daemon: &Libvirtd,
    serial: &Path,
    work: &Path,
    timeout: Duration,
    out: &mut RunOutcome,
) -> Result<(), L1Error> {
    let start = Instant::now();
    loop {
        let console = lab::protocol::guest_report::read_l2_output(serial);
        if guest_ready_for_steps(&console) {
            break;
        }
        let silent = crate::lab_vm::l2::guest::silent_for(serial, start, timeout / 2);
        if silent.is_some() || start.elapsed() > timeout || daemon.domstate() == "shut off" {
            // An L2 whose init never spoke is the lab's (as without steps),
            // and so is one whose READY was lost on its console.
            out.lab_fault = of_silent_guest(&console).or_else(|| of_lost_ready(&console));
            return Err(silent.map_or(L1Error::NoFirstReport, L1Error::Silent));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let control = Path::new("/run").join(L2_CONTROL_SOCKET);
    let mut port = ControlPort::connect(&control, &work.join(L2_CONTROL_LOG))?;
    for (i, step) in req.steps.iter().enumerate() {
        let n = i + 1;
        let mut o = StepOutcome::default();
        if step.action.reboots() {
            libvirt_reset(daemon, serial, step.action, &mut o);
        }
        for (j, hostdev) in device_texts(&step.xml)
            .into_iter()
            .filter(|d| d.element == "hostdev")
            .enumerate()
        {
            let file = work.join(format!("step-{n}-hostdev-{j}.xml"));
            std::fs::write(&file, &hostdev.text)?;
            let verb = match step.action {
                StepAction::Attach => "attach-device",
                StepAction::Detach => "detach-device",
                StepAction::Reset | StepAction::Reboot => {
                    unreachable!("a reset or reboot step has no hostdev")
                }
            };
            let call = daemon.virsh(&[verb, DOMAIN_NAME, &file.to_string_lossy(), "--live"]);
            if !call.ok {
                o.error = Some(call.error_text());
                break;
            }
            if step.action == StepAction::Detach {
                let source = check_text("step", &hostdev.text)
                    .domain
                    .devices
                    .first()
                    .and_then(|d| d.pci_source());
                if let Some(source) = source {
                    if let Err(e) = wait_gone(daemon, source) {
                        o.error = Some(e.to_string());
                        break;
                    }
                }
            }
        }
        o.l1 = function_rows(sysfs()).unwrap_or_default();
        let (xml, live) = live_domain(daemon);
        o.live_xml = Some(xml);
        o.live = live;
        match port.ask_report(n) {
            Ok(view) => {
                o.l2_guest = view;
                o.l2_reported = true;
            }
            Err(e) => {
                o.error.get_or_insert(e.to_string());
            }
        }
        out.steps.push(o);
    }
    Ok(port.power_off()?)
}

/// `virsh reset` (QMP `system_reset` through libvirt), then the wait for
/// L2's init; what L2's QEMU (its log, libvirt keeps it) and L1's kernel
/// said goes to the outcome.
/// `virsh reset`, or `virsh reboot --mode acpi`: libvirt presses L2's
/// power button, L2 powers off, and libvirt (whose QEMU runs with
/// `-no-shutdown`) resets and resumes it, its "fake reboot".
fn libvirt_reset(daemon: &Libvirtd, serial: &Path, action: StepAction, o: &mut StepOutcome) {
    let watch = crate::lab_vm::reset_watch::ResetWatch::start(
        PathBuf::from(format!("/var/log/libvirt/qemu/{DOMAIN_NAME}.log")),
        serial.with_file_name(lab::protocol::paths::L2_REPORT_LOG),
    );
    let call = match action {
        StepAction::Reboot => daemon.virsh(&["reboot", DOMAIN_NAME, "--mode", "acpi"]),
        _ => daemon.virsh(&["reset", DOMAIN_NAME]),
    };
    if !call.ok {
        o.error = Some(call.error_text());
        return;
    }
    let timeout = crate::lab_vm::l2::hotplug_run::RESET_TIMEOUT * crate::lab_vm::kvm::time_scale();
    if let Err(e) = watch.wait_rebooted(timeout) {
        o.error = Some(e.to_string());
    }
    o.reset_log = watch.log();
}

/// Waits until the live domain no longer lists a hostdev of `source`.
fn wait_gone(daemon: &Libvirtd, source: lab::PciAddress) -> Result<(), L1Error> {
    let start = Instant::now();
    while start.elapsed() < LIBVIRT_DETACH_TIMEOUT {
        if !live_domain(daemon).1.iter().any(|h| h.host == source) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Err(L1Error::StillListed {
        host: source,
        waited: LIBVIRT_DETACH_TIMEOUT,
    })
}

/// `virsh dumpxml` of the running domain: its hostdev elements as
/// libvirt printed them, and each read into a [`LiveHostdev`].
fn live_domain(daemon: &Libvirtd) -> (String, Vec<LiveHostdev>) {
    let dump = daemon.virsh(&["dumpxml", DOMAIN_NAME]);
    if !dump.ok {
        return (dump.error_text(), Vec::new());
    }
    let hostdevs: Vec<String> = device_texts(&dump.stdout)
        .into_iter()
        .filter(|d| d.element == "hostdev")
        .map(|d| d.text)
        .collect();
    let live = hostdevs.iter().filter_map(|t| live_hostdev(t)).collect();
    (hostdevs.join("\n"), live)
}

/// One `<hostdev>` of libvirt's live XML: source, guest address type, alias.
pub fn live_hostdev(text: &str) -> Option<LiveHostdev> {
    let checked = check_text("live", text);
    let device = checked.domain.devices.first()?;
    let host = device.pci_source()?;
    let (address_type, guest) = match device.address.as_ref().map(|a| &a.kind) {
        None => ("none".to_string(), None),
        Some(AddressKind::Pci { address, .. }) => ("pci".to_string(), Some(*address)),
        Some(kind) => (kind.type_name().to_string(), None),
    };
    let alias = text.split("<alias name=").nth(1).and_then(|rest| {
        let quote = rest.chars().next()?;
        rest[1..].split(quote).next().map(str::to_string)
    });
    Some(LiveHostdev {
        host,
        address_type,
        guest,
        alias,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libvirts_live_hostdev_is_read_with_its_address_type_and_alias() {
        let text = "<hostdev mode='subsystem' type='pci' managed='yes'>\n  <driver name='vfio'/>\n  <source>\n    <address domain='0x0000' bus='0x00' slot='0x06' function='0x1'/>\n  </source>\n  <alias name='hostdev1'/>\n  <address type='unassigned'/>\n</hostdev>";
        let h = live_hostdev(text).unwrap();
        assert_eq!(h.host, "0000:00:06.1".parse().unwrap());
        assert_eq!(h.address_type, "unassigned");
        assert_eq!(h.alias.as_deref(), Some("hostdev1"));
        let pci = "<hostdev mode='subsystem' type='pci' managed='yes'><source><address domain='0x0000' bus='0x00' slot='0x06' function='0x0'/></source><alias name=\"hostdev0\"/><address type='pci' domain='0x0000' bus='0x07' slot='0x00' function='0x0'/></hostdev>";
        let h = live_hostdev(pci).unwrap();
        assert_eq!(
            (h.address_type.as_str(), h.guest),
            ("pci", Some("0000:07:00.0".parse().unwrap()))
        );
        assert_eq!(h.alias.as_deref(), Some("hostdev0"));
    }

    #[test]
    fn the_l2_domain_for_steps_has_a_control_port_spare_ports_and_the_kernel_argument() {
        let xml = "<domain><os><cmdline>console=ttyS0</cmdline></os>\n  <devices>\n  </devices>\n</domain>";
        let with = libvirt_domain_for_steps(xml, false, false);
        assert!(
            with.contains("<cmdline>console=ttyS0 mflab.steps</cmdline>"),
            "{with}"
        );
        let reboot = libvirt_domain_for_steps(xml, true, true);
        assert!(
            reboot.contains("<cmdline>console=ttyS0 mflab.steps mflab.acpi</cmdline>"),
            "{reboot}"
        );
        assert!(with.contains("<target port='1'/>"));
        assert_eq!(with.matches("pcie-root-port").count(), SPARE_ROOT_PORTS);
        assert!(with.find("pcie-root-port").unwrap() < with.find("</devices>").unwrap());
        assert!(!with.contains("qemu:commandline"));
    }

    #[test]
    fn a_domain_with_a_reset_step_reboots_in_place_and_traces_vfio_resets() {
        let xml = crate::lab_vm::libvirt_domain::l2_domain(
            &[],
            lab::machine::accel::Accel::Kvm,
            Path::new("/l2/vmlinux"),
            Path::new("/l2/initrd"),
            crate::lab_vm::l2::guest::L2_KERNEL_CMDLINE,
            Path::new("/mflab/l2-serial.log"),
        );
        let with = libvirt_domain_for_steps(&xml, true, false);
        assert!(with.contains("<on_reboot>restart</on_reboot>"), "{with}");
        assert!(with.contains("xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'"));
        assert!(with.contains("<qemu:arg value='enable=vfio_pci_*reset*'/>"));
        let checked = lab::schema::check::check_text("d.xml", &with);
        assert!(!checked.has_errors(), "{:?}", checked.diagnostics);
    }
}
