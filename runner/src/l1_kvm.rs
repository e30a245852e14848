//! KVM inside L1 loads behind the agent (`images/l1-late-modules.txt`):
//! whatever starts an L2 (or a libvirtd, which probes `/dev/kvm` once, at
//! its start) waits for it here.
//!
//! Tried and removed: holding KVM's `apic_sw_disabled` static key on with
//! an idle VM (one vCPU that never runs), so that KVM's code is not
//! rewritten while an L2 runs (a rare soft lockup sat at that key's jump
//! site in `__apic_accept_irq`). With the idle VM present, libvirt's L2
//! sometimes died before printing anything and twice L1's own kernel
//! found its stack corrupted, 4 failures in 40 runs against none in 16
//! without it. The lockup is rarer, and L1 panics on it soon (`L1_TRIMS`)
//! so that the scenario runs again on a fresh L1.

use std::path::Path;
use std::time::{Duration, Instant};

/// L1's init writes this file when the late modules are in (its text:
/// what failed to load, if anything).
const DONE: &str = "/run/mflab/late-modules";
/// They take about 0.4 s under TCG; a minute means they never will.
const WAIT: Duration = Duration::from_secs(60);

pub fn ready_for_l2() -> Result<(), String> {
    let start = Instant::now();
    while !Path::new(DONE).exists() {
        if start.elapsed() > WAIT {
            return Err(format!(
                "L1's late modules (KVM) were not in after {} s: {DONE} never appeared; see L1's serial log",
                WAIT.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let failures = std::fs::read_to_string(DONE).unwrap_or_default();
    if !failures.trim().is_empty() {
        tracing::warn!("L1's late modules: {}", failures.trim());
    }
    Ok(())
}
