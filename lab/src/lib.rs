//! mflab's logic that runs anywhere: the domain XML model, the partial
//! assignment rules, the host's PCI view, the plan and the binder.
//!
//! The modules, in the order data flows through them:
//! - [`xml_tree`] and [`domain_reader`] read XML into the [`domain`] model;
//! - [`rules`] checks the static rules R1–R8 on it;
//! - [`check`] is the front door that does both for one file;
//! - [`host`] reads the host's PCI view from a sysfs root;
//! - [`host_listing`] reads a reporter's host from a pasted IOMMU/PCI listing;
//! - [`plan`] decides detach/assign/unassigned/restore with R9–R13;
//! - [`bind`] carries a plan out on sysfs, with a journal for undo;
//! - [`hotplug`] plans a step (attach, detach) on a running L2 against the
//!   host now and what the domain holds;
//! - [`inner`] runs the inner guest (L2) over [`qmp`];
//! - [`protocol`] is what passes between the runner and the agent in L1,
//!   and [`lab_fault`] decides when a failure is the lab's own;
//! - [`accel`] picks an accelerator from a machine's facts;
//! - [`libvirt_binaries`] finds the libvirt a run uses (installed, or a build).

pub mod accel;
pub mod bind;
pub mod check;
pub mod device_text;
pub mod diagnostic;
pub mod domain;
pub mod domain_reader;
pub mod host;
pub mod host_listing;
pub mod hotplug;
pub mod hotplug_run;
pub mod inner;
pub mod kernel_needs;
pub mod kvm_proof;
pub mod l2_control;
pub mod lab_fault;
pub mod libvirt_binaries;
pub mod partition;
pub mod pci_address;
pub mod plan;
pub mod process_wait;
pub mod protocol;
pub mod qemu_cmdline;
pub mod qmp;
pub mod rules;
pub mod source;
pub mod xml_tree;

pub use diagnostic::{Diagnostic, RuleId, Severity};
pub use pci_address::PciAddress;
