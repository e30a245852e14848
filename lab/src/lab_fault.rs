//! Whose failure is it? A lab fault is the emulator's or the lab VM's own
//! failure, not the system's under test: the runner retries such a run on
//! a fresh L1 and says so. Every decision that calls something a lab fault
//! is made here, for both backends, from facts a caller gathered, so each
//! one can be tested without a VM.
//!
//! What is the lab's, and why (seen under TCG's emulated SVM on these
//! machines): an L2 that was let run and whose init never printed a line
//! (its kernel prints panics at L2's log level, so these are resets or
//! hangs, and devices that really break L2 break it again on a retry); an
//! L2 QEMU that SIGKILL cannot end (a vCPU thread stuck in L1's kernel),
//! or that runs and does not answer QMP (where its threads wait is named);
//! a virsh call that never returns; an L1 that gives no outcome.

pub use crate::protocol::fault::{LabFault, LabFaultKind};
use crate::protocol::guest_report::{
    guest_init_started, guest_ready_for_steps, guest_report_complete, guest_report_short,
};

pub const SILENT_GUEST: &str =
    "L2 was resumed but its init never printed a line (nested virtualization under emulation)";

pub const GARBLED_CONSOLE: &str =
    "L2's init ran to its power-off, but its report came through L2's console short (bytes lost)";

/// The kernel's last words when init powers L2 off (a panic says
/// "Rebooting" or nothing instead).
const POWERED_OFF: &str = "reboot: Power down";

/// An L2 whose init powered it off (so it printed its whole report) but
/// whose console lacks the report's end: the emulated UART lost bytes.
/// Checked before [`of_silent_guest`], since the lost bytes may be its
/// first marker's.
pub fn of_garbled_console(serial: &str) -> Option<LabFault> {
    (serial.contains(POWERED_OFF) && !guest_report_complete(serial))
        .then(|| LabFault::new(LabFaultKind::L2ConsoleGarbled, GARBLED_CONSOLE))
}

pub const LINE_CUT: &str =
    "L2's init ran to the end of its report, but a line of it came through L2's console cut (bytes lost)";

/// An L2 whose report ended (its `DONE` line came) with fewer whole
/// function lines than init counted: a byte lost inside a line would
/// otherwise read as a function L2 does not have. Only where that report
/// is the verdict (no steps: a step run's own reports are asked for again).
pub fn of_short_report(serial: &str) -> Option<LabFault> {
    (guest_report_complete(serial) && guest_report_short(serial))
        .then(|| LabFault::new(LabFaultKind::L2ConsoleGarbled, LINE_CUT))
}

pub const READY_LOST: &str =
    "L2's init finished its report but its READY line never came through L2's console (bytes lost)";

/// An L2 meant for steps whose report ended but whose `READY` (printed
/// right after it) never arrived: lost on the console, as above.
pub fn of_lost_ready(serial: &str) -> Option<LabFault> {
    (guest_report_complete(serial) && !guest_ready_for_steps(serial))
        .then(|| LabFault::new(LabFaultKind::L2ConsoleGarbled, READY_LOST))
}

/// An L2 that was let run and whose console (after it powered off or was
/// killed) shows its init never started. When its kernel said why (an
/// oops or a panic before init, where no device of the scenario has a
/// driver yet), the fault names the kernel's first such line.
pub fn of_silent_guest(serial: &str) -> Option<LabFault> {
    if guest_init_started(serial) {
        return None;
    }
    let said = serial
        .lines()
        .find(|l| l.contains("BUG:") || l.contains("Kernel panic") || l.contains("Oops"));
    Some(match said {
        Some(line) => LabFault::new(
            LabFaultKind::L2Silent,
            format!(
                "L2's kernel failed before its init started: {}",
                without_timestamp(line)
            ),
        ),
        None => LabFault::new(LabFaultKind::L2Silent, SILENT_GUEST),
    })
}

pub const RESET_GUEST: &str =
    "L2 reset itself before its report was done, without a panic or an oops on its console (QEMU's SHUTDOWN event: reason guest-reset under -no-reboot: a triple fault)";

/// An L2 whose QEMU said it ended by a guest reset (`guest-reset`, its
/// SHUTDOWN event's reason) before its report was done, with no panic or
/// oops on its console, so a triple fault, not a hang or a power-off. Its
/// init may have started: L2's kernel prints an oops and a panic at its
/// log level (and `panic=-1` resets after saying so), and init itself
/// never reboots, so a silent reset is the CPU's, which under nested
/// emulation is the lab's. Seen (2026-12-03): a triple fault 4 s after
/// init's START, while it loaded its report port's modules.
pub fn of_guest_reset(shutdown_reason: Option<&str>, serial: &str) -> Option<LabFault> {
    let kernel_spoke = ["Kernel panic", "BUG:", "Oops"]
        .iter()
        .any(|w| serial.contains(w));
    (shutdown_reason == Some("guest-reset") && !guest_report_complete(serial) && !kernel_spoke)
        .then(|| LabFault::new(LabFaultKind::L2Reset, RESET_GUEST))
}

/// An L2 the runner ended because its console was still empty when its
/// allowance ran out (`why` says which allowance). Decided at that moment,
/// not from the console read after L2 was ended: an L2 that starts to speak
/// while it is being ended is a slow lab, and judging it by that late
/// console would turn the lab's slowness into the system's failure.
pub fn of_silence_verdict(why: &str, serial_after: &str) -> LabFault {
    let detail = if guest_init_started(serial_after) {
        format!(
            "{why} (its init spoke only after that, as it was ended: a slow L2, not a dead one)"
        )
    } else {
        why.to_string()
    };
    LabFault::new(LabFaultKind::L2Silent, detail)
}

/// How an L2 of the mflab backend ended, as the agent saw it.
pub struct MflabL2End<'a> {
    /// L2 was meant to boot and report (not QMP only, not killed on purpose).
    pub meant_to_report: bool,
    /// `cont` went through: L2's kernel was let run.
    pub resumed: bool,
    /// L2's QEMU was gone after SIGKILL and answered QMP while it ran;
    /// when not, this says so (and where its threads waited).
    pub stuck: Option<String>,
    pub serial: &'a str,
    /// The reason of QEMU's SHUTDOWN event, when one came.
    pub shutdown_reason: Option<&'a str>,
    /// Why the runner ended L2 for silence, when it did
    /// ([`of_silence_verdict`]).
    pub silenced: Option<&'a str>,
}

/// The mflab backend's L2: stuck beats everything (whatever L2 did, a QEMU
/// SIGKILL cannot end is L1's trouble); otherwise only a resumed L2 that
/// was meant to report and whose init never spoke (not one refused its
/// devices, nor one killed on purpose).
pub fn of_mflab_l2(end: &MflabL2End) -> Option<LabFault> {
    if let Some(stuck) = &end.stuck {
        return Some(LabFault::new(LabFaultKind::L2Stuck, stuck.clone()));
    }
    if !end.meant_to_report || !end.resumed || guest_report_complete(end.serial) {
        return None;
    }
    if let Some(why) = end.silenced {
        return Some(of_silence_verdict(why, end.serial));
    }
    of_guest_reset(end.shutdown_reason, end.serial)
        .or_else(|| of_garbled_console(end.serial))
        .or_else(|| of_silent_guest(end.serial))
}

pub const REPORTED_BUT_STUCK: &str =
    "L2 reported, but its QEMU did not exit (stuck in L1's kernel)";

/// The libvirt backend's L2 after `resume`: seen, an L2 that printed its
/// report and powered off while libvirt could not end its QEMU ("Failed to
/// terminate process … with SIGKILL"). `silenced` as for mflab's L2.
pub fn of_libvirt_l2(
    serial: &str,
    powered_off: bool,
    shutdown_reason: Option<&str>,
    silenced: Option<&str>,
) -> Option<LabFault> {
    if let (Some(why), false) = (silenced, guest_report_complete(serial)) {
        Some(of_silence_verdict(why, serial))
    } else if guest_report_complete(serial) {
        (!powered_off).then(|| LabFault::new(LabFaultKind::L2Stuck, REPORTED_BUT_STUCK))
    } else {
        of_guest_reset(shutdown_reason, serial)
            .or_else(|| of_garbled_console(serial))
            .or_else(|| of_silent_guest(serial))
    }
}

/// A virsh call: only one that did not return is the lab's; libvirt's
/// refusals are the verdict under test.
pub fn of_virsh_call(timed_out: bool, what_it_said: &str) -> Option<LabFault> {
    timed_out.then(|| LabFault::new(LabFaultKind::VirshHung, what_it_said))
}

/// An L1 whose QEMU ended before giving an outcome: a panic when L1's
/// console says so (with the panic's first lines), else an exit.
pub fn of_l1_exit(l1_serial: &str, detail: &str) -> LabFault {
    let lines: Vec<&str> = l1_serial.lines().collect();
    let first_panic = lines
        .iter()
        .position(|l| l.contains("Kernel panic") || l.contains("soft lockup"));
    match first_panic {
        Some(i) => {
            let end = (i + 3).min(lines.len());
            LabFault {
                panic_line: Some(without_timestamp(lines[i]).to_string()),
                ..LabFault::new(
                    LabFaultKind::L1Panic,
                    format!("{detail}: {}", lines[i..end].join(" / ").trim()),
                )
            }
        }
        None => LabFault::new(LabFaultKind::L1Exited, detail),
    }
}

/// A kernel log line without its "[    9.012345] " timestamp.
fn without_timestamp(line: &str) -> &str {
    let line = line.trim();
    match line.strip_prefix('[').and_then(|rest| rest.split_once(']')) {
        Some((_, after)) => after.trim_start(),
        None => line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn end(meant: bool, resumed: bool, stuck: Option<&str>, serial: &str) -> Option<LabFault> {
        of_mflab_l2(&MflabL2End {
            meant_to_report: meant,
            resumed,
            stuck: stuck.map(str::to_string),
            serial,
            shutdown_reason: None,
            silenced: None,
        })
    }

    #[test]
    fn a_silent_l2_whose_qemu_saw_a_guest_reset_is_named_a_reset() {
        let reset = |serial: &str| {
            of_mflab_l2(&MflabL2End {
                meant_to_report: true,
                resumed: true,
                stuck: None,
                serial,
                shutdown_reason: Some("guest-reset"),
                silenced: None,
            })
        };
        assert_eq!(reset("").unwrap().kind, LabFaultKind::L2Reset);
        // A panic resets too (panic=-1), after saying so: not a triple fault.
        assert_eq!(
            reset("[ 1.9] Kernel panic - not syncing: VFS\n")
                .unwrap()
                .kind,
            LabFaultKind::L2Silent
        );
        // Init spoke, then the CPU reset it without a word: still the lab's.
        assert_eq!(
            reset("MFLAB-L2-START 2.2\n").unwrap().kind,
            LabFaultKind::L2Reset
        );
        // An oops first: L2's kernel failed, and said so: the scenario's.
        assert!(reset("MFLAB-L2-START 2.2\n[ 3.1] BUG: unable to handle page fault\n").is_none());
        assert!(of_guest_reset(Some("guest-shutdown"), "").is_none());
        assert!(of_guest_reset(None, "").is_none());
    }

    #[test]
    fn only_a_resumed_guest_that_never_spoke_is_the_labs_fault() {
        assert_eq!(
            end(true, true, None, "").unwrap().kind,
            LabFaultKind::L2Silent
        );
        assert!(end(true, false, None, "").is_none(), "device_add refused");
        assert!(
            end(false, true, None, "").is_none(),
            "killed on purpose or QMP only"
        );
        // Init started: whatever went wrong after it is the scenario's.
        assert!(end(true, true, None, "MFLAB-L2-START 2.2\n").is_none());
        assert!(of_silent_guest("[ 1.9] Kernel panic - not syncing\n").is_some());
        // Seen (2026-12-03): L2's kernel ran into data under start_kernel.
        let oops = "[    0.284301] BUG: unable to handle page fault for address: 000002ffffffff82\n[    0.745631] RIP: 0010:init_task+0x22/0x2640\n[    2.517807] Kernel panic - not syncing: Attempted to kill the idle task!\n";
        assert_eq!(
            of_silent_guest(oops).unwrap().detail,
            "L2's kernel failed before its init started: BUG: unable to handle page fault for address: 000002ffffffff82"
        );
    }

    /// Seen in CI (2026-12-03, `--jobs 2`): the runner ended a silent L2 at
    /// its 20 s allowance, its init printed START as it was being ended, and
    /// the run was judged by that late console: a failure of the system.
    #[test]
    fn an_l2_ended_for_silence_is_the_labs_even_if_it_spoke_as_it_was_ended() {
        let why = "L2 printed nothing on its console within 20s of being let run";
        let late = "MFLAB-L2-START 21.3\n";
        let silenced = |serial| {
            of_mflab_l2(&MflabL2End {
                meant_to_report: true,
                resumed: true,
                stuck: None,
                serial,
                shutdown_reason: None,
                silenced: Some(why),
            })
        };
        let f = silenced(late).unwrap();
        assert_eq!(f.kind, LabFaultKind::L2Silent);
        assert!(f.detail.starts_with(why), "{}", f.detail);
        assert!(f.detail.contains("a slow L2"), "{}", f.detail);
        assert_eq!(silenced("").unwrap().detail, why);
        // Not ended for silence: the late console is the verdict, as before.
        assert!(end(true, true, None, late).is_none());
        let f = of_libvirt_l2(late, false, None, Some(why)).unwrap();
        assert_eq!(f.kind, LabFaultKind::L2Silent);
        assert!(of_libvirt_l2(late, false, None, None).is_none());
        // A whole report is never a silent L2.
        let done = "MFLAB-L2-START 1\nMFLAB-L2-DONE 2 0\n";
        assert!(of_libvirt_l2(done, true, None, Some(why)).is_none());
    }

    #[test]
    fn a_qemu_that_outlives_sigkill_is_the_labs_whatever_l2_did() {
        let f = end(
            false,
            true,
            Some("did not exit within 20s"),
            "MFLAB-L2-DONE 3 0\n",
        )
        .unwrap();
        assert_eq!(f.kind, LabFaultKind::L2Stuck);
        assert_eq!(f.to_string(), "did not exit within 20s");
    }

    #[test]
    fn libvirt_l2s_are_judged_by_their_console() {
        let done = "MFLAB-L2-START 1\nMFLAB-L2-DONE 2 0\n";
        assert!(of_libvirt_l2(done, true, None, None).is_none());
        assert_eq!(
            of_libvirt_l2(done, false, None, None).unwrap().kind,
            LabFaultKind::L2Stuck
        );
        assert_eq!(
            of_libvirt_l2("", true, None, None).unwrap().kind,
            LabFaultKind::L2Silent
        );
        assert_eq!(
            of_libvirt_l2("", true, Some("guest-reset"), None)
                .unwrap()
                .kind,
            LabFaultKind::L2Reset
        );
        // Seen: L2 reset before a byte, then libvirt (on_reboot=destroy)
        // ended its QEMU, whose last SHUTDOWN event says host-signal.
        assert_eq!(
            of_libvirt_l2("", true, Some("host-signal"), None)
                .unwrap()
                .kind,
            LabFaultKind::L2Silent
        );
        // Init started and stopped midway: the devices' doing, not the lab's.
        assert!(of_libvirt_l2("MFLAB-L2-START 1\n", true, None, None).is_none());
    }

    #[test]
    fn a_report_that_lost_bytes_before_power_off_is_the_consoles() {
        // Seen in CI: "MFLAB-L2-DON 7.58", then init powered L2 off.
        let garbled = "MFLAB-L2-START 6.85\nMFLAB-L2-PCI 0000:00:00.0 0x8086 0x29c0 0x060000 -\nMFLAB-L2-DON 7.58 1\n[ 10.15] reboot: Power down\n";
        let f = of_libvirt_l2(garbled, true, None, None).unwrap();
        assert_eq!(f.kind, LabFaultKind::L2ConsoleGarbled);
        assert_eq!(
            end(true, true, None, garbled).unwrap().kind,
            LabFaultKind::L2ConsoleGarbled
        );
        // Init stopped before its end (no power-off): not the console's.
        assert!(of_garbled_console("MFLAB-L2-START 1\n[ 3.0] Kernel panic\n").is_none());
        let whole = "MFLAB-L2-START 6.85\nMFLAB-L2-DONE 7.58 0\n[ 10.15] reboot: Power down\n";
        assert!(of_garbled_console(whole).is_none());
        // Seen in CI: "1234:111" for "1234:1111", the count whole.
        let whole = crate::protocol::guest_report::with_lengths(
            "MFLAB-L2-START 1\nMFLAB-L2-PCI 0000:01:00.0 0x1234 0x1111 0x030000 -\nMFLAB-L2-DONE 2 1\n",
        );
        assert!(of_short_report(&whole).is_none());
        let cut = whole.replace("0x1111", "0x111");
        assert_eq!(
            of_short_report(&cut).unwrap().kind,
            LabFaultKind::L2ConsoleGarbled
        );
        assert!(of_short_report("MFLAB-L2-START 1\n").is_none());
        // Meant for steps: the report ended, READY never came.
        let no_ready = "MFLAB-L2-START 6.85\nMFLAB-L2-DONE 7.58 0\nMFLAB-L2-REDY\n";
        assert_eq!(
            of_lost_ready(no_ready).unwrap().kind,
            LabFaultKind::L2ConsoleGarbled
        );
        assert!(of_lost_ready(&no_ready.replace("REDY", "READY")).is_none());
        assert!(of_lost_ready("MFLAB-L2-START 6.85\n").is_none());
    }

    #[test]
    fn only_a_virsh_call_that_hung_is_the_labs() {
        assert!(of_virsh_call(false, "group 3 is not viable").is_none());
        assert_eq!(
            of_virsh_call(true, "virsh start: timed out").unwrap().kind,
            LabFaultKind::VirshHung
        );
    }

    #[test]
    fn an_l1_exit_is_a_panic_when_its_console_says_so() {
        let log = "[ 3.1] ok\n[ 9.0] watchdog: BUG: soft lockup - CPU#1 stuck for 13s! [qemu-system-x86]\n[ 9.0] Modules linked in\n[ 9.1] x\n[ 9.2] LATER\n";
        let f = of_l1_exit(log, "L1 stopped during the scenario");
        assert_eq!(f.kind, LabFaultKind::L1Panic);
        assert!(f.detail.contains("soft lockup - CPU#1"), "{}", f.detail);
        assert_eq!(
            f.panic_line.as_deref(),
            Some("watchdog: BUG: soft lockup - CPU#1 stuck for 13s! [qemu-system-x86]")
        );
        assert!(
            !f.detail.contains("LATER"),
            "only the first lines: {}",
            f.detail
        );
        assert_eq!(
            of_l1_exit("[ 1.0] ok\n", "L1 stopped").kind,
            LabFaultKind::L1Exited
        );
    }
}
