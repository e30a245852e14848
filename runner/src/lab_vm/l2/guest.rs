//! The inner guest (L2): its QEMU command line (pure), and one run driven
//! over QMP: start paused, add the assigned functions with `device_add`
//! (function 0 of a shared slot last), record `query-pci`, resume, read
//! what L2's kernel reported on its serial line.
//!
//! L2 is an i440fx (`pc`) machine: its root bus takes `device_add` while
//! paused, so guest addresses are exactly the plan's (q35's pcie.0 takes
//! no hotplug). Slots 0 and 1 are the chipset's; the plan starts at 0x05.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use super::hotplug_run::StepsRun;
use super::qmp::{QmpError, QmpSession, ANSWER_TIMEOUT};
use crate::lab_vm::L1Error;
use lab::assign::plan::Plan;
use lab::lab_fault::{of_mflab_l2, of_short_report, LabFault, MflabL2End};
use lab::machine::accel::Accel;
use lab::machine::qemu_cmdline::DirectBoot;
use lab::protocol::guest_report::{
    boot_stages, guest_ready_for_steps, guest_report_complete, parse_guest_report, STEPS_KERNEL_ARG,
};
use lab::protocol::{GuestFunction, Stage};

/// Everything L2's command line depends on.
#[derive(Clone, Debug)]
pub struct L2Config {
    pub qemu: String,
    pub accel: Accel,
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    pub serial_log: PathBuf,
    pub qmp_socket: PathBuf,
    pub memory_mib: u32,
    /// A file (on hugetlbfs) that holds L2's RAM, mapped shared so that it
    /// outlives this L2 and the next one can reuse it (runner's `l2_ram`).
    pub ram_file: Option<PathBuf>,
    /// For a run with steps: L2's second serial port (ttyS1) on this
    /// socket, and [`STEPS_KERNEL_ARG`] on its kernel command line, so that
    /// its init stays up and reports again when asked.
    pub control_socket: Option<PathBuf>,
    /// Words added to L2's kernel command line (the link proof's).
    pub extra_cmdline: Vec<String>,
    /// Trace vfio's reset paths on stderr (a run with a reset step).
    pub trace_resets: bool,
}

/// L2's kernel command line: [`L2_KERNEL_CMDLINE`] and `extra` words.
pub fn l2_kernel_cmdline(extra: &[String]) -> String {
    let mut line = L2_KERNEL_CMDLINE.to_string();
    for word in extra {
        line.push(' ');
        line.push_str(word);
    }
    line
}

/// L2's kernel command line. Every item was measured in L2 under nested
/// KVM on TCG, where each VM exit costs tens of microseconds:
/// - `pci=noearly`: on an AMD family 0Fh CPU (what TCG's `max` model says
///   it is, and `-cpu host` passes on) the kernel looks for an AGP
///   aperture by reading the config space of all 256 buses with port I/O,
///   twice: 3.4 s of exits. The PCI subsystem still enumerates normally.
/// - `pci=lastbus=0` (same option, after a comma): on libvirt's q35 L2 the
///   kernel looks for peer host bridges ACPI did not describe by reading
///   the vendor ID of 32 slots on every bus up to the last one its tables
///   allow (`pcibios_fixup_peer_bridges`), each read a trapped ECAM access:
///   `pci_subsys_init` took 2.1-3.9 s, 12 ms with this (`initcall_debug`);
///   the root ports' buses are still found by the normal bridge scan.
///   mflab's `pc` L2 does not scan (no change there).
/// - `cryptomgr.notests`: the crypto self-tests (0.3 s).
/// - `ipv6.disable=1`: L2 has no network.
/// - `rodata=off`: skips write-protecting the kernel image and then
///   walking every page table to check it (0.25 s); L2 lives for seconds.
/// - `init_on_alloc=0`: no zeroing of every page handed out (0.2 s).
/// - `quiet loglevel=3`: every byte on the emulated UART costs exits.
/// - `panic=-1`: a panic ends QEMU (`-no-reboot`) instead of hanging.
/// - `maxcpus=1`: L2 has two vCPUs ([`L2_VCPUS`]) and boots one.
pub const L2_KERNEL_CMDLINE: &str =
    "console=ttyS0 quiet loglevel=3 panic=-1 tsc=reliable pci=noearly,lastbus=0 cryptomgr.notests ipv6.disable=1 rodata=off init_on_alloc=0 maxcpus=1";

/// L2's vCPUs: two, of which its kernel starts one (`maxcpus=1`). The
/// other keeps its local APIC software-disabled as KVM created it, and so
/// keeps KVM's `apic_sw_disabled` static key on for as long as this L2
/// exists. With one vCPU the key went off a second after L2's kernel
/// enabled its APIC, and KVM rewrote its own code while L2 was running
/// it; under TCG that sometimes left L1's CPU spinning at the rewritten
/// site (`__apic_accept_irq+0x72`) until the soft-lockup panic, about one
/// L2 in 20 here. Now the key changes only while no L2 exists.
pub const L2_VCPUS: u32 = 2;

pub fn l2_args(c: &L2Config) -> Vec<String> {
    let cpu = c.accel.cpu_model();
    let mut args = vec!["-S".to_string()];
    let mut machine = format!("pc,accel={}", c.accel.qemu_name());
    if let Some(path) = &c.ram_file {
        machine.push_str(",memory-backend=l2-ram");
        args.extend([
            "-object".to_string(),
            format!(
                "memory-backend-file,id=l2-ram,size={}M,mem-path={},share=on",
                c.memory_mib,
                path.display()
            ),
        ]);
    }
    let mut extra = c.extra_cmdline.clone();
    if c.control_socket.is_some() {
        extra.push(STEPS_KERNEL_ARG.to_string());
    }
    let append = l2_kernel_cmdline(&extra);
    args.extend(
        DirectBoot {
            name: "mflab-l2",
            machine: &machine,
            cpu,
            memory_mib: c.memory_mib,
            smp: L2_VCPUS,
            kernel: &c.kernel,
            initrd: &c.initrd,
            append: &append,
        }
        .args(),
    );
    // The report port: a virtio-serial port into a file beside the
    // console's, at slot 0x1f (past the plan's guest slots).
    let report_log = c
        .serial_log
        .with_file_name(lab::protocol::paths::L2_REPORT_LOG);
    args.extend([
        "-device".to_string(),
        "virtio-serial-pci,id=mflabvs,bus=pci.0,addr=0x1f".to_string(),
        "-chardev".to_string(),
        format!("file,id=mflabreport,path={}", report_log.display()),
        "-device".to_string(),
        format!(
            "virtserialport,bus=mflabvs.0,chardev=mflabreport,name={}",
            lab::protocol::paths::L2_REPORT_PORT
        ),
        "-serial".to_string(),
        format!("file:{}", c.serial_log.display()),
        "-qmp".to_string(),
        format!("unix:{},server=on,wait=off", c.qmp_socket.display()),
    ]);
    if c.trace_resets {
        args.extend([
            "-trace".to_string(),
            crate::lab_vm::reset_watch::RESET_TRACE.to_string(),
        ]);
    }
    if let Some(control) = &c.control_socket {
        args.extend([
            "-chardev".to_string(),
            format!(
                "socket,id=mflabctl,path={},server=on,wait=off",
                control.display()
            ),
            "-serial".to_string(),
            "chardev:mflabctl".to_string(),
        ]);
    }
    args
}

/// The `device_add` arguments for each assigned function, in realize order.
pub fn device_adds(plan: &Plan) -> Vec<qapi::qmp::device_add> {
    plan.realize_order()
        .into_iter()
        .enumerate()
        .map(|(i, a)| super::hotplug_run::device_add(a, &format!("hostdev{i}")))
        .collect()
}

/// What happened to L2.
#[derive(Debug, Default)]
pub struct InnerRun {
    pub qmp_view: Vec<GuestFunction>,
    pub guest_view: Vec<GuestFunction>,
    /// The failure text, when L2 could not be given its functions or did not report.
    pub error: Option<String>,
    pub transcript: Vec<String>,
    pub timings: Vec<(Stage, f64)>,
    /// Whether `cont` went through: L2's kernel was let run.
    pub resumed: bool,
    /// Decided by [`lab::lab_fault::of_mflab_l2`].
    pub lab_fault: Option<LabFault>,
    /// L2's QEMU stopped answering QMP, and where its threads waited.
    unanswered: Option<String>,
    /// Why L2 was ended for silence, decided when it was
    /// ([`lab::lab_fault::of_silence_verdict`]).
    silenced: Option<String>,
}

/// How far to take L2.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InnerDepth {
    QmpOnly,
    Boot,
    /// Boot, then SIGKILL L2 once it runs.
    BootAndKill,
}

/// Runs L2 once. Whatever happens, the QEMU process is gone on return
/// (`kill_on_drop`).
pub async fn run_inner_guest(
    c: &L2Config,
    plan: &Plan,
    depth: InnerDepth,
    timeout: Duration,
    steps: Option<&mut StepsRun>,
) -> InnerRun {
    let mut run = InnerRun::default();
    let stderr_log = c.serial_log.with_extension("qemu.log");
    let stderr = std::fs::File::create(&stderr_log)
        .map(Stdio::from)
        .unwrap_or_else(|_| Stdio::null());
    let start = Instant::now();
    let mut child = match tokio::process::Command::new(&c.qemu)
        .args(l2_args(c))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .kill_on_drop(true)
        .spawn()
    {
        Ok(child) => child,
        Err(e) => {
            run.error = Some(format!("cannot start {}: {e}", c.qemu));
            return run;
        }
    };
    let qemu_said = || {
        std::fs::read_to_string(&stderr_log)
            .unwrap_or_default()
            .trim()
            .to_string()
    };

    let mut qmp = match QmpSession::connect(&c.qmp_socket, ANSWER_TIMEOUT).await {
        Ok(q) => q,
        Err(e) => {
            let unanswered = unanswered_by(&mut child, &e);
            reap(&mut child).await;
            run.error = Some(format!("{e}; QEMU said: {}", qemu_said()));
            run.lab_fault = of_mflab_l2(&MflabL2End {
                meant_to_report: false,
                resumed: false,
                stuck: unanswered,
                serial: "",
                shutdown_reason: None,
                silenced: None,
            });
            return run;
        }
    };
    run.timings
        .push((Stage::L2QemuStart, start.elapsed().as_secs_f64()));

    let result = drive(
        &mut qmp, &mut child, plan, depth, timeout, &mut run, steps, c,
    )
    .await;
    // QEMU's last words (its SHUTDOWN event) came before its socket closed.
    if run.resumed {
        qmp.drain(Duration::from_millis(500)).await;
    }
    let shutdown_reason = qmp.shutdown_reason();
    run.transcript = std::mem::take(&mut qmp.transcript);
    if let Err(e) = result {
        let said = qemu_said();
        run.error = Some(if said.is_empty() {
            e.to_string()
        } else {
            format!("{e}; QEMU said: {said}")
        });
    }
    let reaped = reap(&mut child).await;
    let stuck = (!reaped)
        .then(|| {
            format!(
                "L2's QEMU did not exit within {REAP_TIMEOUT:?} of SIGKILL (stuck in L1's kernel)"
            )
        })
        .or(run.unanswered.take());
    if let Some(stuck) = &stuck {
        run.error = Some(match run.error.take() {
            Some(first) => format!("{first}; {stuck}"),
            None => stuck.clone(),
        });
    }
    let serial = if depth == InnerDepth::QmpOnly {
        String::new()
    } else {
        lab::protocol::guest_report::read_l2_output(&c.serial_log)
    };
    if depth != InnerDepth::QmpOnly {
        run.guest_view = parse_guest_report(&serial);
        if depth == InnerDepth::Boot && run.error.is_none() && !guest_report_complete(&serial) {
            run.error = Some(lab::protocol::guest_report::REPORT_CUT_SHORT.into());
        }
        let boot = run
            .timings
            .iter()
            .find(|(k, _)| *k == Stage::L2Boot)
            .map(|t| t.1);
        // With steps, L2's time from `cont` to power-off holds the steps
        // too: it is not split into boot stages.
        if let (Some(boot), None) = (boot, &c.control_socket) {
            run.timings.extend(boot_stages(&serial, boot));
        }
    }
    run.lab_fault = of_mflab_l2(&MflabL2End {
        meant_to_report: depth == InnerDepth::Boot,
        resumed: run.resumed,
        stuck,
        serial: &serial,
        shutdown_reason: shutdown_reason.as_deref(),
        silenced: run.silenced.as_deref(),
    });
    if run.lab_fault.is_none() && depth == InnerDepth::Boot && c.control_socket.is_none() {
        run.lab_fault = of_short_report(&serial);
    }
    run
}

/// A QMP failure; one QEMU did not answer also says where its threads
/// were waiting (a lab fault, see [`unanswered_by`]).
fn failed(run: &mut InnerRun, child: &mut tokio::process::Child, e: QmpError) -> L1Error {
    if let Some(why) = unanswered_by(child, &e) {
        run.unanswered = Some(why);
    }
    L1Error::Qmp(e)
}

/// When QEMU runs but did not answer (no socket, greeting or reply in
/// time): what it waited for, from each thread's wchan and the main
/// thread's kernel stack, read before it is killed. A QEMU that exited
/// said why on its stderr instead; that is not the lab's.
fn unanswered_by(child: &mut tokio::process::Child, e: &QmpError) -> Option<String> {
    if !e.unanswered() || !matches!(child.try_wait(), Ok(None)) {
        return None;
    }
    let waits = child
        .id()
        .map(lab::machine::process_wait::waiting_in)
        .unwrap_or_default();
    Some(format!(
        "L2's QEMU is running but did not answer: {e}; it was waiting in {waits}"
    ))
}

/// How long a SIGKILLed L2 may take to be gone.
const REAP_TIMEOUT: Duration = Duration::from_secs(20);

/// SIGKILL and wait, but not forever: a QEMU whose vCPU thread is stuck in
/// L1's kernel does not die, and the agent must still answer (the health
/// check then finds the QEMU and retires this L1). True when it is gone.
async fn reap(child: &mut tokio::process::Child) -> bool {
    let _ = child.start_kill();
    tokio::time::timeout(REAP_TIMEOUT, child.wait())
        .await
        .is_ok()
}

#[allow(clippy::too_many_arguments)]
async fn drive(
    qmp: &mut QmpSession,
    child: &mut tokio::process::Child,
    plan: &Plan,
    depth: InnerDepth,
    timeout: Duration,
    run: &mut InnerRun,
    steps: Option<&mut StepsRun>,
    c: &L2Config,
) -> Result<(), L1Error> {
    let t = Instant::now();
    for add in device_adds(plan) {
        qmp.execute(&add).await.map_err(|e| failed(run, child, e))?;
    }
    let pci = qmp
        .execute(&qapi::qmp::query_pci {})
        .await
        .map_err(|e| failed(run, child, e))?;
    run.qmp_view = qmp_view(&pci);
    run.timings
        .push((Stage::L2DeviceAdd, t.elapsed().as_secs_f64()));
    if depth == InnerDepth::QmpOnly {
        let _ = qmp.execute(&qapi::qmp::quit {}).await;
        return Ok(());
    }
    let t = Instant::now();
    qmp.execute(&qapi::qmp::cont {})
        .await
        .map_err(|e| failed(run, child, e))?;
    run.resumed = true;
    if depth == InnerDepth::BootAndKill {
        tokio::time::sleep(Duration::from_millis(500)).await;
        // The caller reaps it (and says so if it does not die).
        let _ = child.start_kill();
        return Err(L1Error::Killed {
            how: "killed with SIGKILL",
        });
    }
    if let (Some(steps), Some(control)) = (steps, &c.control_socket) {
        let silence = Silence {
            serial_log: &c.serial_log,
            timeout,
        };
        run_steps(qmp, child, steps, control, &silence, &mut run.silenced).await?;
    }
    let deadline = t + timeout;
    loop {
        match tokio::time::timeout(Duration::from_millis(250), child.wait()).await {
            Ok(_) => {
                run.timings.push((Stage::L2Boot, t.elapsed().as_secs_f64()));
                return Ok(());
            }
            Err(_) if Instant::now() > deadline => return Err(L1Error::NoPowerOff { timeout }),
            Err(_) => Silence {
                serial_log: &c.serial_log,
                timeout,
            }
            .check(t, &mut run.silenced)?,
        }
    }
}

/// An L2 whose console has not a byte long after `cont` will not speak:
/// its init prints within a few seconds of starting (mflab's L2 boots its
/// kernel directly: 3.3 s from `cont` to init here). It is ended at a third
/// of L2's time rather than all of it (a silent L2 is the lab's fault and
/// runs again).
struct Silence<'a> {
    serial_log: &'a Path,
    /// L2's whole time.
    timeout: Duration,
}

impl Silence<'_> {
    /// Err when L2 has been silent too long since `since`; the reason is
    /// also kept in `silenced`, since the console read after L2 is ended
    /// may no longer be empty.
    fn check(&self, since: Instant, silenced: &mut Option<String>) -> Result<(), L1Error> {
        match silent_for(self.serial_log, since, self.timeout / 3) {
            Some(why) => {
                *silenced = Some(why.clone());
                Err(L1Error::Silent(why))
            }
            None => Ok(()),
        }
    }
}

/// Why L2 counts as silent: `allowance` has passed since `resumed` and its
/// console log is still empty.
pub fn silent_for(serial_log: &Path, resumed: Instant, allowance: Duration) -> Option<String> {
    let spoke = lab::protocol::guest_report::l2_spoke(serial_log);
    (!spoke && resumed.elapsed() > allowance)
        .then(|| format!("L2 printed nothing on its console within {allowance:?} of being let run"))
}

/// The steps, once L2's init has made its first report; then L2 is told
/// to power off.
async fn run_steps(
    qmp: &mut QmpSession,
    child: &mut tokio::process::Child,
    steps: &mut StepsRun,
    control: &Path,
    silence: &Silence<'_>,
    silenced: &mut Option<String>,
) -> Result<(), L1Error> {
    let (serial_log, timeout) = (silence.serial_log, silence.timeout);
    let start = Instant::now();
    loop {
        let serial = lab::protocol::guest_report::read_l2_output(serial_log);
        if guest_ready_for_steps(&serial) {
            break;
        }
        if start.elapsed() > timeout {
            return Err(L1Error::NotReadyForSteps { timeout });
        }
        if let Ok(Some(_)) = child.try_wait() {
            return Err(L1Error::ReportCutShort);
        }
        silence.check(start, silenced)?;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let transcript = serial_log.with_file_name(lab::protocol::paths::L2_CONTROL_LOG);
    let mut port = super::control::ControlPort::connect(control, &transcript)?;
    steps.run_all(qmp, &mut port).await;
    Ok(port.power_off()?)
}

/// Every function in a `query-pci` reply, those behind bridges included.
/// query-pci gives class and subclass only (no prog-if): class is 16-bit.
pub fn qmp_view(buses: &[qapi::qmp::PciInfo]) -> Vec<GuestFunction> {
    fn walk(devices: &[qapi::qmp::PciDeviceInfo], out: &mut Vec<GuestFunction>) {
        for d in devices {
            out.push(GuestFunction {
                bdf: lab::PciAddress::new(0, d.bus as u8, d.slot as u8, d.function as u8),
                vendor: format!("{:#06x}", d.id.vendor),
                device: format!("{:#06x}", d.id.device),
                class: format!("{:#06x}", d.class_info.class),
                // mflab and libvirt both name assigned functions hostdevN.
                driver: d
                    .qdev_id
                    .starts_with("hostdev")
                    .then(|| "vfio-pci".to_string()),
            });
            if let Some(children) = d.pci_bridge.as_ref().and_then(|b| b.devices.as_ref()) {
                walk(children, out);
            }
        }
    }
    let mut out = Vec::new();
    for bus in buses {
        walk(&bus.devices, &mut out);
    }
    out
}

/// A short socket path: Unix sockets are limited to 108 bytes.
pub fn socket_path(dir: &Path) -> PathBuf {
    dir.join("l2.qmp")
}

#[cfg(test)]
mod tests {
    use super::*;
    use lab::assign::plan::Assign;
    use lab::PciAddress;

    #[test]
    fn an_l2_is_silent_only_when_its_console_is_empty_past_the_allowance() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("l2-serial.log");
        let resumed = Instant::now() - Duration::from_secs(5);
        // No file yet, or an empty one: silent once the allowance is past.
        assert!(silent_for(&log, resumed, Duration::from_secs(1)).is_some());
        std::fs::write(&log, "").unwrap();
        let why = silent_for(&log, resumed, Duration::from_secs(1)).unwrap();
        assert!(why.contains("printed nothing"), "{why}");
        assert!(silent_for(&log, resumed, Duration::from_secs(60)).is_none());
        std::fs::write(&log, "[    0.000000] Linux version").unwrap();
        assert!(silent_for(&log, resumed, Duration::from_secs(1)).is_none());
    }

    #[test]
    fn where_a_process_waits_is_read_from_its_threads() {
        let mut sleeper = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(100));
        let waits = lab::machine::process_wait::waiting_in(sleeper.id());
        sleeper.kill().unwrap();
        sleeper.wait().unwrap();
        assert!(waits.starts_with("sleep: "), "{waits}");
        assert_eq!(
            lab::machine::process_wait::waiting_in(u32::MAX),
            "(nothing readable in /proc)"
        );
    }

    #[test]
    fn function_0_of_a_shared_slot_is_added_last() {
        let a = |h: &str, g: &str, m: bool| Assign {
            written: None,
            host: h.parse::<PciAddress>().unwrap(),
            guest: g.parse().unwrap(),
            multifunction: m,
        };
        let plan = Plan {
            detach: vec![],
            assign: vec![
                a("0000:00:06.0", "0000:00:07.0", true),
                a("0000:00:06.1", "0000:00:07.1", false),
                a("0000:00:08.0", "0000:00:05.0", false),
            ],
            unassigned: vec![],
            restore: vec![],
            groups: vec![],
            warnings: vec![],
        };
        let adds = device_adds(&plan);
        let addrs: Vec<String> = adds
            .iter()
            .map(|d| d.arguments["addr"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(addrs, ["05.0", "07.1", "07.0"]);
        assert_eq!(adds[2].arguments["multifunction"], true);
        assert_eq!(adds[1].arguments["host"], "0000:00:06.1");
    }
}
