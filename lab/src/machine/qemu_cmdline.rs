//! The part of a QEMU command line that every lab VM shares: a headless
//! machine with no default devices that boots a kernel directly.

use std::path::Path;

/// The QEMU binary every level runs: the host's for L1, and inside L1 the
/// same one (L1 shares the host's root) for L2.
pub const QEMU: &str = "qemu-system-x86_64";

/// A command line as one shell-quoted line, to paste and rerun.
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

/// What a direct-kernel boot needs.
pub struct DirectBoot<'a> {
    /// The guest's name (`-name NAME,debug-threads=on`): QEMU then names
    /// its threads ("CPU 0/TCG", "CPU 1/KVM"), which is what a stall
    /// report lists with each thread's wait channel.
    pub name: &'a str,
    /// `-machine` value, e.g. `q35,accel=tcg`.
    pub machine: &'a str,
    pub cpu: &'a str,
    pub memory_mib: u32,
    pub smp: u32,
    pub kernel: &'a Path,
    pub initrd: &'a Path,
    pub append: &'a str,
}

impl DirectBoot<'_> {
    /// `-name … -machine … -cpu … -m … -smp … -nodefaults -no-user-config
    /// -display none -no-reboot -kernel … -initrd … -append …`, in that order.
    pub fn args(&self) -> Vec<String> {
        let name = format!("{},debug-threads=on", self.name);
        [
            "-name",
            &name,
            "-machine",
            self.machine,
            "-cpu",
            self.cpu,
            "-m",
            &self.memory_mib.to_string(),
            "-smp",
            &self.smp.to_string(),
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-no-reboot",
            "-kernel",
            &self.kernel.display().to_string(),
            "-initrd",
            &self.initrd.display().to_string(),
            "-append",
            self.append,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_direct_boot_is_headless_with_no_default_devices() {
        let args = DirectBoot {
            name: "mflab-l1",
            machine: "q35,accel=tcg",
            cpu: "max",
            memory_mib: 1024,
            smp: 2,
            kernel: Path::new("/k"),
            initrd: Path::new("/i"),
            append: "console=ttyS0",
        }
        .args();
        assert_eq!(args[..2], ["-name", "mflab-l1,debug-threads=on"]);
        assert_eq!(args[2..4], ["-machine", "q35,accel=tcg"]);
        assert!(args.windows(2).any(|w| w == ["-display", "none"]));
        assert!(
            args.contains(&"-nodefaults".to_string()) && args.contains(&"-no-reboot".to_string())
        );
        assert_eq!(args[args.len() - 2..], ["-append", "console=ttyS0"]);
    }
}
