//! L1's kernel, QEMU and libvirt versions, asked of the tools themselves
//! once per L1 (each process costs tens of milliseconds under TCG; an
//! agent serves every scenario of its L1, so once is per L1).

use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

use lab::machine::libvirt_binaries::LibvirtBinaries;
use lab::machine::qemu_cmdline::QEMU;
use lab::protocol::L1Versions;

static GATHERED: OnceLock<L1Versions> = OnceLock::new();

pub fn l1_versions() -> L1Versions {
    GATHERED.get_or_init(gather).clone()
}

fn gather() -> L1Versions {
    L1Versions {
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_default(),
        qemu: first_line(Path::new(QEMU), &[], "--version"),
        libvirt: libvirt_version(&LibvirtBinaries::installed()),
    }
}

/// `libvirtd --version` of the libvirt a run uses (another build's, with
/// `--libvirt-bin`: the report and the per-version expectations follow it).
pub fn libvirt_version(binaries: &LibvirtBinaries) -> String {
    first_line(&binaries.libvirtd, &binaries.env, "--version")
}

/// The tool's first line of output, or empty when it cannot run.
fn first_line(tool: &Path, env: &[(String, String)], arg: &str) -> String {
    Command::new(tool)
        .arg(arg)
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(|l| l.trim().to_string())
        })
        .unwrap_or_default()
}
