//! Work directories: one per run, removed at the end unless kept. Each
//! records its owner (`owner.pid`) and, once kept, says so (`kept`), so
//! that what a runner killed by SIGKILL left behind can be told from what
//! a live runner uses or a failed run kept on purpose (see [`sweep`]).

use std::path::{Path, PathBuf};

/// The file in a work directory that names its owner: "PID START", the
/// start time from `/proc/PID/stat` telling a reused pid from the owner.
pub const OWNER_FILE: &str = "owner.pid";
/// The file in a work directory that says it is kept (a failed run, or `--keep`).
pub const KEPT_FILE: &str = "kept";
/// Every work directory's name starts so (`mflab-run-`, `mflab-l1-`, …).
pub const PREFIX: &str = "mflab-";

/// A work directory: removed at the end unless kept (a failed run, or
/// `--keep`); the report says where it is when it is kept.
pub struct WorkDir {
    dir: Option<tempfile::TempDir>,
    path: PathBuf,
    /// Directories that go (or stay) with this one.
    companions: Vec<WorkDir>,
}

impl WorkDir {
    /// A new directory in the temp dir (`$TMPDIR`), owned by this process.
    pub fn new(prefix: &str) -> std::io::Result<Self> {
        let dir = tempfile::Builder::new().prefix(prefix).tempdir()?;
        std::fs::write(dir.path().join(OWNER_FILE), Owner::this_process().line())?;
        let path = dir.path().to_path_buf();
        Ok(WorkDir {
            dir: Some(dir),
            path,
            companions: Vec::new(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Keeps the directory on disk (it is not removed on drop), marks it
    /// kept, and returns its path. Its companions are kept too.
    pub fn keep(&mut self) -> PathBuf {
        if let Some(dir) = self.dir.take() {
            let _ = std::fs::write(dir.path().join(KEPT_FILE), "");
            let _ = dir.keep();
        }
        for c in &mut self.companions {
            c.keep();
        }
        self.path.clone()
    }

    /// Moves the directory out of `self` (then an inert handle), for an
    /// owner that cannot give its fields away (one with a `Drop`).
    pub fn hand_over(&mut self) -> WorkDir {
        WorkDir {
            dir: self.dir.take(),
            path: self.path.clone(),
            companions: std::mem::take(&mut self.companions),
        }
    }

    /// Its path, and those of the directories that go with it: what a
    /// report names for a kept attempt ("/tmp/mflab-run-…, with
    /// /tmp/mflab-l1-…").
    pub fn describe(&self) -> String {
        let mut text = self.path.display().to_string();
        for (i, c) in self.companions.iter().enumerate() {
            text.push_str(if i == 0 { ", with " } else { ", " });
            text.push_str(&c.describe());
        }
        text
    }

    /// Makes `other` go with this directory: removed when it is, kept when it is.
    pub fn adopt(&mut self, other: WorkDir) {
        self.companions.push(other);
    }
}

/// The process a work directory belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Owner {
    pub pid: u32,
    /// Clock ticks after boot (field 22 of `/proc/PID/stat`); `None` when unknown.
    pub start: Option<u64>,
}

impl Owner {
    pub fn this_process() -> Owner {
        let pid = std::process::id();
        Owner {
            pid,
            start: start_time(pid),
        }
    }

    fn line(&self) -> String {
        match self.start {
            Some(start) => format!("{} {start}\n", self.pid),
            None => format!("{}\n", self.pid),
        }
    }

    fn parse(text: &str) -> Option<Owner> {
        let mut words = text.split_whitespace();
        let pid = words.next()?.parse().ok()?;
        let start = words.next().and_then(|w| w.parse().ok());
        Some(Owner { pid, start })
    }

    /// Whether the owner still runs: its pid exists and, when its start
    /// time was recorded, started then (not a later process with its pid).
    pub fn alive(&self) -> bool {
        match start_time(self.pid) {
            None => false,
            Some(now) => self.start.is_none_or(|then| then == now),
        }
    }
}

fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses; fields
    // after its closing parenthesis are plain. Field 22 is the 20th after it.
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(19)?.parse().ok()
}

/// A work directory whose owner is gone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Leftover {
    pub path: PathBuf,
    pub owner: Owner,
    pub kept: bool,
}

/// The work directories in `tmp` whose owner is not `alive`. Directories
/// without an owner file are not mflab's to judge (another tool's, or one
/// a runner is still creating) and are never listed.
pub fn leftovers(tmp: &Path, alive: &dyn Fn(&Owner) -> bool) -> Vec<Leftover> {
    let mut found: Vec<Leftover> = std::fs::read_dir(tmp)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(PREFIX))
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| {
            let path = e.path();
            let owner = Owner::parse(&std::fs::read_to_string(path.join(OWNER_FILE)).ok()?)?;
            let kept = path.join(KEPT_FILE).exists();
            Some(Leftover { path, owner, kept })
        })
        .filter(|l| !alive(&l.owner))
        .collect();
    found.sort_by(|a, b| a.path.cmp(&b.path));
    found
}

/// What [`sweep`] did.
#[derive(Debug, Default)]
pub struct Swept {
    pub removed: Vec<Leftover>,
    /// Kept directories of dead owners, left in place (without `kept`).
    pub left_kept: Vec<Leftover>,
    pub failed: Vec<(Leftover, std::io::Error)>,
}

/// Removes the work directories in `tmp` of owners that are gone; kept
/// ones only when `kept` is set.
pub fn sweep(tmp: &Path, kept: bool, alive: &dyn Fn(&Owner) -> bool) -> Swept {
    let mut swept = Swept::default();
    for l in leftovers(tmp, alive) {
        if l.kept && !kept {
            swept.left_kept.push(l);
            continue;
        }
        match std::fs::remove_dir_all(&l.path) {
            Ok(()) => swept.removed.push(l),
            Err(e) => swept.failed.push((l, e)),
        }
    }
    swept
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir_with(tmp: &Path, name: &str, owner: Option<&str>, kept: bool) -> PathBuf {
        let path = tmp.join(name);
        std::fs::create_dir(&path).unwrap();
        if let Some(owner) = owner {
            std::fs::write(path.join(OWNER_FILE), owner).unwrap();
        }
        if kept {
            std::fs::write(path.join(KEPT_FILE), "").unwrap();
        }
        std::fs::write(path.join("l1-serial.log"), "boot").unwrap();
        path
    }

    /// Pids below 100 are alive in these tests; 7 only when started at 5.
    fn alive(o: &Owner) -> bool {
        o.pid < 100 && (o.pid != 7 || o.start == Some(5))
    }

    #[test]
    fn only_unkept_directories_of_dead_owners_go_unless_kept_ones_are_asked_for() {
        let tmp = tempfile::tempdir().unwrap();
        let t = tmp.path();
        let dead = dir_with(t, "mflab-run-dead", Some("4242 17\n"), false);
        let live = dir_with(t, "mflab-l1-live", Some("42 17\n"), false);
        let reused = dir_with(t, "mflab-l1-reused", Some("7 4\n"), false);
        let same = dir_with(t, "mflab-l1-same", Some("7 5\n"), false);
        let kept = dir_with(t, "mflab-run-kept", Some("4242 17\n"), true);
        let no_owner = dir_with(t, "mflab-run-older", None, false);
        let garbled = dir_with(t, "mflab-run-garbled", Some("x"), false);
        let foreign = dir_with(t, "other-run-dead", Some("4242 17\n"), false);
        std::fs::write(t.join("mflab-a-file"), "4242").unwrap();

        let swept = sweep(t, false, &alive);
        let removed: Vec<&Path> = swept.removed.iter().map(|l| l.path.as_path()).collect();
        assert_eq!(removed, [reused.as_path(), dead.as_path()]);
        assert_eq!(swept.left_kept.len(), 1);
        assert_eq!(swept.left_kept[0].path, kept);
        assert_eq!(swept.left_kept[0].owner.pid, 4242);
        assert!(swept.failed.is_empty());
        for stays in [&live, &same, &kept, &no_owner, &garbled, &foreign] {
            assert!(stays.exists(), "{} was removed", stays.display());
        }

        let swept = sweep(t, true, &alive);
        assert_eq!(swept.removed.len(), 1);
        assert!(!kept.exists());
        assert!(live.exists() && no_owner.exists());
    }

    #[test]
    fn a_work_dir_names_its_owner_and_says_when_it_is_kept() {
        let mut w = WorkDir::new("mflab-test-").unwrap();
        let text = std::fs::read_to_string(w.path().join(OWNER_FILE)).unwrap();
        let owner = Owner::parse(&text).unwrap();
        assert_eq!(owner, Owner::this_process());
        assert!(owner.alive());
        assert!(owner.start.is_some());
        let mut companion = WorkDir::new("mflab-test-").unwrap();
        let moved = companion.hand_over();
        drop(companion);
        assert!(moved.path().exists(), "the handle gave the directory away");
        w.adopt(moved);
        let companion_path = w.companions[0].path().to_path_buf();
        assert_eq!(
            w.describe(),
            format!("{}, with {}", w.path().display(), companion_path.display()),
            "a kept attempt names the directory that goes with it"
        );
        let path = w.keep();
        drop(w);
        assert!(path.join(KEPT_FILE).exists() && companion_path.join(KEPT_FILE).exists());
        std::fs::remove_dir_all(path).unwrap();
        std::fs::remove_dir_all(companion_path).unwrap();

        let dropped = WorkDir::new("mflab-test-").unwrap();
        let mut companion = WorkDir::new("mflab-test-").unwrap();
        let companion_path = companion.path().to_path_buf();
        let mut dropped = dropped;
        dropped.adopt(companion.hand_over());
        let path = dropped.path().to_path_buf();
        drop(dropped);
        assert!(!path.exists() && !companion_path.exists());
    }

    #[test]
    fn a_pid_that_is_not_running_is_dead() {
        // Above the kernel's pid_max (2^22).
        let o = Owner {
            pid: 5_000_000,
            start: None,
        };
        assert!(!o.alive());
        let me = Owner::this_process();
        let reused = Owner {
            start: me.start.map(|s| s + 1),
            ..me
        };
        assert!(!reused.alive());
    }
}
