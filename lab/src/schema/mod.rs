//! The domain XML and its static rules: read it ([`xml_tree`],
//! [`domain_reader`]) into the [`domain`] model, check R1–R8 on it
//! ([`rules`]), and say what is wrong where ([`diagnostic`], with [`crate::source`]);
//! [`check`] does both for one file; [`device_text`] keeps the devices as
//! the user wrote them.

pub mod check;
pub mod device_text;
pub mod diagnostic;
pub mod domain;
pub mod domain_reader;
pub mod rules;
pub mod xml_tree;
