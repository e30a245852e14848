//! A KVM host made out of a TCG VM, for proving mflab's KVM path on a
//! machine without hardware virtualization (`runner/tests/vm_kvm_host.rs`):
//! the outer VM is an L1 like any other (the same kernel, initramfs, the
//! host's root shared read-only over 9p, a chroot of it) but under TCG
//! with `-cpu max`, which emulates AMD SVM with nested paging, so
//! kvm_amd loads in it and its `/dev/kvm` is real KVM. A script runs in
//! it as L1's agent would (`mflab probe`, `mflab run` there boot their
//! own L1 under that KVM).

use std::path::Path;
use std::time::Duration;

use lab::machine::accel::{Accel, AccelChoice};

use super::images::L1Images;
use super::l1::boot::{boot, BootError, BootOutcome};
use super::l1::cmdline::L1Config;
use super::topology::{parse, Topology};

/// What it needs: its own L1 of 1 GiB (the default), that L1's L2, QEMU
/// and mflab on both levels, page cache for the 9p root; 2 vCPUs, as the
/// machine has (with one, L2 under KVM in L1 under KVM printed nothing
/// within its deadline in 2 of 2 tries: too slow to prove anything).
pub const MEMORY_MIB: u32 = 3584;

/// The outer VM's accelerator: TCG, with the CPU that gives its guest SVM.
pub fn accel() -> AccelChoice {
    AccelChoice {
        accel: Accel::Tcg,
        cpu: Accel::Tcg.cpu_model().into(),
        reason: "a KVM host made from a TCG VM: TCG's emulated AMD SVM with nested paging".into(),
        l2: "KVM on TCG's emulated SVM".into(),
        l1_kvm_module: Some("kvm_amd".into()),
        time_scale: 1,
    }
}

/// No functions under test: only the IOMMU the lab's L1 always has.
pub fn topology() -> Topology {
    parse(
        "kvm-host",
        "description = 'a KVM host made from a TCG VM: no functions under test'",
    )
    .expect("a topology with no slots parses")
}

/// Boots the outer VM with `script` as what runs inside (its work
/// directory at /mflab) and waits for its power-off within `timeout`.
pub fn boot_kvm_host(
    images: &L1Images,
    script: &str,
    work_dir: &Path,
    timeout: Duration,
) -> Result<BootOutcome, BootError> {
    let topology = topology();
    let accel = accel();
    let config = L1Config {
        memory_mib: MEMORY_MIB,
        // Emulated SVM under TCG has reset the outer VM with no word on
        // its console; QEMU's log then says "Triple fault".
        log_resets: true,
        ..L1Config::new(&topology, images, &accel, work_dir)
    };
    boot(&config, script, timeout)
}
