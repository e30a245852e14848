//! A reset step, watched from L1: what L2's QEMU said about resetting its
//! functions (its vfio messages and the `vfio_pci_*reset*` trace events it
//! was started with), what L1's kernel logged meanwhile, and L2's init
//! coming up again after the reboot.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use lab::protocol::guest_report::READY;

use super::L1Error;

/// QEMU's trace events for vfio-pci's reset paths (FLR, PM, hot reset and
/// its result), for L2's QEMU when a step resets it.
pub const RESET_TRACE: &str = "enable=vfio_pci_*reset*";

/// Where things stood when the reset was asked for.
pub struct ResetWatch {
    qemu_log: PathBuf,
    report_log: PathBuf,
    qemu_from: usize,
    kernel_from: usize,
    ready_before: usize,
}

fn kernel_log() -> Vec<String> {
    Command::new("/bin/busybox")
        .arg("dmesg")
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

fn ready_count(report_log: &PathBuf) -> usize {
    std::fs::read_to_string(report_log)
        .map(|t| t.lines().filter(|l| l.trim() == READY).count())
        .unwrap_or(0)
}

impl ResetWatch {
    /// `qemu_log`: L2's QEMU's stderr; `report_log`: L2's report port.
    pub fn start(qemu_log: PathBuf, report_log: PathBuf) -> ResetWatch {
        ResetWatch {
            qemu_from: std::fs::read_to_string(&qemu_log).map_or(0, |t| t.len()),
            kernel_from: kernel_log().len(),
            ready_before: ready_count(&report_log),
            qemu_log,
            report_log,
        }
    }

    /// Waits until L2's init says READY again: it rebooted and listens.
    pub fn wait_rebooted(&self, timeout: Duration) -> Result<(), L1Error> {
        let start = Instant::now();
        while ready_count(&self.report_log) <= self.ready_before {
            if start.elapsed() > timeout {
                return Err(L1Error::NotBack { timeout });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }

    /// QEMU's lines about vfio since the reset, then L1's kernel lines
    /// about vfio or any PCI function since then; a line said again (QEMU
    /// walks the reset paths once for the machine and once per device) is
    /// kept once, with how many times it was said.
    pub fn log(&self) -> Vec<String> {
        let mut kept: Vec<(String, usize)> = Vec::new();
        for line in self.lines() {
            match kept.iter_mut().find(|(l, _)| *l == line) {
                Some((_, n)) => *n += 1,
                None => kept.push((line, 1)),
            }
        }
        kept.into_iter()
            .map(|(l, n)| if n == 1 { l } else { format!("{l} (x{n})") })
            .collect()
    }

    fn lines(&self) -> Vec<String> {
        let qemu = std::fs::read_to_string(&self.qemu_log).unwrap_or_default();
        let mut lines: Vec<String> = qemu
            .get(self.qemu_from..)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("vfio"))
            .map(|l| format!("L2's QEMU: {}", l.trim()))
            .collect();
        lines.extend(
            kernel_log()
                .into_iter()
                .skip(self.kernel_from)
                .filter(|l| l.contains("vfio") || l.contains("pci 0000:") || l.contains("pcieport"))
                .map(|l| format!("L1's kernel: {}", l.trim())),
        );
        lines
    }
}
