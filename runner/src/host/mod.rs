//! L0: everything the runner does on the host. It reads scenarios and
//! topologies, builds the images, boots L1 and hands it requests through
//! [`lab::protocol`], compares what comes back with the expectations,
//! and reports. Nothing here runs inside the lab VM.
//!
//! - [`scenario`], [`topology`]: the data a run starts from;
//! - [`images`]: the kernel and initramfs L1 and L2 boot;
//! - [`l1`]: L1's command line, process, boot, and shared L1s;
//! - [`libvirt_bin`]: `--libvirt-bin` checked before anything boots;
//! - [`suite`]: one attempt with its retries, expectations, the scheduler;
//! - [`run_error`]: whose failure a run that gave no outcome is;
//! - [`replay`]: `mflab diagnose --replay`, a report's XMLs run as scenarios;
//! - [`progress`], [`report`]: what the user sees while and after it runs.

pub mod images;
pub mod l0_qemu;
pub mod l1;
pub mod libvirt_bin;
pub mod progress;
pub mod replay;
pub mod report;
pub mod reported_host;
pub mod run_error;
pub mod scenario;
pub mod scenario_steps;
pub mod suite;
pub mod topology;
pub mod workdir;
