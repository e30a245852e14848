//! The reports of a suite run, each a consumer of the same
//! [`ScenarioReport`](crate::host::suite::attempt::ScenarioReport)s: the
//! text report, JSON, JUnit, the two backends side by side, and the
//! summary of passes, failures and lab faults.

pub mod compare;
pub mod json;
pub mod junit;
pub mod side_by_side;
pub mod step_lines;
pub mod summary;
pub mod text;
