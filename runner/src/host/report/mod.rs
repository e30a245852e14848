//! The reports of a suite run, each a consumer of the same
//! [`ScenarioReport`](crate::host::suite::attempt::ScenarioReport)s: the
//! text report, JSON, JUnit, and the two backends side by side.

pub mod json;
pub mod junit;
pub mod side_by_side;
pub mod text;
