//! What L1's KVM saw of an L2 that died silent: two of KVM's own
//! tracepoints, armed around every L2 and kept only when the run is a
//! silent or reset L2 (`l1-kvm-trace.txt` in the work directory).
//!
//! An empty console says nothing about where L2 stopped. KVM does: a
//! triple fault is a `kvm_exit` with the vendor's shutdown reason (SVM's
//! `SVM_EXIT_SHUTDOWN`, 0x7f; VMX's `EXIT_REASON_TRIPLE_FAULT`, 2) and
//! L2's RIP, a VMRUN that failed is one with bit 31 set, and the
//! exceptions KVM injected on the way there are `kvm_inj_exception`
//! events. Both are rare in a healthy boot, so the
//! filter keeps the ring small and the cost is one comparison per exit.

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

    /// Copies what was traced into `work` (for a run whose L2 died silent).
    pub fn keep(&self, work: &Path) {
        let trace = std::fs::read_to_string(self.root.join("trace")).unwrap_or_default();
        let events: Vec<&str> = trace.lines().filter(|l| !l.starts_with('#')).collect();
        let text = if events.is_empty() {
            "no kvm_exit for a triple fault and no exception injected while L2 ran\n".to_string()
        } else {
            events.join("\n") + "\n"
        };
        let _ = std::fs::write(work.join(KVM_TRACE_LOG), text);
    }
}

impl Drop for KvmTrace {
    fn drop(&mut self) {
        for file in [
            "events/kvm/kvm_exit/enable",
            "events/kvm/kvm_inj_exception/enable",
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
    fn only_a_silent_or_reset_l2_keeps_the_trace() {
        let fault = |kind| LabFault::new(kind, "x");
        assert!(worth_keeping(Some(&fault(LabFaultKind::L2Silent))));
        assert!(worth_keeping(Some(&fault(LabFaultKind::L2Reset))));
        assert!(!worth_keeping(Some(&fault(LabFaultKind::L1Panic))));
        assert!(!worth_keeping(None));
    }
}
