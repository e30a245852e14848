//! What passes between the levels: the runner (L0) and the agent inside
//! the lab VM (L1) agree on these types and paths, and on nothing else.
//! Both sides compile this one module, so a mismatch cannot be built.
//!
//! - [`request`]: what the runner asks (a scenario run, libvirt's static check);
//! - [`outcome`]: what the agent reports (views, plan, errors, timings);
//! - [`stage`]: the named stages that timings and progress use;
//! - [`fault`]: a lab fault's kind and words (decided in `lab::lab_fault`);
//! - [`mailbox`]: request/result files in the shared work directory,
//!   written atomically, and the agent's progress lines;
//! - [`guest_report`]: the marker lines L2's init prints on its console;
//! - [`link`]: the link proof (DMA through an assigned NIC, restore by use);
//! - [`paths`]: where things are, as both sides see them;
//! - [`step`]: scenario steps while L2 runs (attach, detach) and what held after each;
//! - [`versions`]: L1's kernel, QEMU and libvirt, as they name themselves.

pub mod fault;
pub mod guest_report;
pub mod link;
pub mod mailbox;
pub mod outcome;
pub mod paths;
pub mod request;
pub mod stage;
pub mod step;
pub mod versions;

pub use outcome::{function_rows, FunctionRow, GuestFunction, RunOutcome, ServedResult};
pub use request::{Backend, CheckItem, Depth, LibvirtVerdict, RunRequest};
pub use stage::{Progress, Stage};
pub use step::{LiveHostdev, StepAction, StepOutcome, StepRequest};
pub use versions::L1Versions;
