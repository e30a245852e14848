//! `mflab probe`: the runner's health check. The accelerator and why,
//! nested or not, QEMU's version, the kernel that will boot and whether it
//! has what L1 needs, busybox, libvirt for the libvirt backend; each
//! missing piece with the command that fixes it. Exit 1 when the main job
//! (`mflab run` of the suite) cannot run here.

use std::path::Path;

use lab::machine::accel::{decide, probe_facts};
use lab::machine::kernel_needs::describe;
use lab::machine::kvm_proof::{qemu_version, ProofGuest};
use lab::machine::qemu_cmdline::QEMU;

use super::{CliError, Outcome};
use crate::host::images::kernel_check::{check, needs_for};
use crate::host::images::{find_kernel, proof_guest_for};
use crate::host::topology::{load, IommuModel, BUILTIN};

pub fn run() -> Result<Outcome, CliError> {
    let mut blocking = 0;
    let mut fail = |what: String| {
        println!("  MISSING: {what}");
        blocking += 1;
    };

    let qemu = qemu_version(QEMU);
    match &qemu {
        Ok(v) => println!("qemu: {v}"),
        Err(e) => {
            println!("qemu: {e}");
            fail("QEMU: apt-get install qemu-system-x86".into());
        }
    }
    if !Path::new("/bin/busybox").is_file() {
        fail("/bin/busybox (L1's initramfs): apt-get install busybox-static".into());
    }

    let kernel = find_kernel();
    let guest = match &kernel {
        Ok(k) if qemu.is_ok() => proof_guest_for(k),
        _ => ProofGuest::Bios,
    };
    let facts = probe_facts(&guest);
    let choice = decide(&facts);
    println!("accelerator: {} (L1 cpu {})", choice.accel, choice.cpu);
    println!("  why: {}", choice.reason);
    match &facts.kvm_proof {
        Some(p) => println!("  proof: {p}"),
        None => println!("  proof: not run (the facts already rule KVM out)"),
    }
    println!(
        "  nested: {} (L2 gets {})",
        if facts.nested { "on" } else { "off" },
        choice.l2
    );
    match crate::host::l0_qemu::choose(&choice) {
        Ok(q) => {
            println!(
                "L0's QEMU (runs L1): {} at {}",
                q.describe(),
                q.binary.display()
            );
            println!("  why: {}", q.why);
        }
        Err(e) => fail(format!("L0's QEMU: {e}")),
    }

    match &kernel {
        Ok(k) => {
            println!("kernel: {} from {}", k.version, k.origin);
            println!(
                "  vmlinuz {}, modules {}",
                k.vmlinuz.display(),
                k.modules.display()
            );
            // The suite's scenarios run behind intel-iommu; a virtio-iommu
            // topology is for runs that ask for it (`--topology`, Debian
            // 13's kernel), so what it lacks is said but does not block.
            let (main, optional): (Vec<_>, Vec<_>) = BUILTIN
                .iter()
                .filter_map(|(n, _)| load(n).ok())
                .partition(|t| t.iommu != IommuModel::Virtio);
            let kvm = choice.l1_kvm_module.as_deref();
            let lacking = check(k, &needs_for(&main.iter().collect::<Vec<_>>(), kvm));
            if lacking.is_empty() {
                println!("  has what L1 needs for the suite's topologies");
            }
            for m in &lacking {
                fail(describe(m, &k.version));
            }
            for t in &optional {
                for m in check(k, &needs_for(&[t], kvm)) {
                    println!(
                        "  not for topology {}: {}",
                        t.name,
                        describe(&m, &k.version)
                    );
                }
            }
        }
        Err(e) => {
            println!("kernel: none ({e})");
            fail("a kernel: apt-get update (for Debian's linux-image-amd64), or --kernel host, or --kernel/--modules".into());
        }
    }

    let libvirtd = Path::new("/usr/sbin/libvirtd").is_file();
    let virsh = ["/usr/bin/virsh", "/usr/sbin/virsh"]
        .iter()
        .any(|p| Path::new(p).is_file());
    if libvirtd && virsh {
        println!("libvirt: libvirtd and virsh installed (libvirt backend can run)");
    } else {
        println!(
            "libvirt: {} (the libvirt backend needs both; scenarios listing it fail without): apt-get install libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients",
            match (libvirtd, virsh) {
                (false, false) => "no /usr/sbin/libvirtd, no virsh",
                (false, true) => "no /usr/sbin/libvirtd",
                _ => "no virsh",
            }
        );
    }

    Ok(if blocking == 0 {
        println!("ready: the main job can run here");
        Outcome::Clean
    } else {
        println!("not ready: {blocking} missing piece(s) above");
        Outcome::Failed
    })
}
