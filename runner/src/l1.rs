//! Booting the lab VM (L1): its QEMU command line (a pure function), its
//! work directory, and one boot that runs an agent script and collects
//! what the agent wrote.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use lab::qemu_cmdline::DirectBoot;

use crate::accel::{Accel, AccelChoice};
use crate::images::L1Images;
use crate::topology::{IommuModel, Topology};
use crate::vm::{QemuProcess, VmError};

pub const QEMU: &str = "qemu-system-x86_64";
pub const SERIAL_LOG: &str = "l1-serial.log";
pub const CMDLINE_FILE: &str = "l1-cmdline.txt";

/// Kernel parameters that skip what the lab does not need, each measured
/// under TCG: the crypto self-tests at boot (about 0.3 s); write-protecting
/// the kernel image and checking every page table for W+X (about 0.2 s);
/// zeroing every page the kernel hands out (Debian's hardening default;
/// L1 is a throwaway lab VM).
/// And two for robustness: a CPU stuck in L1's kernel panics L1, so the
/// scenario is retried on a fresh L1 at once instead of waiting for its
/// timeout. Seen about once in 25 L2s: L1's CPU spinning at the jump site
/// of KVM's `apic_sw_disabled` static key in `__apic_accept_irq` while
/// KVM rewrites it (see `l1_kvm.rs`); with the default threshold (20 s)
/// L1 panicked 48 s in. A soft lockup is reported after twice
/// `watchdog_thresh`; 5 s leaves ample room for L1's real work, whose
/// long loops (zeroing L2's RAM, KVM_RUN) yield the CPU.
const L1_TRIMS: &str =
    "cryptomgr.notests rodata=off init_on_alloc=0 softlockup_panic=1 watchdog_thresh=5";

/// Everything the command line depends on.
pub struct L1Config<'a> {
    pub topology: &'a Topology,
    pub images: &'a L1Images,
    pub accel: &'a AccelChoice,
    pub work_dir: &'a Path,
    pub memory_mib: u32,
    pub interactive: bool,
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
        }
    }
}

/// L1's QEMU arguments: q35, the topology (IOMMU first), the host root
/// over 9p read-only, the work directory over 9p read-write.
pub fn l1_args(c: &L1Config) -> Vec<String> {
    let accel = match c.accel.accel {
        Accel::Kvm => "kvm",
        Accel::Tcg => "tcg",
    };
    let iommu_cmdline = match c.topology.iommu {
        IommuModel::Intel => "intel_iommu=on iommu=pt",
        IommuModel::Amd => "amd_iommu=on iommu=pt",
        IommuModel::Virtio => "iommu=pt",
    };
    let serial = if c.interactive {
        "mon:stdio".to_string()
    } else {
        format!("file:{}", c.work_dir.join(SERIAL_LOG).display())
    };
    let mut args = DirectBoot {
        machine: &format!("q35,accel={accel}"),
        cpu: &c.accel.cpu,
        memory_mib: c.memory_mib,
        smp: 2,
        kernel: &c.images.boot_kernel,
        initrd: &c.images.initramfs,
        append: &format!(
            "console=ttyS0 {iommu_cmdline} {L1_TRIMS} panic=-1 quiet loglevel=4 {}",
            l2_image_params(c.images)
        ),
    }
    .args();
    args.extend(["-serial".to_string(), serial]);
    args.extend(c.topology.device_args());
    args.extend(
        [
            "-fsdev",
            "local,id=hostroot,path=/,security_model=none,readonly=on,multidevs=remap",
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

/// Where L1's init finds L2's kernel and initramfs in the host's root:
/// the kernel hands parameters it does not know to init as environment
/// variables. Quoted when a path has spaces (the kernel strips the quotes).
fn l2_image_params(images: &L1Images) -> String {
    let param = |name: &str, path: &Path| {
        let path = path.display().to_string();
        if path.contains(char::is_whitespace) {
            format!("{name}=\"{path}\"")
        } else {
            format!("{name}={path}")
        }
    };
    format!(
        "{} {}",
        param("mflab_l2_kernel", &images.l2_kernel),
        param("mflab_l2_initrd", &images.l2_initrd)
    )
}

/// A work directory: removed at the end unless kept (a failed run, or
/// `--keep`); the report says where it is when it is kept.
pub struct WorkDir {
    dir: Option<tempfile::TempDir>,
    path: PathBuf,
}

impl WorkDir {
    pub fn new(prefix: &str) -> std::io::Result<Self> {
        let dir = tempfile::Builder::new().prefix(prefix).tempdir()?;
        let path = dir.path().to_path_buf();
        Ok(WorkDir {
            dir: Some(dir),
            path,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Keeps the directory on disk (it is not removed on drop) and returns its path.
    pub fn keep(&mut self) -> PathBuf {
        if let Some(dir) = self.dir.take() {
            let _ = dir.keep();
        }
        self.path.clone()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BootError {
    #[error("{0}")]
    Vm(#[from] VmError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

pub struct BootOutcome {
    /// From QEMU's start to power-off.
    pub elapsed: Duration,
    /// From QEMU's start to the agent's first step (`/mflab/ready` appears).
    pub ready: Option<Duration>,
}

/// Every agent script starts by creating this file: "agent ready".
pub const READY_FILE: &str = "ready";

/// How long L1 may take to reach its agent: 3-5 s as a rule here, 15 s on
/// a loaded machine. Seen once: L1's kernel stalled before its init with
/// CPU 0's timer gone quiet (RCU stall reports every 21 s, no panic: the
/// sysctl that would panic applies only once init starts). Waiting the
/// whole scenario timeout for such an L1 cost 4 minutes.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// The error for an L1 that did not reach its agent in time.
pub fn not_ready(work_dir: &Path) -> String {
    format!(
        "L1's agent was not ready within {READY_TIMEOUT:?}; serial log:\n{}",
        tail(&work_dir.join(SERIAL_LOG), 15)
    )
}

/// Boots L1 once with `agent_script` as what runs inside; waits for
/// power-off. The mflab binary is copied into the work directory, so L1
/// runs exactly this build whatever path it lives at.
pub fn boot(c: &L1Config, agent_script: &str, timeout: Duration) -> Result<BootOutcome, BootError> {
    let start = Instant::now();
    let process = start_l1(c, agent_script)?;
    let ready_file = c.work_dir.join(READY_FILE);
    let mut ready = None;
    process.wait(timeout, || {
        if ready.is_none() && ready_file.exists() {
            ready = Some(start.elapsed());
        }
        match ready {
            None if start.elapsed() > READY_TIMEOUT => Err(not_ready(c.work_dir)),
            _ => Ok(()),
        }
    })?;
    Ok(BootOutcome {
        elapsed: start.elapsed(),
        ready,
    })
}

/// Starts L1 with `agent_script` and returns at once; the caller owns the
/// process (killed when dropped).
pub fn start_l1(c: &L1Config, agent_script: &str) -> Result<QemuProcess, BootError> {
    let exe = std::env::current_exe()?;
    std::fs::copy(&exe, c.work_dir.join("mflab"))?;
    std::fs::write(
        c.work_dir.join("agent.sh"),
        format!(": > /mflab/{READY_FILE}\n{agent_script}"),
    )?;
    let args = l1_args(c);
    std::fs::write(c.work_dir.join(CMDLINE_FILE), shell_line(QEMU, &args))?;
    Ok(QemuProcess::spawn(
        QEMU,
        &args,
        &c.work_dir.join("l1-qemu.log"),
        c.interactive,
    )?)
}

/// The command line as one shell-quoted line, to paste and rerun.
pub fn shell_line(binary: &str, args: &[String]) -> String {
    let quote = |s: &str| {
        if s.chars()
            .all(|c| c.is_ascii_alphanumeric() || ",.=/:_-+".contains(c))
        {
            s.to_string()
        } else {
            format!("'{}'", s.replace('\'', "'\\''"))
        }
    };
    std::iter::once(binary.to_string())
        .chain(args.iter().map(|a| quote(a)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The last `n` lines of a log, for failure reports.
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn l2_image_paths_reach_init_whole() {
        let mut images = L1Images::none();
        images.l2_kernel = "/root/.cache/mflab/vmlinux/k.elf".into();
        images.l2_initrd = "/home/a user/l2.cpio".into();
        assert_eq!(
            l2_image_params(&images),
            "mflab_l2_kernel=/root/.cache/mflab/vmlinux/k.elf mflab_l2_initrd=\"/home/a user/l2.cpio\""
        );
    }
}
