//! libvirtd and its virsh on one of L1's vCPUs.
//!
//! At start libvirt 9.0 checks the guest CPU it asked for with one
//! `qom-get` per CPU property: about 400 QMP round trips, each a hand-off
//! between libvirtd's threads and QEMU's. Under TCG a hand-off between
//! two of L1's vCPUs is an emulated IPI and a wake-up from HLT; on one
//! vCPU it is a context switch. Measured in L1 with libvirt's debug log:
//! the check took 11.6 s spread over both vCPUs and 6.1 s on one. QEMU
//! is not held by this: libvirt gives it every CPU again when it starts
//! it (`qemuProcessInitCpuAffinity`).

use std::os::unix::process::CommandExt;
use std::process::Command;

/// The vCPU libvirtd and virsh run on.
const CPU: usize = 0;

/// Makes `command`'s process run on [`CPU`] only.
pub fn pin(command: &mut Command) -> &mut Command {
    // SAFETY: between fork and exec only async-signal-safe calls are
    // allowed; sched_setaffinity is a plain system call on a local set.
    unsafe {
        command.pre_exec(|| {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(CPU, &mut set);
            if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pinned_child_runs_on_one_cpu() {
        let out = pin(Command::new("sh").args(["-c", "grep Cpus_allowed_list /proc/self/status"]))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(text.split_whitespace().nth(1), Some("0"), "{text}");
    }
}
