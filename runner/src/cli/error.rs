//! What stops a subcommand before its verdict, and the exit status that
//! maps to: each subcommand returns it with `?`, and [`super::run`]
//! prints it once, with the causes its message leaves out.

use std::error::Error;
use std::fmt::Write as _;
use std::path::PathBuf;

use lab::assign::bind::BindError;
use lab::pci::view::HostViewError;

use super::agent::AgentError;
use super::bench::BenchError;
use super::check_libvirt::LibvirtCheckError;
use super::run::SelectError;
use super::Outcome;
use crate::host::images::kernel_check::KernelLacks;
use crate::host::images::release_root::UnknownRelease;
use crate::host::images::ImageError;
use crate::host::l0_qemu::QemuError;
use crate::host::libvirt_bin::LibvirtBinError;
use crate::host::replay::ReplayError;
use crate::host::reported_host::LabHostError;
use crate::host::topology::TopologyError;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("cannot read {}: {source}", path.display())]
    CannotRead {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read stdin: {0}")]
    Stdin(#[source] std::io::Error),
    #[error("cannot write {}: {source}", path.display())]
    CannotWrite {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file the user named, said by its path alone (a --script, a
    /// --junit report, a run to compare).
    #[error("{}: {source}", path.display())]
    File {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}:{}:{}: {source} (expected the output of `mflab run --format json` or of `mflab check --backend libvirt --format json`)", path.display(), source.line(), source.column())]
    NotRuns {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// A listing given to set a run up (`--host`).
    #[error(transparent)]
    Listing(#[from] LabHostError),
    /// The listing `mflab host` judges: a malformed one is its verdict.
    #[error(transparent)]
    BadListing(LabHostError),
    #[error(transparent)]
    HostView(#[from] HostViewError),
    #[error(transparent)]
    Topology(#[from] TopologyError),
    #[error(transparent)]
    Kernel(#[from] KernelLacks),
    #[error("images: {0}")]
    Images(#[from] ImageError),
    #[error(transparent)]
    Qemu(#[from] QemuError),
    #[error("work directory: {0}")]
    WorkDir(#[source] std::io::Error),
    #[error(transparent)]
    Release(#[from] UnknownRelease),
    #[error(transparent)]
    LibvirtBin(#[from] LibvirtBinError),
    #[error("libvirt check: {0}")]
    LibvirtCheck(#[from] LibvirtCheckError),
    #[error("cannot replay: {0}")]
    Replay(#[from] ReplayError),
    /// The journal's functions could not all be given back: the host is
    /// left as it is, which is the verdict.
    #[error("restore failed: {0}")]
    Restore(#[source] BindError),
    #[error(transparent)]
    Select(#[from] SelectError),
    /// A measurement that could not be taken is bench's verdict.
    #[error(transparent)]
    Bench(#[from] BenchError),
    #[error(transparent)]
    Agent(#[from] AgentError),
}

impl CliError {
    /// The exit status: 2 for a usage or I/O problem, 1 where the error is
    /// the subcommand's verdict on its input.
    pub fn outcome(&self) -> Outcome {
        match self {
            CliError::BadListing(_) | CliError::Restore(_) | CliError::Bench(_) => Outcome::Failed,
            _ => Outcome::UsageOrIo,
        }
    }

    /// Who speaks: bench's and the agent's messages name them (the
    /// agent's land in L1's serial log, among init's lines).
    fn speaker(&self) -> &'static str {
        match self {
            CliError::Bench(_) => "mflab bench",
            CliError::Agent(_) => "mflab agent",
            _ => "mflab",
        }
    }

    /// What stderr gets: `mflab: MESSAGE`, then `  caused by: …` for each
    /// source the message does not already say.
    pub fn report(&self) -> String {
        chain(format!("{}: {self}", self.speaker()), self.source())
    }
}

/// `head`, then each error down the chain that adds something. A cause
/// adds nothing when its last line is already there: most messages quote
/// their source, and a rendering such as toml's puts a snippet of the
/// input above the message the place already went with.
fn chain(head: String, mut cause: Option<&(dyn Error + 'static)>) -> String {
    let mut text = head;
    while let Some(e) = cause {
        let said = e.to_string();
        let last = said.trim_end().lines().last().unwrap_or("").trim();
        if !text.contains(last) {
            let _ = write!(
                text,
                "\n  caused by: {}",
                said.trim_end().replace('\n', "\n    ")
            );
        }
        cause = e.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Terse(#[source] std::io::Error);

    #[derive(Debug, thiserror::Error)]
    #[error("outer: {0}")]
    struct Quoting(#[source] std::io::Error);

    fn io() -> std::io::Error {
        std::io::Error::other("disk on fire")
    }

    #[test]
    fn a_cause_the_message_leaves_out_follows_it() {
        let e = Terse(io());
        assert_eq!(
            chain(format!("mflab: {e}"), e.source()),
            "mflab: outer\n  caused by: disk on fire"
        );
    }

    #[test]
    fn a_cause_the_message_quotes_is_not_said_twice() {
        let e = Quoting(io());
        assert_eq!(
            chain(format!("mflab: {e}"), e.source()),
            "mflab: outer: disk on fire"
        );
    }

    #[test]
    fn tomls_snippet_of_a_line_the_place_already_names_is_left_out() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.toml");
        std::fs::write(&path, "xml = '<a/>'\n[expect]\nl2_gest = []\n").unwrap();
        let e = CliError::Select(crate::host::scenario::load(&path, &[]).unwrap_err().into());
        let report = e.report();
        assert!(
            report.contains("s.toml:3:1: unknown field `l2_gest`"),
            "{report}"
        );
        assert!(!report.contains("caused by"), "{report}");
    }

    #[test]
    fn a_listing_error_keeps_its_place_and_its_exit_status() {
        let e = CliError::BadListing(LabHostError::Read {
            path: "/nonexistent/listing.txt".into(),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        });
        assert!(matches!(e.outcome(), Outcome::Failed));
        let report = e.report();
        assert!(
            report.starts_with("mflab: /nonexistent/listing.txt: "),
            "{report}"
        );
        assert!(!report.contains("caused by"), "{report}");
    }
}
