//! Driving L2 from inside L1 (the mflab backend): its QEMU over [`qmp`],
//! one run of the inner guest ([`guest`]), its control port for steps
//! ([`control`]), and hot-plug steps carried out over QMP ([`hotplug_run`]).

pub mod control;
pub mod guest;
pub mod hotplug_run;
pub mod qmp;
