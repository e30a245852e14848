//! Choosing an accelerator: on the host for L1 (and the CPU model that
//! lets L2 use KVM inside L1), and inside L1 for L2. The facts are
//! gathered from a root directory, so the decision is a pure function.
//!
//! Some machines have a `/dev/kvm` that is not hardware KVM (`kvm_pvm`,
//! no vmx/svm flag): a guest on it hangs. So KVM is chosen only
//! when the CPU has vmx/svm, a vendor module (kvm_intel/kvm_amd) is
//! loaded, and (on the host) a test guest proved to run under it
//! ([`crate::machine::kvm_proof`]); everything else gets TCG, which always works.

use std::path::Path;
use std::time::Duration;

use crate::machine::kvm_proof::{prove, KvmProof, ProofGuest};

use serde::{Deserialize, Serialize};

/// A QEMU accelerator, named as `-machine accel=` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    Kvm,
    Tcg,
}

impl Accel {
    /// QEMU's name for it (`accel=kvm`, `accel=tcg`).
    pub fn qemu_name(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }

    /// The `-cpu` model a guest on it gets: the host's own under KVM;
    /// under TCG `max`, which emulates AMD SVM with nested paging.
    pub fn cpu_model(self) -> &'static str {
        match self {
            Accel::Kvm => "host",
            Accel::Tcg => "max",
        }
    }

    /// libvirt's domain type for it (`<domain type='kvm'|'qemu'>`).
    pub fn libvirt_domain_type(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "qemu",
        }
    }
}

impl std::fmt::Display for Accel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.qemu_name())
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct AccelChoice {
    pub accel: Accel,
    /// `-cpu` for L1.
    pub cpu: String,
    /// Why, in one sentence a person can check.
    pub reason: String,
    /// What L2 will run on inside L1.
    pub l2: String,
    /// The KVM vendor module L1's CPU takes (for L2): kvm_amd under TCG's
    /// emulated SVM, the host's own under KVM.
    pub l1_kvm_module: Option<String>,
    /// How many times the usual timeouts L1 gets (1 as a rule): a KVM whose
    /// test guest took tens of seconds (a KVM host that is itself an
    /// emulated VM) runs L1 slower than TCG on the bare machine does.
    pub time_scale: u32,
}

/// The time scale for a KVM whose test guest ran in `millis`: hardware
/// KVM boots it in well under a second (1); a KVM host made from a TCG VM
/// took 29-55 s on a loaded machine (6-8), while its L1 needed over 60 s
/// to reach its agent. At most 8.
pub fn time_scale(millis: u64) -> u32 {
    (millis / 5000 + 1).min(8) as u32
}

/// What the probe looks at, gathered so the decision is a pure function.
pub struct HostFacts {
    pub dev_kvm: bool,
    pub cpu_flags: Vec<String>,
    pub vendor_module: Option<String>,
    pub nested: bool,
    /// The outcome of a test guest under `-accel kvm`, when one was run.
    pub kvm_proof: Option<KvmProof>,
}

pub fn gather(root: &Path) -> HostFacts {
    let cpuinfo = std::fs::read_to_string(root.join("proc/cpuinfo")).unwrap_or_default();
    let cpu_flags = cpuinfo
        .lines()
        .find(|l| l.starts_with("flags"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, f)| f.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default();
    let vendor_module = ["kvm_intel", "kvm_amd"]
        .into_iter()
        .find(|m| root.join("sys/module").join(m).exists())
        .map(str::to_string);
    let nested = vendor_module
        .as_ref()
        .and_then(|m| {
            std::fs::read_to_string(root.join("sys/module").join(m).join("parameters/nested")).ok()
        })
        .is_some_and(|v| matches!(v.trim(), "Y" | "1"));
    HostFacts {
        dev_kvm: root.join("dev/kvm").exists(),
        cpu_flags,
        vendor_module,
        nested,
        kvm_proof: None,
    }
}

pub fn decide(f: &HostFacts) -> AccelChoice {
    let hw = f.cpu_flags.iter().any(|x| x == "vmx" || x == "svm");
    let tcg = |reason: String| AccelChoice {
        accel: Accel::Tcg,
        // TCG emulates AMD SVM (never VMX): `max` gives L1 svm+npt, so
        // kvm-amd loads in L1 and L2 runs on KVM there.
        cpu: Accel::Tcg.cpu_model().into(),
        reason,
        l2: "KVM inside L1, on TCG's emulated AMD SVM (nested paging)".into(),
        l1_kvm_module: Some("kvm_amd".into()),
        time_scale: 1,
    };
    match (f.dev_kvm, hw, &f.vendor_module) {
        (false, _, _) => tcg("no /dev/kvm: software emulation (TCG)".into()),
        (true, false, _) => tcg("/dev/kvm exists but the CPU shows no vmx/svm flag: not hardware KVM (a guest would hang), so TCG".into()),
        (true, true, None) => tcg("the CPU has vmx/svm but neither kvm_intel nor kvm_amd is loaded, so TCG".into()),
        (true, true, Some(module)) if f.kvm_proof.as_ref().is_some_and(|p| !p.ran()) => tcg(format!(
            "/dev/kvm with {module} and a vmx/svm CPU, but {}: not usable, so TCG",
            f.kvm_proof.as_ref().expect("checked")
        )),
        (true, true, Some(module)) => {
            let scale = match &f.kvm_proof {
                Some(KvmProof::Ran { millis }) => time_scale(*millis),
                _ => 1,
            };
            // A KVM whose test guest took seconds is itself emulated (or
            // badly overloaded): say so, and that the timeouts grow.
            let speed = match scale {
                1 => "KVM".to_string(),
                n => format!("a slow KVM (an emulated one?), so timeouts x{n}"),
            };
            AccelChoice {
                accel: Accel::Kvm,
                cpu: Accel::Kvm.cpu_model().into(),
                reason: match &f.kvm_proof {
                    Some(proof) => {
                        format!("/dev/kvm with {module} and a vmx/svm CPU, and {proof}: {speed}")
                    }
                    None => format!("/dev/kvm with {module} and a vmx/svm CPU: {speed}"),
                },
                l2: if f.nested {
                    "KVM inside L1 (nested virtualization is on)".into()
                } else {
                    format!("TCG inside L1 ({module} has nested=N)")
                },
                l1_kvm_module: Some(module.clone()),
                time_scale: scale,
            }
        }
    }
}

/// How long the test guest may take to show progress (see
/// [`crate::machine::kvm_proof::prove`]): under hardware KVM a kernel prints its
/// first line within a second; on a KVM host that is itself an emulated
/// VM (as `vm_kvm_host` runs it), QEMU's own start takes seconds. A
/// `/dev/kvm` that hangs guests never answers, and costs this only where
/// the facts already say KVM.
pub const PROOF_DEADLINE: Duration = Duration::from_secs(20);

/// The host's facts, with a proof run only where the facts alone would
/// choose KVM (elsewhere it would change nothing and cost seconds).
pub fn probe_facts(guest: &ProofGuest) -> HostFacts {
    probe_facts_within(guest, PROOF_DEADLINE)
}

/// The same with another deadline: inside an emulated L1, QEMU itself
/// takes seconds to start.
pub fn probe_facts_within(guest: &ProofGuest, deadline: Duration) -> HostFacts {
    let mut facts = gather(Path::new("/"));
    if decide(&facts).accel == Accel::Kvm {
        facts.kvm_proof = Some(prove(
            crate::machine::qemu_cmdline::QEMU,
            "kvm",
            guest,
            deadline,
        ));
    }
    facts
}

pub fn probe(guest: &ProofGuest) -> AccelChoice {
    decide(&probe_facts(guest))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(dev_kvm: bool, flags: &[&str], module: Option<&str>, nested: bool) -> HostFacts {
        HostFacts {
            dev_kvm,
            cpu_flags: flags.iter().map(|s| s.to_string()).collect(),
            vendor_module: module.map(str::to_string),
            nested,
            kvm_proof: None,
        }
    }

    #[test]
    fn kvm_that_does_not_run_a_guest_is_tcg() {
        let mut f = facts(true, &["vmx"], Some("kvm_intel"), true);
        f.kvm_proof = Some(KvmProof::Hung { after_secs: 5 });
        let c = decide(&f);
        assert_eq!((c.accel, c.cpu.as_str()), (Accel::Tcg, "max"));
        assert!(c.reason.contains("no progress in 5 s"), "{}", c.reason);
        assert_eq!(c.l1_kvm_module.as_deref(), Some("kvm_amd"));
        f.kvm_proof = Some(KvmProof::Ran { millis: 300 });
        let c = decide(&f);
        assert_eq!(c.accel, Accel::Kvm);
        assert_eq!(c.time_scale, 1);
        f.kvm_proof = Some(KvmProof::Ran { millis: 28_934 });
        assert_eq!(decide(&f).time_scale, 6);
        f.kvm_proof = Some(KvmProof::Ran { millis: 300_000 });
        assert_eq!(decide(&f).time_scale, 8);
        assert!(c.reason.contains("ran under -accel kvm"), "{}", c.reason);
        assert_eq!(c.l1_kvm_module.as_deref(), Some("kvm_intel"));
    }

    #[test]
    fn a_dev_kvm_without_vmx_or_svm_is_not_trusted() {
        let c = decide(&facts(true, &["fpu", "sse2"], None, false));
        assert_eq!(c.accel, Accel::Tcg);
        assert!(c.reason.contains("no vmx/svm"), "{}", c.reason);
        assert_eq!(c.cpu, "max");
    }

    #[test]
    fn real_kvm_is_chosen_with_host_cpu() {
        let c = decide(&facts(true, &["vmx"], Some("kvm_intel"), true));
        assert_eq!((c.accel, c.cpu.as_str()), (Accel::Kvm, "host"));
        assert!(c.l2.contains("KVM"));
    }

    #[test]
    fn without_nested_l2_falls_back_to_tcg() {
        let c = decide(&facts(true, &["svm"], Some("kvm_amd"), false));
        assert!(c.l2.contains("TCG"), "{}", c.l2);
    }

    #[test]
    fn no_dev_kvm_is_tcg() {
        assert_eq!(
            decide(&facts(false, &["vmx"], Some("kvm_intel"), true)).accel,
            Accel::Tcg
        );
    }
}
