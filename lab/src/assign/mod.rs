//! Assignment: the [`plan`] (what to detach, give, leave unassigned and
//! restore, with the host rules R9–R13), the [`hotplug`] plan of a step on
//! a running L2, and the [`bind`]er that carries a plan out on sysfs with
//! a journal for undo.

pub mod bind;
pub mod host_rules;
pub mod hotplug;
pub mod plan;
