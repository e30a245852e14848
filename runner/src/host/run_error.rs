//! Whose failure is it: one error type for a scenario run that gave no
//! outcome to judge. The system under test speaks through the outcome
//! (its error text, its rule errors); what stops a run before that is the
//! lab's (with its kind), an interrupt, or the lab's setup on the host.

use lab::lab_fault::LabFault;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The lab failed: L1 panicked, exited, hung or answered nonsense.
    /// `log` is what a reader needs beside the one-line fault (the end of
    /// L1's serial log). Boxed: the error travels in `Result`s beside a
    /// work directory, and stays small that way.
    #[error("{fault}{}", if log.is_empty() { String::new() } else { format!("; serial log:\n{log}") })]
    Lab { fault: Box<LabFault>, log: String },
    /// Ctrl-C or SIGTERM.
    #[error("interrupted")]
    Interrupted,
    /// The host could not set the run up (a work directory, a file).
    #[error("{0}")]
    Setup(String),
}

impl RunError {
    pub fn lab(fault: LabFault, log: impl Into<String>) -> Self {
        RunError::Lab {
            fault: Box::new(fault),
            log: log.into(),
        }
    }

    /// The lab fault, when the lab is to blame (the runner retries those).
    pub fn lab_fault(&self) -> Option<&LabFault> {
        match self {
            RunError::Lab { fault, .. } => Some(fault),
            _ => None,
        }
    }
}

impl From<std::io::Error> for RunError {
    fn from(e: std::io::Error) -> Self {
        RunError::Setup(e.to_string())
    }
}
