//! mflab's runner, in two levels that the tree keeps apart:
//! - [`host`]: what runs on the host (L0): scenarios, images, booting
//!   L1, the suite, the reports;
//! - [`lab_vm`]: what runs inside the lab VM (L1) as `mflab agent`: the
//!   serve loop, the mflab and libvirt backends, KVM readiness.
//!
//! They speak only through `lab::protocol`. [`cli`] turns the command
//! line into calls of either; [`interrupt`] is the process's Ctrl-C flag.

pub mod cli;
pub mod host;
pub mod interrupt;
pub mod lab_vm;
