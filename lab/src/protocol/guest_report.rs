//! What L2's init (`images/l2-init.sh`) prints on L2's console, and how
//! it is read: `MFLAB-L2-START <uptime>` when init starts, one
//! `MFLAB-L2-PCI <bdf> <vendor> <device> <class> <driver|->` per function
//! its kernel enumerated, `MFLAB-L2-DONE <uptime> <count>` at the end.
//! L2's console (an emulated UART inside an emulated machine) has been
//! seen to drop bytes ("MFLAB-L2-DON 7.58", "0x000c0x060400", "1234:111"
//! for "1234:1111"): each function's line ends with its own length
//! (` #57`), so a line with a byte cut out is not read; init prints the
//! lines twice, and a function is read from whichever copy came whole;
//! the count tells a report that lost both copies of a line.

use std::path::Path;

use super::outcome::GuestFunction;
use super::paths::L2_REPORT_LOG;
use super::stage::Stage;

/// Everything L2 said, as one text: its console (`serial_log`: the
/// kernel's messages, init's START line), then its report port's log
/// beside it (the report, DONE, READY), which the readers below take
/// alike. An L2 whose kernel has no virtio console reports on the
/// console alone.
pub fn read_l2_output(serial_log: &Path) -> String {
    let mut text = std::fs::read_to_string(serial_log).unwrap_or_default();
    if let Ok(port) = std::fs::read_to_string(serial_log.with_file_name(L2_REPORT_LOG)) {
        if !text.ends_with('\n') && !text.is_empty() {
            text.push('\n');
        }
        text.push_str(&port);
    }
    text
}

/// Whether L2 said anything yet, on its console or its report port.
pub fn l2_spoke(serial_log: &Path) -> bool {
    [
        serial_log.to_path_buf(),
        serial_log.with_file_name(L2_REPORT_LOG),
    ]
    .iter()
    .any(|p| std::fs::metadata(p).is_ok_and(|m| m.len() > 0))
}

/// The error of a run whose L2 powered off before its report was done.
pub const REPORT_CUT_SHORT: &str =
    "L2 powered off without finishing its report (see l2-serial.log and l2-report.log)";

pub const START: &str = "MFLAB-L2-START";
pub const PCI: &str = "MFLAB-L2-PCI";
pub const DONE: &str = "MFLAB-L2-DONE";
/// The link proof's result ([`super::link`]), before `DONE`.
pub const LINK: &str = "MFLAB-L2-LINK";
/// Printed once L2's init listens on its second serial port.
pub const READY: &str = "MFLAB-L2-READY";
pub const STEP_PCI: &str = "MFLAB-L2-STEP-PCI";
pub const STEP_DONE: &str = "MFLAB-L2-STEP-DONE";
/// On L2's kernel command line: stay up after the report, for steps.
pub const STEPS_KERNEL_ARG: &str = "mflab.steps";
/// On L2's kernel command line: answer the ACPI power button by powering
/// off (busybox acpid), as a guest OS does, for a reboot step.
pub const ACPI_KERNEL_ARG: &str = "mflab.acpi";
/// Written to L2's second serial port: power off.
pub const DONE_COMMAND: &str = "done\n";

/// Written to L2's second serial port: rescan and report, tagged `tag`
/// (`N.1`, `N.2`, … for step N: each ask its own).
pub fn rescan_command(tag: &str) -> String {
    format!("rescan {tag}\n")
}

/// What L2's init reported under `tag`, once its report is complete and
/// every line it counted was read (a line the console mangled makes the
/// report incomplete: ask again under a new tag).
pub fn parse_step_report(serial: &str, tag: &str) -> Option<Vec<GuestFunction>> {
    let count = counted(serial, &format!("{STEP_DONE} {tag} "))?;
    let rows = parse_rows(serial, &format!("{STEP_PCI} {tag} "));
    (rows.len() == count).then_some(rows)
}

/// Every `MFLAB-L2-PCI` line of L2's console, serial noise around it aside.
pub fn parse_guest_report(serial: &str) -> Vec<GuestFunction> {
    parse_rows(serial, &format!("{PCI} "))
}

/// Whether L2's first report lost a line on the console: fewer whole
/// `MFLAB-L2-PCI` lines than its `DONE` line counted (no `DONE`: see
/// [`guest_report_complete`]).
pub fn guest_report_short(serial: &str) -> bool {
    counted(serial, &format!("{DONE} "))
        .is_some_and(|count| parse_guest_report(serial).len() < count)
}

/// The line count of the first end line `done` (`<done><uptime> <count>`)
/// whose count reads.
fn counted(serial: &str, done: &str) -> Option<usize> {
    serial.lines().find_map(|l| {
        let rest = l.trim_end_matches('\r').split(done).nth(1)?;
        rest.split_whitespace().nth(1)?.parse().ok()
    })
}

/// The rows after `marker` whose length (` #N` at the end, counted from
/// the marker) says no byte was lost, each function once (init prints
/// every line twice); serial noise before the marker aside.
fn parse_rows(serial: &str, marker: &str) -> Vec<GuestFunction> {
    let mut seen = std::collections::BTreeSet::new();
    let mut rows: Vec<GuestFunction> = serial
        .lines()
        .filter_map(|line| {
            let line = line.trim_end_matches('\r');
            let from_marker = &line[line.find(marker)?..];
            let (text, length) = from_marker.rsplit_once(" #")?;
            if length.parse::<usize>().ok()? != text.len() {
                return None;
            }
            let rest = &text[marker.len()..];
            let f: Vec<&str> = rest.split_whitespace().collect();
            let [bdf, vendor, device, class, driver] = f.as_slice() else {
                return None;
            };
            Some(GuestFunction {
                bdf: bdf.parse().ok()?,
                vendor: vendor.to_string(),
                device: device.to_string(),
                class: class.to_string(),
                driver: (*driver != "-").then(|| driver.to_string()),
            })
        })
        .filter(|f| seen.insert(f.bdf))
        .collect();
    // In the kernel's order (a function read from the second copy only
    // would come last otherwise).
    rows.sort_by_key(|f| f.bdf);
    rows
}

/// Whether L2's init finished its report (its `DONE` line came through).
pub fn guest_report_complete(serial: &str) -> bool {
    serial.contains(DONE)
}

/// Whether L2's init listens for step commands (bytes sent before are lost).
pub fn guest_ready_for_steps(serial: &str) -> bool {
    serial
        .lines()
        .any(|l| l.trim_end_matches('\r').ends_with(READY))
}

/// Whether L2's init started at all.
pub fn guest_init_started(serial: &str) -> bool {
    serial.contains(START)
}

/// [`Stage::L2Boot`] (from `cont` to QEMU's exit) split by what L2's init
/// printed: its kernel's uptime when init started and when the report was
/// done. The rest is firmware and loading the kernel before, power-off after.
pub fn boot_stages(serial: &str, boot_secs: f64) -> Vec<(Stage, f64)> {
    let uptime = |marker: &str| -> Option<f64> {
        let marker = format!("{marker} ");
        serial
            .lines()
            .find_map(|l| {
                l.trim_end_matches('\r')
                    .split(marker.as_str())
                    .nth(1)
                    .map(str::to_string)
            })?
            .trim()
            .parse()
            .ok()
    };
    let (Some(start), Some(done)) = (uptime(START), uptime(DONE)) else {
        return Vec::new();
    };
    vec![
        (Stage::L2BootKernel, start),
        (Stage::L2BootInit, done - start),
        (Stage::L2BootFirmwareAndExit, (boot_secs - done).max(0.0)),
    ]
}

/// `serial` as L2's init prints it: each function's line with its length
/// (what `images/l2-init.sh` writes, for tests of the readers).
pub fn with_lengths(serial: &str) -> String {
    serial
        .split_inclusive('\n')
        .map(|l| {
            let body = l.trim_end_matches(['\r', '\n']);
            let end = &l[body.len()..];
            match [STEP_PCI, PCI].iter().find_map(|m| body.find(m)) {
                Some(at) => format!("{body} #{}{end}", body.len() - at),
                None => l.to_string(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn l2_init_prints_the_markers_read_here() {
        let init = include_str!("../../../images/l2-init.sh");
        // The console's end lines twice, as the function lines.
        for line in [
            format!("echo \"{READY}\""),
            format!("echo \"{DONE} $up $count\""),
        ] {
            assert_eq!(
                init.matches(&line).count(),
                2,
                "{line} is not printed twice"
            );
        }
        for marker in [START, DONE, STEP_DONE] {
            assert!(
                init.contains(&format!("echo \"{marker} ")),
                "l2-init.sh does not print {marker}"
            );
        }
        for marker in [PCI, STEP_PCI] {
            assert!(
                init.contains(&format!("report \"{marker}")),
                "l2-init.sh does not report with {marker}"
            );
        }
        assert!(init.contains("line=\"$1 ${d##*/} $vendor $device $class $drv\""));
        assert!(init.contains("lines=\"$lines$line #${#line}\n\""));
        assert!(init.contains("printf '%s%s' \"$lines\" \"$lines\""));
        assert!(init.contains(&format!("*\" {STEPS_KERNEL_ARG} \"*)")));
        assert!(init.contains("rescan)") && init.contains("done) break;;"));
        assert_eq!(rescan_command("2"), "rescan 2\n");
    }

    #[test]
    fn l2_init_reports_on_its_port_named_as_the_lab_names_it() {
        let init = include_str!("../../../images/l2-init.sh");
        let port = crate::protocol::paths::L2_REPORT_PORT;
        assert!(init.contains(&format!("[ \"$name\" = {port} ]")), "{port}");
        assert!(init.contains("[ -n \"$port\" ] && exec > \"$port\""));
        // START goes to the console first (a sign of life), then to the port.
        let exec = init.find("exec > \"$port\"").unwrap();
        let starts: Vec<usize> = init
            .match_indices(&format!("echo \"{START} "))
            .map(|(i, _)| i)
            .collect();
        assert!(
            starts.len() == 2 && starts[0] < exec && starts[1] > exec,
            "{starts:?}"
        );
        assert!(init.find(&format!("report \"{PCI}\"")).unwrap() > exec);
    }

    #[test]
    fn l2_s_output_is_its_console_then_its_report_port() {
        let dir = tempfile::tempdir().unwrap();
        let console = dir.path().join(crate::protocol::paths::L2_SERIAL_LOG);
        assert!(!l2_spoke(&console));
        assert_eq!(read_l2_output(&console), "");
        std::fs::write(&console, "MFLAB-L2-START 1.2").unwrap();
        assert!(l2_spoke(&console));
        let port = dir.path().join(L2_REPORT_LOG);
        std::fs::write(&port, "MFLAB-L2-START 1.2\nMFLAB-L2-DONE 1.5 0\n").unwrap();
        let all = read_l2_output(&console);
        assert_eq!(
            all,
            "MFLAB-L2-START 1.2\nMFLAB-L2-START 1.2\nMFLAB-L2-DONE 1.5 0\n"
        );
        assert!(guest_init_started(&all) && guest_report_complete(&all));
        // Only the port spoke (a console lost, or quiet): L2 spoke.
        std::fs::write(&console, "").unwrap();
        assert!(l2_spoke(&console));
    }

    #[test]
    fn a_step_report_is_read_by_its_number_and_only_once_complete() {
        let serial = &with_lengths("MFLAB-L2-PCI 0000:00:05.0 0x1234 0x1111 0x038000 -\nMFLAB-L2-DONE 2.5 1\nMFLAB-L2-STEP-PCI 1 0000:00:00.0 0x8086 0x1237 0x060000 -\nMFLAB-L2-STEP-DONE 1 3.0 1\nMFLAB-L2-STEP-PCI 2 0000:00:05.0 0x1234 0x1111 0x038000 -\n");
        assert_eq!(parse_guest_report(serial).len(), 1);
        let one = parse_step_report(serial, "1").unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].key(), "8086:1237@0000:00:00.0");
        assert!(
            parse_step_report(serial, "2").is_none(),
            "step 2 is not done yet"
        );
        // A line the console mangled: the count says the report is short.
        let mangled = &with_lengths("MFLAB-L2-STEP-PCI 3 0000:00:00.0 0x8086 0x1237 0x060000 -\nMFLAB-L2STEP-PCI 3 0000:00:05.0 0x1234 0x1111 0x038000 -\nMFLAB-L2-STEP-DONE 3 4.0 2\n");
        assert!(parse_step_report(mangled, "3").is_none());
        assert!(parse_step_report("MFLAB-L2STEP-DONE 1 3.0 0\n", "1").is_none());
        assert!(guest_report_complete(serial));
        assert!(!guest_ready_for_steps(serial));
        assert!(guest_ready_for_steps("x\r\nMFLAB-L2-READY\r\n"));
    }

    #[test]
    fn the_guest_report_is_read_from_serial_noise() {
        let serial = &with_lengths("[    0.5] random\r\nMFLAB-L2-PCI 0000:00:05.0 0x1234 0x1111 0x038000 -\r\n[ 0.6] noise MFLAB-L2-PCI 0000:00:00.0 0x8086 0x1237 0x060000 -\nMFLAB-L2-DONE 2.5 2\r\n");
        let rows = parse_guest_report(serial);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1].key(), "1234:1111@0000:00:05.0");
        assert_eq!(rows[1].driver, None);
        assert!(guest_report_complete(serial));
        assert!(!guest_init_started(serial));
        assert!(!guest_report_complete(&serial.replace("L2-DONE", "L2-DON")));
        assert!(!guest_report_short(serial));
        // A byte cut out of a line ("1234:111" for "1234:1111"): that line is
        // not read, and the report is short.
        let cut = serial.replace("0x1111", "0x111");
        assert_eq!(parse_guest_report(&cut).len(), 1);
        assert!(guest_report_short(&cut));
        // Printed twice, as init does: the whole copy is read, once, in
        // the kernel's order.
        let lines: String = serial
            .lines()
            .filter(|l| l.contains(PCI))
            .map(|l| format!("{l}\n"))
            .collect();
        let twice = format!(
            "{}{lines}MFLAB-L2-DONE 2.5 2\n",
            cut.replace("MFLAB-L2-DONE 2.5 2\r\n", "")
        );
        let rows = parse_guest_report(&twice);
        assert_eq!(
            rows.iter().map(|f| f.key()).collect::<Vec<_>>(),
            ["8086:1237@0000:00:00.0", "1234:1111@0000:00:05.0"]
        );
        assert!(!guest_report_short(&twice));
        assert!(!guest_report_short(&serial.replace("MFLAB-L2-DONE", "x")));
    }

    #[test]
    fn l2_boot_is_split_by_the_uptimes_init_printed() {
        let serial = "MFLAB-L2-START 2.25\r\nMFLAB-L2-PCI x\nMFLAB-L2-DONE 2.50\n[ 2.6] reboot\n";
        let stages = boot_stages(serial, 3.5);
        let names: Vec<Stage> = stages.iter().map(|(k, _)| *k).collect();
        assert_eq!(
            names,
            [
                Stage::L2BootKernel,
                Stage::L2BootInit,
                Stage::L2BootFirmwareAndExit
            ]
        );
        assert!((stages[0].1 - 2.25).abs() < 1e-9);
        assert!((stages[1].1 - 0.25).abs() < 1e-9);
        assert!((stages[2].1 - 1.0).abs() < 1e-9);
        assert!(boot_stages("MFLAB-L2-START 2.25\n", 3.5).is_empty());
    }
}
