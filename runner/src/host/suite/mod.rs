//! Running scenarios: one [`attempt`] (with its retries), its comparison
//! with the [`expect`]ations, and the [`schedule`] that spreads a suite's
//! runs over L1s side by side.

pub mod attempt;
pub mod expect;
pub mod expect_steps;
pub mod schedule;
