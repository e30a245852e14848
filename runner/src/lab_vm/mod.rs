//! L1: what runs inside the lab VM, as `mflab agent …` (the runner copies
//! its own binary into L1's work directory). Nothing here runs on the
//! host; it talks to the runner only through [`lab::protocol`].
//!
//! - [`serve`]: the agent's loop over the mailbox, and the health check
//!   between two scenarios of a shared L1;
//! - [`mflab_backend`] and [`libvirt_backend`]: one scenario carried out by
//!   mflab's own logic or by a real libvirtd, as steps whose teardown
//!   mirrors their preparation;
//! - [`steps`]: scenario steps (attach, detach, reset) on a running L2, for
//!   both; [`reset_watch`]: what a reset made QEMU and L1's kernel say;
//! - [`l1_state`]: L1's PCI view before and after, shared by both;
//! - [`link_proof`]: L1's end of the link proof, and restore by use;
//! - [`libvirtd`], [`kvm`], [`l2_ram`]: the daemon, KVM readiness, L2's RAM;
//! - [`kvm_trace`]: what L1's KVM saw of an L2 that died silent;
//! - [`versions`]: L1's kernel, QEMU and libvirt versions, once per L1;
//! - [`error`]: why something the agent tried failed ([`L1Error`]).

pub mod error;
pub mod heartbeat;
pub mod kvm;
pub mod kvm_trace;
pub mod l1_state;
pub mod l2;
pub mod l2_ram;
pub mod libvirt_backend;
pub mod libvirt_check;
pub mod libvirt_domain;
pub mod libvirtd;
pub mod link_proof;
pub mod mflab_backend;
pub mod reset_watch;
pub mod serve;
pub mod steps;
pub mod versions;
pub mod virsh_session;

pub use error::L1Error;
