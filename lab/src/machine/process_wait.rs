//! Where a process waits, read from `/proc`: for a QEMU that runs and
//! does not answer, what each thread sleeps in (wchan) and the main
//! thread's kernel stack, read before it is killed. The same reading
//! serves L2's QEMU inside L1 and L1's QEMU on L0.

/// "main: kvm_vcpu_ioctl; CPU 0/KVM: …; stack: …" from /proc (threads
/// with the same name and wait counted once).
pub fn waiting_in(pid: u32) -> String {
    waiting_in_proc(std::path::Path::new("/proc"), pid)
}

fn waiting_in_proc(proc: &std::path::Path, pid: u32) -> String {
    let mut seen: Vec<String> = Vec::new();
    let mut tasks: Vec<_> = std::fs::read_dir(proc.join(format!("{pid}/task")))
        .into_iter()
        .flatten()
        .flatten()
        .map(|t| t.path())
        .collect();
    tasks.sort();
    for task in tasks {
        let read = |f: &str| {
            std::fs::read_to_string(task.join(f))
                .map(|t| t.trim().to_string())
                .unwrap_or_default()
        };
        let wait = format!("{}: {}", read("comm"), read("wchan"));
        if !seen.contains(&wait) {
            seen.push(wait);
        }
    }
    let stack: Vec<String> = std::fs::read_to_string(proc.join(format!("{pid}/stack")))
        .unwrap_or_default()
        .lines()
        .take(4)
        .filter_map(|l| l.split_whitespace().nth(1).map(str::to_string))
        .collect();
    if !stack.is_empty() {
        seen.push(format!("stack: {}", stack.join(" < ")));
    }
    if seen.is_empty() {
        "(nothing readable in /proc)".into()
    } else {
        seen.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_thread_s_wait_is_named_once_then_the_stack() {
        let t = tempfile::tempdir().unwrap();
        for (tid, comm, wchan) in [
            ("7", "qemu-system-x86", "do_sys_poll"),
            ("8", "CPU 0/TCG", "futex_wait_queue"),
            ("9", "CPU 1/TCG", "futex_wait_queue"),
        ] {
            let d = t.path().join("7/task").join(tid);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("comm"), format!("{comm}\n")).unwrap();
            std::fs::write(d.join("wchan"), wchan).unwrap();
        }
        std::fs::write(
            t.path().join("7/stack"),
            "[<0>] do_sys_poll+0x1/0x2\n[<0>] __x64_sys_ppoll+0x3/0x4\n",
        )
        .unwrap();
        assert_eq!(
            waiting_in_proc(t.path(), 7),
            "qemu-system-x86: do_sys_poll; CPU 0/TCG: futex_wait_queue; CPU 1/TCG: futex_wait_queue; stack: do_sys_poll+0x1/0x2 < __x64_sys_ppoll+0x3/0x4"
        );
        assert_eq!(waiting_in_proc(t.path(), 8), "(nothing readable in /proc)");
    }
}
