//! L1's QEMU command line, a pure function of the topology, the images,
//! the accelerator and the work directory.

use std::path::{Path, PathBuf};

use lab::machine::accel::AccelChoice;
use lab::machine::qemu_cmdline::DirectBoot;
use lab::protocol::paths::{L1_SERIAL_LOG, WORK_MOUNT};

use crate::host::images::{L1Images, Userland};
use crate::host::topology::{IommuModel, Topology};

/// Kernel parameters that skip what the lab does not need, each measured
/// under TCG: the crypto self-tests at boot (about 0.3 s); write-protecting
/// the kernel image and checking every page table for W+X (about 0.2 s);
/// zeroing every page the kernel hands out (Debian's hardening default;
/// L1 is a throwaway lab VM).
/// And two for robustness: a CPU stuck in L1's kernel panics L1, so the
/// scenario is retried on a fresh L1 at once instead of waiting for its
/// timeout (about once in 25 L2s under TCG, L1's CPU spins at the jump
/// site of KVM's `apic_sw_disabled` static key in `__apic_accept_irq`
/// while KVM rewrites it; with the default threshold L1 panicked 48 s
/// in). A soft lockup is reported after twice `watchdog_thresh`; 5 s
/// leaves ample room for L1's real work, whose long loops (zeroing L2's
/// RAM, KVM_RUN) yield the CPU.
/// `no_timer_check`: the kernel's check that the timer ticks through the
/// IO-APIC within a busy loop panicked an L1 under TCG on a loaded machine
/// ("timer doesn't work through Interrupt-remapped IO-APIC"); the timer
/// works, the emulation was slow.
/// Hangs inside L1 become prompt, named panics (a panicked L1's QEMU ends,
/// with `panic=-1` and `-no-reboot`, and the runner names the panic): an
/// oops (TCG's stale-code "Oops: int3" left `text_mutex` held and froze
/// every later static-key flip) and a task in uninterruptible sleep for
/// [`HUNG_TASK_SECS`] (times the accelerator's time scale).
const L1_PANICS: &str = "oops=panic hung_task_panic=1";
pub const HUNG_TASK_SECS: u32 = 30;

const L1_TRIMS: &str =
    "cryptomgr.notests rodata=off init_on_alloc=0 softlockup_panic=1 watchdog_thresh=5 no_timer_check";

/// The accelerator's time scale, for the agent's own timeouts inside L1
/// (the kernel hands it to init, and so to the agent, as an environment
/// variable).
pub const TIME_SCALE_PARAM: &str = "mflab_time_scale";

/// Everything the command line depends on.
pub struct L1Config<'a> {
    pub topology: &'a Topology,
    pub images: &'a L1Images,
    pub accel: &'a AccelChoice,
    pub work_dir: &'a Path,
    pub memory_mib: u32,
    pub interactive: bool,
    /// QEMU logs every CPU reset to its log (`-d cpu_reset`), a triple
    /// fault as "Triple fault": under TCG the only trace of a guest whose
    /// kernel reset itself without a word on its console.
    pub log_resets: bool,
}

impl<'a> L1Config<'a> {
    /// The usual L1: 1 GiB, its serial console to a log file. What runs in
    /// it needs about 600 MiB at most (L2's 128 MiB of huge pages, a
    /// libvirt L2's 256 MiB, QEMU, libvirtd, L2's kernel in the page
    /// cache); every GiB more cost L1's boot about 0.2 s under TCG (the
    /// kernel initializes a page descriptor per 4 KiB).
    pub fn new(
        topology: &'a Topology,
        images: &'a L1Images,
        accel: &'a AccelChoice,
        work_dir: &'a Path,
    ) -> Self {
        L1Config {
            topology,
            images,
            accel,
            work_dir,
            memory_mib: 1024,
            interactive: false,
            log_resets: false,
        }
    }
}

/// L1's QEMU arguments: q35, the topology (IOMMU first), the host root
/// (or the `--release` root) over 9p read-only, the work directory over
/// 9p read-write.
pub fn l1_args(c: &L1Config) -> Vec<String> {
    let accel = c.accel.accel.qemu_name();
    let iommu_cmdline = match c.topology.iommu {
        IommuModel::Intel => "intel_iommu=on iommu=pt",
        IommuModel::Amd => "amd_iommu=on iommu=pt",
        // virtio-iommu remaps no interrupts: VFIO's type1 refuses its
        // groups ("Failed to set iommu for container: Operation not
        // permitted"; the kernel: "No interrupt remapping support") unless
        // allow_unsafe_interrupts is set, as on any host without IR. L1's
        // init sets it (busybox's insmod does not read the command line).
        IommuModel::Virtio => "iommu=pt mflab_allow_unsafe_interrupts=1",
    };
    let serial = if c.interactive {
        "mon:stdio".to_string()
    } else {
        format!("file:{}", c.work_dir.join(L1_SERIAL_LOG).display())
    };
    let (machine, devices) = super::interrupt_remapping::apply(
        c.accel.accel,
        c.topology.iommu,
        format!("q35,accel={accel}"),
        c.topology.device_args(),
    );
    let mut args = DirectBoot {
        name: "mflab-l1",
        machine: &machine,
        cpu: &c.accel.cpu,
        memory_mib: c.memory_mib,
        smp: 2,
        kernel: &c.images.boot_kernel,
        initrd: &c.images.initramfs,
        append: &format!(
            "console=ttyS0 {iommu_cmdline} {L1_TRIMS} {L1_PANICS} sysctl.kernel.hung_task_timeout_secs={} panic=-1 quiet loglevel=4 {} {TIME_SCALE_PARAM}={}",
            HUNG_TASK_SECS * c.accel.time_scale.max(1),
            l2_image_params(c.images),
            c.accel.time_scale.max(1)
        ),
    }
    .args();
    args.extend(["-serial".to_string(), serial]);
    if c.log_resets {
        args.extend(["-d".to_string(), "cpu_reset".to_string()]);
    }
    args.extend(devices);
    args.extend(
        [
            "-fsdev",
            &format!(
                "local,id=hostroot,path={},security_model=none,readonly=on,multidevs=remap",
                c.images.root.display()
            ),
            "-device",
            "virtio-9p-pci,fsdev=hostroot,mount_tag=host,bus=pcie.0,addr=0x02",
            "-fsdev",
            &format!(
                "local,id=work,path={},security_model=none,multidevs=remap",
                c.work_dir.display()
            ),
            "-device",
            "virtio-9p-pci,fsdev=work,mount_tag=work,bus=pcie.0,addr=0x03",
        ]
        .iter()
        .map(|s| s.to_string()),
    );
    args
}

/// Where L1's init finds L2's kernel and initramfs, as L1's init sees
/// them: in the host's root (shared at /host), or, when L1's root is a
/// release's, in the work directory (mounted at /newroot/mflab before
/// init binds them; [`L2_COPIES`] are put there). The kernel hands
/// parameters it does not know to init as environment variables. Quoted
/// when a path has spaces (the kernel strips the quotes).
fn l2_image_params(images: &L1Images) -> String {
    let param = |name: &str, path: &Path| {
        let path = path.display().to_string();
        if path.contains(char::is_whitespace) {
            format!("{name}=\"{path}\"")
        } else {
            format!("{name}={path}")
        }
    };
    let (kernel, initrd) = l2_paths_in_l1(images);
    format!(
        "{} {}",
        param("mflab_l2_kernel", &kernel),
        param("mflab_l2_initrd", &initrd)
    )
}

/// The names of L2's kernel and initramfs in the work directory, when L1's
/// root is not the host's.
pub const L2_COPIES: (&str, &str) = ("l2-vmlinux", "l2-initrd");

fn l2_paths_in_l1(images: &L1Images) -> (PathBuf, PathBuf) {
    match images.userland {
        Userland::Host => (
            Path::new("/host").join(
                images
                    .l2_kernel
                    .strip_prefix("/")
                    .unwrap_or(&images.l2_kernel),
            ),
            Path::new("/host").join(
                images
                    .l2_initrd
                    .strip_prefix("/")
                    .unwrap_or(&images.l2_initrd),
            ),
        ),
        Userland::Debian(_) => {
            let work = Path::new("/newroot").join(WORK_MOUNT.trim_start_matches('/'));
            (work.join(L2_COPIES.0), work.join(L2_COPIES.1))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lab::machine::accel::Accel;

    fn choice(accel: Accel) -> AccelChoice {
        AccelChoice {
            accel,
            cpu: accel.cpu_model().into(),
            reason: String::new(),
            l2: String::new(),
            l1_kvm_module: None,
            time_scale: 1,
        }
    }

    /// The arguments that differ between KVM and TCG, in order.
    fn accel_args(accel: Accel) -> Vec<String> {
        let topology = crate::host::topology::load("gpu-audio").unwrap();
        let images = L1Images::none();
        let accel = choice(accel);
        let args = l1_args(&L1Config::new(&topology, &images, &accel, Path::new("/w")));
        args.windows(2)
            .filter(|w| {
                matches!(w[0].as_str(), "-machine" | "-cpu") || w[1].starts_with("intel-iommu")
            })
            .flat_map(|w| w.to_vec())
            .collect()
    }

    #[test]
    fn kvm_l1_has_interrupt_remapping_tcg_l1_as_before() {
        assert_eq!(
            accel_args(Accel::Kvm),
            [
                "-machine",
                "q35,accel=kvm,kernel-irqchip=split",
                "-cpu",
                "host",
                "-device",
                "intel-iommu,caching-mode=on,intremap=on"
            ]
        );
        assert_eq!(
            accel_args(Accel::Tcg),
            [
                "-machine",
                "q35,accel=tcg",
                "-cpu",
                "max",
                "-device",
                "intel-iommu,caching-mode=on"
            ]
        );
    }

    #[test]
    fn behind_virtio_iommu_init_is_told_to_allow_unsafe_interrupts() {
        let images = L1Images::none();
        let accel = choice(Accel::Tcg);
        let append = |name: &str| {
            let topology = crate::host::topology::load(name).unwrap();
            let args = l1_args(&L1Config::new(&topology, &images, &accel, Path::new("/w")));
            let i = args.iter().position(|a| a == "-append").unwrap();
            args[i + 1].clone()
        };
        assert!(append("gpu-audio-virtio-iommu").contains(" mflab_allow_unsafe_interrupts=1 "));
        assert!(!append("gpu-audio").contains("unsafe"));
    }

    #[test]
    fn a_hang_in_l1_is_a_prompt_panic_scaled_to_the_accelerator() {
        let topology = crate::host::topology::load("gpu-audio").unwrap();
        let images = L1Images::none();
        let mut accel = choice(Accel::Tcg);
        let append = |accel: &AccelChoice| {
            let args = l1_args(&L1Config::new(&topology, &images, accel, Path::new("/w")));
            let i = args.iter().position(|a| a == "-append").unwrap();
            args[i + 1].clone()
        };
        let tcg = append(&accel);
        for p in [
            "oops=panic",
            "hung_task_panic=1",
            "softlockup_panic=1",
            "panic=-1",
        ] {
            assert!(tcg.split(' ').any(|w| w == p), "{p} in {tcg}");
        }
        assert!(
            tcg.contains(" sysctl.kernel.hung_task_timeout_secs=30 "),
            "{tcg}"
        );
        accel.time_scale = 4;
        assert!(append(&accel).contains(" sysctl.kernel.hung_task_timeout_secs=120 "));
    }

    #[test]
    fn l2_image_paths_reach_init_whole() {
        let mut images = L1Images::none();
        images.l2_kernel = "/root/.cache/mflab/vmlinux/k.elf".into();
        images.l2_initrd = "/home/a user/l2.cpio".into();
        assert_eq!(
            l2_image_params(&images),
            "mflab_l2_kernel=/host/root/.cache/mflab/vmlinux/k.elf mflab_l2_initrd=\"/host/home/a user/l2.cpio\""
        );
    }

    #[test]
    fn a_release_root_is_shared_and_l2_comes_from_the_work_directory() {
        let topology = crate::host::topology::load("gpu-audio").unwrap();
        let mut images = L1Images::none();
        images.userland = Userland::parse("debian-13").unwrap();
        images.root = "/c/roots/debian-13-0123456789abcdef".into();
        images.l2_kernel = "/c/vmlinux/k.elf".into();
        let accel = choice(Accel::Tcg);
        let args = l1_args(&L1Config::new(&topology, &images, &accel, Path::new("/w")));
        assert!(args
            .iter()
            .any(|a| a.starts_with("local,id=hostroot,path=/c/roots/debian-13-0123456789abcdef,")));
        assert_eq!(
            l2_image_params(&images),
            "mflab_l2_kernel=/newroot/mflab/l2-vmlinux mflab_l2_initrd=/newroot/mflab/l2-initrd"
        );
    }
}
