//! What L1's KVM saw of an L2 that died silent: three of KVM's own
//! tracepoints, armed around every L2 and kept only when the run is a
//! silent or reset L2 (`l1-kvm-trace.txt` in the work directory).
//!
//! An empty console says nothing about where L2 stopped. KVM does: a
//! triple fault is a `kvm_exit` with the vendor's shutdown reason (SVM's
//! `SVM_EXIT_SHUTDOWN`, 0x7f; VMX's `EXIT_REASON_TRIPLE_FAULT`, 2) and
//! L2's RIP, a VMRUN that failed is one with bit 31 set, and the
//! exceptions KVM injected on the way there are `kvm_inj_exception`
//! events. Both are rare in a healthy boot, so the filter keeps the ring
//! small and the cost is one comparison per exit. `kvm_emulate_insn` adds
//! each instruction KVM's own emulator decoded for L2 (its RIP, bytes and
//! length): TCG's SVM gives L1's KVM no decode assists and no next-RIP,
//! so L1's KVM decodes every MMIO access of L2 in software, and a wrong
//! length there would send L2 to a wrong RIP. The ring keeps the latest.

use std::path::{Path, PathBuf};

use lab::lab_fault::{LabFault, LabFaultKind};

/// Where the kept trace goes, in the run's work directory.
pub const KVM_TRACE_LOG: &str = "l1-kvm-trace.txt";

const TRACEFS: &str = "/sys/kernel/tracing";

/// The exit reason of a triple fault, by the CPU vendor L1 sees.
pub fn shutdown_exit_reason(cpuinfo: &str) -> u32 {
    if cpuinfo.contains("AuthenticAMD") || cpuinfo.contains("HygonGenuine") {
        0x7f
    } else {
        2
    }
}

/// Whether a run's lab fault is one the trace can explain.
pub fn worth_keeping(fault: Option<&LabFault>) -> bool {
    fault.is_some_and(|f| matches!(f.kind, LabFaultKind::L2Silent | LabFaultKind::L2Reset))
}

/// The two tracepoints, armed; the trace is cleared for each run.
pub struct KvmTrace {
    root: PathBuf,
}

impl KvmTrace {
    /// Arms the tracepoints, mounting tracefs first when L1 has not. None
    /// (with a warning) where L1's kernel has no tracefs or no KVM events:
    /// the run goes on without the trace.
    pub fn arm() -> Option<KvmTrace> {
        let root = PathBuf::from(TRACEFS);
        if !root.join("events").is_dir() {
            let _ = std::process::Command::new("mount")
                .args(["-t", "tracefs", "nodev", TRACEFS])
                .status();
        }
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let reason = shutdown_exit_reason(&cpuinfo);
        let settings = [
            (
                "events/kvm/kvm_exit/filter",
                format!("exit_reason == {reason}"),
            ),
            ("events/kvm/kvm_exit/enable", "1".to_string()),
            ("events/kvm/kvm_inj_exception/enable", "1".to_string()),
            ("events/kvm/kvm_emulate_insn/enable", "1".to_string()),
            ("trace", String::new()),
            ("tracing_on", "1".to_string()),
        ];
        for (file, value) in settings {
            if let Err(e) = std::fs::write(root.join(file), &value) {
                tracing::warn!("no KVM trace ({file}: {e})");
                return None;
            }
        }
        Some(KvmTrace { root })
    }

    /// Copies what was traced into `work` (for a run whose L2 died silent),
    /// each RIP named when it is one of L1's own kernel's.
    pub fn keep(&self, work: &Path) {
        let trace = std::fs::read_to_string(self.root.join("trace")).unwrap_or_default();
        let events: Vec<&str> = trace.lines().filter(|l| !l.starts_with('#')).collect();
        let mut text = if events.is_empty() {
            "no triple fault, failed entry, injected exception or emulated instruction while L2 ran\n".to_string()
        } else {
            events.join("\n") + "\n"
        };
        let rips: Vec<u64> = events.iter().filter_map(|l| rip_of(l)).collect();
        if !rips.is_empty() {
            let kallsyms = std::fs::read_to_string("/proc/kallsyms").unwrap_or_default();
            let symbols = l1_symbols(&kallsyms);
            for rip in rips {
                text.push_str(&match symbol_at(&symbols, rip) {
                    Some(name) => format!(
                        "rip {rip:#x} is L1's own {name}: L2's vCPU was at an address of L1's kernel\n"
                    ),
                    None => format!("rip {rip:#x} is no symbol of L1's kernel\n"),
                });
            }
        }
        let _ = std::fs::write(work.join(KVM_TRACE_LOG), text);
    }
}

/// The `rip 0x…` of a `kvm_exit` line.
fn rip_of(line: &str) -> Option<u64> {
    let hex = line.split(" rip 0x").nth(1)?.split_whitespace().next()?;
    u64::from_str_radix(hex, 16).ok()
}

/// `/proc/kallsyms`' text symbols (as root: with their addresses), sorted.
fn l1_symbols(kallsyms: &str) -> Vec<(u64, String)> {
    let mut symbols: Vec<(u64, String)> = kallsyms
        .lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            let address = u64::from_str_radix(words.next()?, 16).ok()?;
            let kind = words.next()?;
            let name = words.next()?;
            let module = words.next().unwrap_or("");
            (address != 0 && matches!(kind, "t" | "T"))
                .then(|| (address, format!("{name} {module}").trim().to_string()))
        })
        .collect();
    symbols.sort();
    symbols
}

/// `name+0xoff [module]` of the text symbol at or below `rip`, within 64 KiB.
fn symbol_at(symbols: &[(u64, String)], rip: u64) -> Option<String> {
    let i = symbols.partition_point(|(a, _)| *a <= rip).checked_sub(1)?;
    let (address, name) = &symbols[i];
    let offset = rip - address;
    (offset < 0x10000).then(|| match name.split_once(' ') {
        Some((sym, module)) => format!("{sym}+{offset:#x} {module}"),
        None => format!("{name}+{offset:#x}"),
    })
}

impl Drop for KvmTrace {
    fn drop(&mut self) {
        for file in [
            "events/kvm/kvm_exit/enable",
            "events/kvm/kvm_inj_exception/enable",
            "events/kvm/kvm_emulate_insn/enable",
        ] {
            let _ = std::fs::write(self.root.join(file), "0");
        }
        let _ = std::fs::write(self.root.join("events/kvm/kvm_exit/filter"), "0");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_triple_fault_is_the_vendors_shutdown_exit() {
        assert_eq!(shutdown_exit_reason("vendor_id\t: AuthenticAMD\n"), 0x7f);
        assert_eq!(shutdown_exit_reason("vendor_id\t: GenuineIntel\n"), 2);
    }

    #[test]
    fn a_rip_is_named_by_l1_s_symbol_below_it() {
        let line = "CPU 0/KVM-358 [000] ..... 88.436118: kvm_exit: vcpu 0 reason shutdown rip 0xffffffffc06cd20c info1 0x0000000000000000 info2 0x0 intr_info 0x80000b0e error_code 0x00000010";
        assert_eq!(rip_of(line), Some(0xffffffffc06cd20c));
        let kallsyms = "ffffffffc06cd000 t __svm_vcpu_run\t[kvm_amd]\nffffffffc06c0000 T svm_vcpu_run\t[kvm_amd]\nffffffff81000000 T _stext\nffffffffc06cd100 d some_data\t[kvm_amd]\n";
        let symbols = l1_symbols(kallsyms);
        assert_eq!(
            symbol_at(&symbols, 0xffffffffc06cd20c).as_deref(),
            Some("__svm_vcpu_run+0x20c [kvm_amd]")
        );
        assert_eq!(symbol_at(&symbols, 0x1000), None);
        assert_eq!(
            symbol_at(&symbols, 0xffffffff81100000),
            None,
            "beyond 64 KiB"
        );
    }

    #[test]
    fn only_a_silent_or_reset_l2_keeps_the_trace() {
        let fault = |kind| LabFault::new(kind, "x");
        assert!(worth_keeping(Some(&fault(LabFaultKind::L2Silent))));
        assert!(worth_keeping(Some(&fault(LabFaultKind::L2Reset))));
        assert!(!worth_keeping(Some(&fault(LabFaultKind::L1Panic))));
        assert!(!worth_keeping(None));
    }
}
