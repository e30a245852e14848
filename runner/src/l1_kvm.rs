//! KVM inside L1, before an L2 starts: wait for its modules, which load
//! behind the agent (`images/l1-late-modules.txt`), and hold its APIC
//! switch still.
//!
//! The switch: KVM's `apic_sw_disabled` static key is on while any vCPU
//! has a software-disabled local APIC. Each L2 turns it on when its vCPU
//! is created and off again a second after its kernel enables the APIC,
//! by rewriting KVM's code while L2 runs it. Under TCG that rewrite
//! sometimes never finishes for the CPU executing the site: L1's CPU spun
//! at `__apic_accept_irq+0x72` (that key's jump site) for 48 s until the
//! soft-lockup panic, and the scenario ran again on a fresh L1 (about one
//! L2 in 20 on these machines). An idle VM whose one vCPU keeps its APIC
//! disabled for L1's whole life keeps the key on: it is switched once,
//! before the first L2, and never rewritten while one runs.

use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// L1's init writes this file when the late modules are in (its text:
/// what failed to load, if anything).
const DONE: &str = "/run/mflab/late-modules";
/// They take about 0.4 s under TCG; a minute means they never will.
const WAIT: Duration = Duration::from_secs(60);

/// Waits for KVM's modules, then makes sure the idle VM exists. Whatever
/// starts an L2 (or a libvirtd, which probes `/dev/kvm` once, at its
/// start) calls this first.
pub fn ready_for_l2() -> Result<(), String> {
    wait_loaded()?;
    static IDLE_VM: OnceLock<Option<IdleVm>> = OnceLock::new();
    IDLE_VM.get_or_init(|| match IdleVm::create() {
        Ok(vm) => Some(vm),
        Err(e) => {
            // No KVM in L1 (L2 then runs under TCG): nothing to hold still.
            tracing::info!("no idle KVM VM in L1: {e}");
            None
        }
    });
    Ok(())
}

fn wait_loaded() -> Result<(), String> {
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

// From <linux/kvm.h>: _IO(KVMIO = 0xAE, nr).
const KVM_CREATE_VM: libc::c_ulong = 0xAE01;
const KVM_CREATE_VCPU: libc::c_ulong = 0xAE41;
const KVM_CREATE_IRQCHIP: libc::c_ulong = 0xAE60;

/// A VM with an in-kernel irqchip and one vCPU that never runs, so its
/// local APIC stays software-disabled as it was created. Kept for the
/// process's life (the agent's, which is L1's).
struct IdleVm {
    _vm: OwnedFd,
    _vcpu: OwnedFd,
}

impl IdleVm {
    fn create() -> std::io::Result<Self> {
        let kvm = File::options().read(true).write(true).open("/dev/kvm")?;
        let vm = new_fd(ioctl(kvm.as_raw_fd(), KVM_CREATE_VM)?);
        // Without an in-kernel irqchip a vCPU gets no local APIC in KVM.
        ioctl(vm.as_raw_fd(), KVM_CREATE_IRQCHIP)?;
        let vcpu = new_fd(ioctl(vm.as_raw_fd(), KVM_CREATE_VCPU)?);
        Ok(IdleVm {
            _vm: vm,
            _vcpu: vcpu,
        })
    }
}

/// One of the KVM ioctls above, with 0 for its integer argument (machine
/// type, vCPU id; unused by the irqchip).
fn ioctl(fd: i32, request: libc::c_ulong) -> std::io::Result<i32> {
    // SAFETY: these ioctls take an integer, not a pointer: no memory is
    // passed.
    let ret = unsafe { libc::ioctl(fd, request, 0 as libc::c_ulong) };
    if ret < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(ret)
}

fn new_fd(raw: i32) -> OwnedFd {
    // SAFETY: what KVM_CREATE_VM and KVM_CREATE_VCPU return on success is
    // a new descriptor that this process owns.
    unsafe { OwnedFd::from_raw_fd(raw) }
}
