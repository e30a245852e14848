//! Where things are. The work directory is a host directory that L1 sees
//! at [`WORK_MOUNT`] over 9p; names below are relative to it unless they
//! are absolute paths inside L1.

/// The work directory as L1 sees it (L1's init mounts it there).
pub const WORK_MOUNT: &str = "/mflab";
/// L2's kernel and initramfs inside L1: L1's init binds the host's files
/// there (their host paths reach it on the kernel command line).
pub const L2_KERNEL: &str = "/l2/vmlinux";
pub const L2_INITRD: &str = "/l2/initrd";

/// Created by the agent script as its first step: "agent ready".
pub const READY_FILE: &str = "ready";
/// Rewritten by the agent every [`HEARTBEAT_EVERY_MS`] with a counter:
/// a runner that sees it stand still knows L1 as a whole stopped.
pub const HEARTBEAT_FILE: &str = "heartbeat";
pub const HEARTBEAT_EVERY_MS: u64 = 1000;
/// Written by the runner to ask a serving agent to stop.
pub const STOP_FILE: &str = "stop";
/// The agent script L1's init runs.
pub const AGENT_SCRIPT: &str = "agent.sh";
/// The runner's own binary, copied so that L1 runs exactly this build.
pub const AGENT_BINARY: &str = "mflab";

/// L1's serial console, its QEMU command line and QEMU's own output.
pub const L1_SERIAL_LOG: &str = "l1-serial.log";
pub const L1_CMDLINE: &str = "l1-cmdline.txt";
pub const L1_QEMU_LOG: &str = "l1-qemu.log";

/// The libvirtd of an L1 (one per L1, shared by its libvirt scenarios).
pub const LIBVIRTD_LOG: &str = "libvirtd.log";

/// A scenario's own files, in its directory.
pub const L2_SERIAL_LOG: &str = "l2-serial.log";
/// L2's report port (a virtio-serial port named [`L2_REPORT_PORT`]),
/// beside its console log.
pub const L2_REPORT_LOG: &str = "l2-report.log";
pub const L2_REPORT_PORT: &str = "mflab.report";
/// libvirt's L2: QEMU's SHUTDOWN events, as `virsh qemu-monitor-event` saw them.
pub const L2_EVENTS_LOG: &str = "l2-events.log";
/// What L2's init answered on its control port (step reports).
pub const L2_CONTROL_LOG: &str = "l2-control.log";
pub const L2_CMDLINE: &str = "l2-cmdline.txt";
pub const L2_QMP_TRANSCRIPT: &str = "l2-qmp-transcript.log";
/// libvirt's log of its L2 (L2's QEMU stderr and command line).
pub const L2_QEMU_LOG: &str = "l2-qemu.log";
pub const JOURNAL: &str = "journal.json";
pub const MANUAL_JOURNAL: &str = "manual-journal.json";
pub const L2_DOMAIN_XML: &str = "l2-domain.xml";

/// One-shot mode (an L1 for one scenario): request and result files.
pub const SINGLE_REQUEST: &str = "request.json";
pub const SINGLE_RESULT: &str = "result.json";
