//! The mailbox of a shared L1: the runner posts `request-N.json`, the
//! agent answers `result-N.json` and runs the scenario in `sN/`, where it
//! appends its progress (one JSON [`Progress`] a line). Every file is
//! written under a temporary name and renamed, so the other side never
//! reads half a file over 9p. `stop` asks the agent to end.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::outcome::ServedResult;
use super::paths::STOP_FILE;
use super::request::RunRequest;
use super::stage::Progress;

/// The mailbox directory: the work directory of a shared L1, as the side
/// at hand sees it (a host path on L0, [`super::paths::WORK_MOUNT`] in L1).
#[derive(Clone, Debug)]
pub struct Mailbox {
    dir: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum MailboxError {
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
    #[error("{0}: {1}")]
    Json(PathBuf, serde_json::Error),
}

impl Mailbox {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Mailbox { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn request_path(&self, n: u32) -> PathBuf {
        self.dir.join(format!("request-{n}.json"))
    }

    pub fn result_path(&self, n: u32) -> PathBuf {
        self.dir.join(format!("result-{n}.json"))
    }

    /// Where scenario `n` runs and leaves its files.
    pub fn scenario_dir(&self, n: u32) -> PathBuf {
        self.dir.join(format!("s{n}"))
    }

    fn progress_path(&self, n: u32) -> PathBuf {
        self.scenario_dir(n).join("progress")
    }

    /// Runner: asks for scenario `n`.
    pub fn post_request(&self, n: u32, request: &RunRequest) -> Result<(), MailboxError> {
        write_json_atomically(&self.request_path(n), request)
    }

    /// Agent: scenario `n`'s request, once it is there.
    pub fn take_request(&self, n: u32) -> Option<Result<RunRequest, MailboxError>> {
        read_json_if_present(&self.request_path(n))
    }

    /// Agent: answers scenario `n`.
    pub fn post_result(&self, n: u32, result: &ServedResult) -> Result<(), MailboxError> {
        write_json_atomically(&self.result_path(n), result)
    }

    /// Runner: scenario `n`'s answer, once it is there.
    pub fn take_result(&self, n: u32) -> Option<Result<ServedResult, MailboxError>> {
        read_json_if_present(&self.result_path(n))
    }

    /// Agent: scenario `n` reached `step`. Progress is best effort: a
    /// line that cannot be written costs the display, never the run.
    pub fn report(&self, n: u32, step: Progress) {
        let line = serde_json::to_string(&step).expect("progress serializes");
        let _ = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.progress_path(n))
            .and_then(|mut f| writeln!(f, "{line}"));
    }

    /// Runner: what scenario `n` reported so far, in order.
    pub fn progress(&self, n: u32) -> Vec<Progress> {
        std::fs::read_to_string(self.progress_path(n))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Runner: asks the agent to end.
    pub fn stop(&self) {
        let _ = std::fs::write(self.dir.join(STOP_FILE), "");
    }

    /// Agent: whether the runner asked it to end.
    pub fn stop_requested(&self) -> bool {
        self.dir.join(STOP_FILE).exists()
    }
}

/// Writes `value` as JSON to a temporary name beside `path`, then renames it.
pub fn write_json_atomically<T: serde::Serialize>(
    path: &Path,
    value: &T,
) -> Result<(), MailboxError> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    let text = serde_json::to_string(value).expect("mailbox types serialize");
    std::fs::write(&tmp, text).map_err(|e| MailboxError::Io(tmp.clone(), e))?;
    std::fs::rename(&tmp, path).map_err(|e| MailboxError::Io(path.to_path_buf(), e))
}

/// Reads a JSON file, or `None` while it does not exist.
pub fn read_json_if_present<T: serde::de::DeserializeOwned>(
    path: &Path,
) -> Option<Result<T, MailboxError>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => return Some(Err(MailboxError::Io(path.to_path_buf(), e))),
    };
    Some(serde_json::from_str(&text).map_err(|e| MailboxError::Json(path.to_path_buf(), e)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::RunOutcome;

    #[test]
    fn a_request_and_its_result_go_through_the_mailbox() {
        let dir = tempfile::tempdir().unwrap();
        let host = Mailbox::new(dir.path());
        let agent = Mailbox::new(dir.path());
        assert!(agent.take_request(1).is_none());
        let request = RunRequest {
            xml_name: "x.xml".into(),
            xml: "<hostdev/>".into(),
            policy: Default::default(),
            depth: Default::default(),
            kill_l2: false,
            manual_detach: vec![],
            l2_kernel: "/l2/vmlinux".into(),
            l2_initrd: "/l2/initrd".into(),
            backend: Default::default(),
            libvirt_bin: None,
            steps: vec![],
            link: None,
        };
        host.post_request(1, &request).unwrap();
        assert_eq!(agent.take_request(1).unwrap().unwrap().xml, "<hostdev/>");
        std::fs::create_dir_all(agent.scenario_dir(1)).unwrap();
        agent.report(1, Progress::BindDone);
        agent.report(1, Progress::L2Starting);
        assert_eq!(host.progress(1), [Progress::BindDone, Progress::L2Starting]);
        assert!(host.take_result(1).is_none());
        let result = ServedResult {
            outcome: RunOutcome {
                restored: true,
                ..Default::default()
            },
            healthy: false,
            why: Some("0000:00:06.1 is on vfio-pci".into()),
        };
        agent.post_result(1, &result).unwrap();
        let got = host.take_result(1).unwrap().unwrap();
        assert!(got.outcome.restored && !got.healthy);
        // Only the renamed files remain: no temporary names left behind.
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('.'))
            .collect();
        assert!(names.is_empty(), "{names:?}");
        assert!(!agent.stop_requested());
        host.stop();
        assert!(agent.stop_requested());
    }

    #[test]
    fn a_half_written_file_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let mailbox = Mailbox::new(dir.path());
        std::fs::write(mailbox.result_path(3), "{\"outcome\":").unwrap();
        assert!(matches!(
            mailbox.take_result(3),
            Some(Err(MailboxError::Json(..)))
        ));
    }
}
