//! KVM inside L1, for L2. It loads behind the agent
//! (`images/l1-late-modules.txt`): whatever starts an L2 (or a libvirtd,
//! which probes `/dev/kvm` once, at its start) waits for it here. Then
//! L2's accelerator is decided as the host decides L1's (`lab::machine::accel`:
//! L1's facts, and a test guest that must run under `-accel kvm`), once
//! per L1: where L1 got no nested virtualization (no vmx/svm in L1, so no
//! vendor module and no /dev/kvm) or KVM does not run a guest there, L2
//! runs under TCG.

use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use lab::machine::accel::{decide, probe_facts_within, Accel, AccelChoice};
use lab::machine::kvm_proof::ProofGuest;

use super::L1Error;

/// L1's init writes this file when the late modules are in (its text:
/// what failed to load, if anything).
const DONE: &str = "/run/mflab/late-modules";
/// They take about 0.4 s under TCG; a minute means they never will.
const WAIT: Duration = Duration::from_secs(60);
/// The test guest under KVM inside L1: starting QEMU inside an emulated
/// L1 over a 9p root takes 1-2 s under TCG, more under load; a KVM
/// that hangs its guests is found out only by this deadline.
const PROOF_DEADLINE: Duration = Duration::from_secs(30);

pub fn ready_for_l2() -> Result<(), L1Error> {
    let start = Instant::now();
    while !Path::new(DONE).exists() {
        if start.elapsed() > WAIT {
            return Err(L1Error::LateModules {
                waited: WAIT,
                marker: DONE,
            });
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let failures = std::fs::read_to_string(DONE).unwrap_or_default();
    if !failures.trim().is_empty() {
        tracing::warn!("L1's late modules: {}", failures.trim());
    }
    Ok(())
}

/// L2's accelerator and why, decided on first use in this L1 (call after
/// [`ready_for_l2`]).
pub fn l2_choice() -> &'static AccelChoice {
    static CHOICE: OnceLock<AccelChoice> = OnceLock::new();
    CHOICE.get_or_init(|| {
        let deadline = PROOF_DEADLINE * time_scale();
        let choice = decide(&probe_facts_within(&ProofGuest::Bios, deadline));
        tracing::info!("L2's accelerator: {} ({})", choice.accel, choice.reason);
        choice
    })
}

pub fn l2_accel() -> Accel {
    l2_choice().accel
}

/// How many times the usual timeouts this L1 gets: the host's measure of
/// its own accelerator (`mflab_time_scale` on L1's kernel command line; 1
/// as a rule, more on a KVM host that is itself an emulated VM).
pub fn time_scale() -> u32 {
    std::env::var("mflab_time_scale")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1u32)
        .clamp(1, 8)
}
