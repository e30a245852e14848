//! The lab VM (L1) seen from the host: its command line, its QEMU
//! process, one boot, and a shared L1 that serves many scenarios.

pub mod boot;
pub mod cmdline;
pub mod heartbeat;
pub mod interrupt_remapping;
pub mod process;
pub mod shared;
