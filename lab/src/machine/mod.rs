//! The lab's own machinery, around the system under test: the
//! accelerator and its proof ([`accel`], [`kvm_proof`]), QEMU command
//! lines ([`qemu_cmdline`]), what L1's kernel must have
//! ([`kernel_needs`]), which libvirt a run uses ([`libvirt_binaries`]),
//! where a process waits ([`process_wait`]), and a share of the suite for
//! CI ([`partition`]).

pub mod accel;
pub mod kernel_needs;
pub mod kvm_proof;
pub mod libvirt_binaries;
pub mod partition;
pub mod process_wait;
pub mod qemu_cmdline;
