//! PCI functions as a host shows them: an [`address`], the PCI view of a
//! sysfs root ([`view`]: L1's own, or a fake tree in tests), and a
//! reporter's host read from a pasted listing ([`listing`]).

pub mod address;
pub mod listing;
pub mod view;
