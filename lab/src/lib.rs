//! mflab's logic for both levels: what runs on L0 (the runner) and inside
//! L1 (the agent) alike, all of it without a VM, a QMP socket or an async
//! runtime (L2's driver lives beside its only caller, in the runner's
//! `lab_vm`). By concern, in the order data flows through them:
//! - [`schema`]: the domain XML read into its model, and the static rules
//!   R1–R8 with their diagnostics;
//! - [`pci`]: PCI addresses, the PCI view of a sysfs root, and a
//!   reporter's host read from a pasted listing;
//! - [`assign`]: the plan with the host rules R9–R13, the hot-plug plan
//!   of a step, and the binder that carries a plan out with a journal;
//! - [`diagnose`]: a pasted bug report read as it is, judged group by
//!   group, and the XML that fixes it;
//! - [`protocol`]: what passes between the runner and the agent in L1,
//!   and [`lab_fault`]: when a failure is the lab's own;
//! - [`machine`]: the lab's own machinery (accelerator, QEMU command
//!   lines, kernel needs, libvirt binaries);
//! - [`source`]: line:column positions in any input text.

pub mod assign;
pub mod diagnose;
pub mod lab_fault;
pub mod machine;
pub mod pci;
pub mod protocol;
pub mod schema;
pub mod source;

pub use pci::address::PciAddress;
pub use schema::diagnostic::{Diagnostic, RuleId, Severity};
