//! KVM inside L1 loads behind the agent (`images/l1-late-modules.txt`):
//! whatever starts an L2 (or a libvirtd, which probes `/dev/kvm` once, at
//! its start) waits for it here.

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
