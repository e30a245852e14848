//! L0's QEMU: the emulator that runs L1, chosen like L1's kernel and root.
//!
//! Under TCG the emulator's own bugs are the lab's largest noise. Two
//! fixes matter for a lab that runs KVM inside TCG:
//! - "accel/tcg: Always lock pages before translation" (QEMU 8.1.0): before
//!   it, a translated block could still hold the `0xcc` of a kernel's
//!   `text_poke_bp` after the page was rewritten, and L1 died with
//!   "Oops: int3", often holding `text_mutex`, which froze every later
//!   static-key flip (KVM flips them as it creates L2's vCPUs);
//! - "Fix typo causing tb->page_addr[1] to not be recorded" (9.1, 9.0.2,
//!   8.2.6): a block spanning two pages was invalidated through one only.
//!
//! `--qemu host|backports|debian-13|debian-testing|PATH` (or `MFLAB_QEMU`) picks the
//! binary. By default the host's runs L1 when it has both fixes or when
//! L1 runs under KVM (the fixes are TCG's); otherwise bookworm-backports'
//! `qemu-system-x86` (else Debian 13's) is fetched into mflab's cache with
//! a sources list of mflab's own and run from there with its own data and
//! module directories. The system's packages are never touched.
//!
//! Only L0's QEMU is chosen here: inside L1, L2's QEMU and libvirt are
//! those of L1's root, the versions under test.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::RwLock;

use lab::machine::accel::{Accel, AccelChoice};
use lab::machine::qemu_cmdline::QEMU;

use super::images::debian_release::{self, Fetch};
use super::images::{cache_dir, ImageError};

/// The environment variable that `--qemu` sets.
pub const ENV: &str = "MFLAB_QEMU";

/// What `--qemu` names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QemuSource {
    /// The host's `qemu-system-x86_64` on PATH, whatever its version.
    Host,
    /// A Debian suite's `qemu-system-x86`, fetched into the cache.
    Debian(&'static Fetchable),
    /// A `qemu-system-x86_64` binary given by path (a build tree's too).
    Path(PathBuf),
}

/// A Debian suite whose QEMU mflab can fetch.
#[derive(Debug, PartialEq, Eq)]
pub struct Fetchable {
    /// What `--qemu` takes.
    pub name: &'static str,
    /// The archive's suite.
    pub suite: &'static str,
    /// The release `suite` builds on, for the dependencies it lacks.
    pub base: Option<&'static str>,
    /// Whether the default may fall back on it.
    pub by_default: bool,
}

/// In the order the default tries them (each brings its own libraries):
/// a stable suite's first; Debian testing's, a moving target, only when
/// asked for by name.
pub const FETCHABLE: &[Fetchable] = &[
    Fetchable {
        name: "backports",
        suite: "bookworm-backports",
        base: Some("bookworm"),
        by_default: true,
    },
    Fetchable {
        name: "debian-13",
        suite: "trixie",
        base: None,
        by_default: true,
    },
    Fetchable {
        name: "debian-testing",
        suite: "forky",
        base: None,
        by_default: false,
    },
];

/// The packages that make a QEMU for x86 runnable from a directory of its
/// own: the binary, its modules (`qemu-system-common`) and its data files,
/// fetched with everything they depend on, the C library and its loader
/// included. The tree then runs on its own suite's libraries through that
/// loader: trixie's QEMU needs a newer glibc (and libcapstone5) than
/// Debian 12 has, and the system's libraries are never replaced.
const PACKAGES: &[&str] = &["qemu-system-x86", "qemu-system-common", "qemu-system-data"];

/// Where a Debian tree keeps its dynamic loader and libraries: under
/// `usr/lib` since trixie, under `lib` in bookworm's packages.
const LIB_DIRS: &[&str] = &["usr/lib/x86_64-linux-gnu", "lib/x86_64-linux-gnu"];
const LOADER: &str = "ld-linux-x86-64.so.2";

/// A tree's own dynamic loader and the library path it is given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnLibraries {
    pub loader: PathBuf,
    pub library_path: String,
}

impl OwnLibraries {
    /// The loader of the tree rooted at `root`, when it has one.
    pub fn of_tree(root: &Path) -> Option<OwnLibraries> {
        let loader = LIB_DIRS
            .iter()
            .map(|d| root.join(d).join(LOADER))
            .find(|p| p.is_file())?;
        let library_path = LIB_DIRS
            .iter()
            .map(|d| root.join(d))
            .filter(|d| d.is_dir())
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(":");
        Some(OwnLibraries {
            loader,
            library_path,
        })
    }
}

impl QemuSource {
    /// `host`, `backports`, `debian-13`, `debian-testing`, or a path to a binary.
    pub fn parse(s: &str) -> Result<QemuSource, QemuError> {
        if s == "host" {
            return Ok(QemuSource::Host);
        }
        if let Some(f) = FETCHABLE.iter().find(|f| f.name == s) {
            return Ok(QemuSource::Debian(f));
        }
        if s.contains('/') {
            return Ok(QemuSource::Path(PathBuf::from(s)));
        }
        Err(QemuError::Unknown {
            name: s.to_string(),
        })
    }
}

/// A QEMU version, as `--version` prints it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct QemuVersion(pub u32, pub u32, pub u32);

impl QemuVersion {
    /// From "QEMU emulator version 10.0.2 (Debian 1:10.0.2+ds-2…)".
    pub fn parse(version_line: &str) -> Option<QemuVersion> {
        let v = version_line
            .split("version ")
            .nth(1)?
            .split(|c: char| !(c.is_ascii_digit() || c == '.'))
            .next()?;
        let mut parts = v.split('.').map(|p| p.parse::<u32>().ok());
        let major = parts.next()??;
        let minor = parts.next().flatten().unwrap_or(0);
        let micro = parts.next().flatten().unwrap_or(0);
        Some(QemuVersion(major, minor, micro))
    }

    /// Whether both TCG fixes of the module doc are in: 8.2.6+ on 8.2,
    /// 9.0.2+ on 9.0, any 9.1 and later.
    pub fn has_tcg_fixes(self) -> bool {
        match self {
            QemuVersion(8, 2, micro) => micro >= 6,
            QemuVersion(9, 0, micro) => micro >= 2,
            QemuVersion(major, _, _) => major >= 9,
        }
    }
}

impl std::fmt::Display for QemuVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

/// The QEMU that runs L1, and why it was chosen.
#[derive(Clone, Debug)]
pub struct L0Qemu {
    pub binary: PathBuf,
    /// `-L` directories, searched before QEMU's built-in one.
    pub data_dirs: Vec<PathBuf>,
    /// `QEMU_MODULE_DIR`: a fetched QEMU loads its own modules, never the
    /// host's (QEMU refuses modules of another build).
    pub module_dir: Option<PathBuf>,
    /// A tree's own loader and libraries, which then start the binary.
    pub libraries: Option<OwnLibraries>,
    /// `--version`'s first line.
    pub version_line: String,
    pub version: Option<QemuVersion>,
    /// `host`, `backports`, `debian-13`, `debian-testing` or the path given.
    pub source: String,
    /// One sentence: why this QEMU runs L1.
    pub why: String,
}

impl L0Qemu {
    /// The host's QEMU on PATH.
    pub fn host(why: String) -> Result<L0Qemu, QemuError> {
        Self::at(L0Qemu::unprobed(PathBuf::from(QEMU), "host".into(), why))
    }

    /// `binary` with no data, module or library directories of its own,
    /// its version not yet asked.
    fn unprobed(binary: PathBuf, source: String, why: String) -> L0Qemu {
        L0Qemu {
            binary,
            data_dirs: vec![],
            module_dir: None,
            libraries: None,
            version_line: String::new(),
            version: None,
            source,
            why,
        }
    }

    /// `q` with the version its binary says it is.
    fn at(q: L0Qemu) -> Result<L0Qemu, QemuError> {
        let binary = q.binary.clone();
        let out = Command::new(q.program())
            .args(q.loader_args())
            .arg("--version")
            .envs(q.env())
            .output()
            .map_err(|e| QemuError::NotRunnable {
                binary: binary.clone(),
                why: e.to_string(),
            })?;
        if !out.status.success() {
            return Err(QemuError::NotRunnable {
                binary: binary.clone(),
                why: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        let version_line = String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .unwrap_or_default()
            .trim()
            .to_string();
        Ok(L0Qemu {
            version: QemuVersion::parse(&version_line),
            version_line,
            ..q
        })
    }

    /// The program to start, as a string (command lines, logs): the
    /// tree's loader when it brings its libraries, else QEMU itself.
    pub fn program(&self) -> String {
        match &self.libraries {
            Some(l) => l.loader.display().to_string(),
            None => self.binary.display().to_string(),
        }
    }

    /// What the loader is told before QEMU's own arguments.
    fn loader_args(&self) -> Vec<String> {
        match &self.libraries {
            Some(l) => vec![
                "--library-path".into(),
                l.library_path.clone(),
                self.binary.display().to_string(),
            ],
            None => vec![],
        }
    }

    /// What goes before L1's own arguments: the loader's (when the tree
    /// brings its libraries), then `-L` for each data directory.
    pub fn leading_args(&self) -> Vec<String> {
        let mut args = self.loader_args();
        args.extend(
            self.data_dirs
                .iter()
                .flat_map(|d| ["-L".to_string(), d.display().to_string()]),
        );
        args
    }

    /// The environment QEMU needs beside its arguments.
    pub fn env(&self) -> Vec<(String, String)> {
        self.module_dir
            .iter()
            .map(|d| ("QEMU_MODULE_DIR".to_string(), d.display().to_string()))
            .collect()
    }

    /// The whole command line, for the work directory and failure reports.
    pub fn shell_line(&self, args: &[String]) -> String {
        let env: String = self
            .env()
            .iter()
            .map(|(k, v)| format!("{k}={v} "))
            .collect();
        let mut all = self.leading_args();
        all.extend_from_slice(args);
        format!(
            "{env}{}",
            lab::machine::qemu_cmdline::shell_line(&self.program(), &all)
        )
    }

    /// "QEMU 10.0.2 (backports)", for reports.
    pub fn describe(&self) -> String {
        match self.version {
            Some(v) => format!("QEMU {v} ({})", self.source),
            None => format!("{} ({})", self.version_line, self.source),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum QemuError {
    #[error("{binary}: cannot run it ({why}); give --qemu host or another build")]
    NotRunnable { binary: PathBuf, why: String },
    #[error("--qemu {name}: {source}")]
    Fetch {
        name: &'static str,
        #[source]
        source: ImageError,
    },
    #[error(
        "--qemu {name}: write host, {}, or a path to a qemu-system-x86_64 binary",
        fetchable_names()
    )]
    Unknown { name: String },
}

fn fetchable_names() -> String {
    FETCHABLE
        .iter()
        .map(|f| f.name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The process's choice: one QEMU for every L1 it boots (`mflab bench
/// --against-qemu` alone switches, between its two passes). Each choice
/// is leaked: at most two per process.
static CHOSEN: RwLock<Option<&'static L0Qemu>> = RwLock::new(None);

fn current() -> Option<&'static L0Qemu> {
    *CHOSEN.read().unwrap_or_else(|e| e.into_inner())
}

/// Makes `q` the QEMU that runs every L1 from now on.
pub fn switch_to(q: L0Qemu) -> &'static L0Qemu {
    let q: &'static L0Qemu = Box::leak(Box::new(q));
    *CHOSEN.write().unwrap_or_else(|e| e.into_inner()) = Some(q);
    q
}

/// Chooses L0's QEMU once per process (`MFLAB_QEMU`, else the default for
/// `accel`), fetching it when it is not cached yet.
pub fn choose(accel: &AccelChoice) -> Result<&'static L0Qemu, QemuError> {
    if let Some(q) = current() {
        return Ok(q);
    }
    let q = resolve(std::env::var(ENV).ok().as_deref(), Some(accel.accel))?;
    Ok(switch_to(q))
}

/// [`choose`], said on stderr as the runs begin: which QEMU runs L1 and why.
pub fn choose_and_say(accel: &AccelChoice) -> Result<&'static L0Qemu, QemuError> {
    let q = choose(accel)?;
    eprintln!("mflab: L0's QEMU: {}: {}", q.describe(), q.why);
    Ok(q)
}

/// What [`choose`] chose, in a report's words; None before a choice.
pub fn described() -> Option<String> {
    current().map(L0Qemu::describe)
}

/// The QEMU chosen for this process; where nothing chose one up front
/// (a tool that boots L1 without a probe), the default without knowing
/// the accelerator, else the host's.
pub fn chosen() -> &'static L0Qemu {
    if let Some(q) = current() {
        return q;
    }
    let q = resolve(std::env::var(ENV).ok().as_deref(), None)
        .or_else(|e| L0Qemu::host(format!("the chosen QEMU failed: {e}")))
        .unwrap_or_else(|e| L0Qemu {
            version_line: e.to_string(),
            ..L0Qemu::unprobed(
                PathBuf::from(QEMU),
                "host".into(),
                "no QEMU runs here".into(),
            )
        });
    switch_to(q)
}

/// The QEMU for `--qemu` `named` (None: the default).
pub fn resolve(named: Option<&str>, accel: Option<Accel>) -> Result<L0Qemu, QemuError> {
    let source = match named {
        Some(n) => QemuSource::parse(n)?,
        None => return default_choice(accel),
    };
    match source {
        QemuSource::Host => L0Qemu::host("--qemu host".into()),
        QemuSource::Path(p) => from_path(&p, "--qemu PATH".into()),
        QemuSource::Debian(f) => fetched(f, format!("--qemu {}", f.name)),
    }
}

fn default_choice(accel: Option<Accel>) -> Result<L0Qemu, QemuError> {
    let host = L0Qemu::host(String::new());
    if let Ok(h) = &host {
        let fixed = h.version.is_some_and(|v| v.has_tcg_fixes());
        if fixed || accel == Some(Accel::Kvm) {
            let mut h = h.clone();
            h.why = match fixed {
                true => "the host's has TCG's page-locking fixes (8.1, 9.0.2)".into(),
                false => "L1 runs under KVM: TCG's fixes do not apply".into(),
            };
            return Ok(h);
        }
    }
    let lacking = match &host {
        Ok(h) => format!(
            "the host's {} lacks TCG's page-locking fixes (8.1, 9.0.2)",
            h.version
                .map(|v| v.to_string())
                .unwrap_or(h.version_line.clone())
        ),
        Err(e) => format!("the host's does not run ({e})"),
    };
    let mut failures = Vec::new();
    for f in FETCHABLE.iter().filter(|f| f.by_default) {
        match fetched(
            f,
            format!(
                "{lacking}; {} from {} runs L1 instead",
                PACKAGES[0], f.suite
            ),
        ) {
            Ok(q) => return Ok(q),
            Err(e) => failures.push(e.to_string()),
        }
    }
    // Offline, or a system whose libraries run neither: the host's, said so.
    match host {
        Ok(mut h) => {
            h.why = format!(
                "{lacking}, and no fixed QEMU could be had ({}): expect lab faults",
                failures.join("; ")
            );
            tracing::warn!("{}", h.why);
            Ok(h)
        }
        Err(e) => Err(e),
    }
}

/// A binary given by path: a Debian tree (`…/usr/bin/qemu-system-x86_64`)
/// brings its data and modules, and its loader and libraries when it has
/// them; a build tree (`build/qemu-system-x86_64`) its `pc-bios`.
fn from_path(binary: &Path, why: String) -> Result<L0Qemu, QemuError> {
    let dir = binary.parent().unwrap_or(Path::new("."));
    let mut data_dirs = Vec::new();
    for d in [dir.join("../share/qemu"), dir.join("pc-bios")] {
        if d.is_dir() {
            data_dirs.push(d);
        }
    }
    data_dirs.push(PathBuf::from("/usr/share/qemu"));
    let module_dir = Some(dir.join("../lib/x86_64-linux-gnu/qemu")).filter(|d| d.is_dir());
    let libraries = (dir.ends_with("usr/bin"))
        .then(|| OwnLibraries::of_tree(&dir.join("../..")))
        .flatten();
    L0Qemu::at(L0Qemu {
        data_dirs,
        module_dir,
        libraries,
        ..L0Qemu::unprobed(binary.to_path_buf(), binary.display().to_string(), why)
    })
}

/// The suite's QEMU from the cache, fetched first when missing.
fn fetched(f: &'static Fetchable, why: String) -> Result<L0Qemu, QemuError> {
    let dir = cache_dir().join("qemu").join(f.name);
    let root = match unpacked(&dir) {
        Some(root) => root,
        None => fetch(f, &dir).map_err(|source| QemuError::Fetch {
            name: f.name,
            source,
        })?,
    };
    let mut q = from_path(&root.join("usr/bin/qemu-system-x86_64"), why)?;
    q.source = f.name.to_string();
    Ok(q)
}

/// The newest unpacked version under `dir` (`dir/<version>/usr/bin/…`)
/// that brings its own libraries (a tree fetched before they were is
/// fetched again).
fn unpacked(dir: &Path) -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("usr/bin/qemu-system-x86_64").is_file())
        .filter(|p| OwnLibraries::of_tree(p).is_some())
        .collect();
    found.sort();
    found.pop()
}

fn fetch(f: &Fetchable, dir: &Path) -> Result<PathBuf, ImageError> {
    eprintln!(
        "mflab: fetching {}'s qemu-system-x86 into {}",
        f.suite,
        dir.display()
    );
    let apt = debian_release::OwnApt::for_suite_over(&dir.join("apt"), f.suite, f.base)?;
    let version = apt
        .candidate(PACKAGES[0])
        .ok_or_else(|| ImageError::Kernel(format!("{} has no {}", f.suite, PACKAGES[0])))?;
    let target = dir.join(version.replace([':', '~', '+'], "_"));
    if target.is_dir() {
        // Ours, from before fetched trees brought their libraries.
        let _ = std::fs::remove_dir_all(&target);
    }
    apt.download_unpacked(PACKAGES, Fetch::WithDependencies, &target)?;
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_read_from_qemu_s_first_line() {
        assert_eq!(
            QemuVersion::parse("QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)"),
            Some(QemuVersion(7, 2, 22))
        );
        assert_eq!(
            QemuVersion::parse(
                "QEMU emulator version 10.0.2 (Debian 1:10.0.2+ds-2+deb13u1~bpo12+1)"
            ),
            Some(QemuVersion(10, 0, 2))
        );
        assert_eq!(
            QemuVersion::parse("QEMU emulator version 11.1.50 (v11.1.0-123-gabc)"),
            Some(QemuVersion(11, 1, 50))
        );
        assert_eq!(QemuVersion::parse("qemu-system-x86_64: not found"), None);
    }

    #[test]
    fn the_fixes_are_in_8_2_6_9_0_2_and_9_1_on() {
        let fixed = |s: &str| {
            QemuVersion::parse(&format!("QEMU emulator version {s}"))
                .unwrap()
                .has_tcg_fixes()
        };
        assert!(!fixed("7.2.22"));
        assert!(!fixed("8.1.0"));
        assert!(!fixed("8.2.2"));
        assert!(fixed("8.2.6"));
        assert!(!fixed("9.0.1"));
        assert!(fixed("9.0.2"));
        assert!(fixed("9.1.0"));
        assert!(fixed("10.0.2"));
        assert!(fixed("11.1.2"));
    }

    #[test]
    fn qemu_names_a_suite_the_host_or_a_path() {
        assert_eq!(QemuSource::parse("host").unwrap(), QemuSource::Host);
        assert_eq!(
            QemuSource::parse("backports").unwrap(),
            QemuSource::Debian(&FETCHABLE[0])
        );
        assert_eq!(
            QemuSource::parse("./build/qemu-system-x86_64").unwrap(),
            QemuSource::Path("./build/qemu-system-x86_64".into())
        );
        let e = QemuSource::parse("debian-99").unwrap_err().to_string();
        assert!(
            e.contains("write host, backports, debian-13, debian-testing, or a path"),
            "{e}"
        );
    }

    #[test]
    fn a_debian_tree_brings_its_data_modules_and_libraries() {
        use std::os::unix::fs::PermissionsExt;
        let executable = |path: &Path, text: &str| {
            std::fs::write(path, text).unwrap();
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
        };
        let cache = tempfile::tempdir().unwrap();
        assert_eq!(unpacked(cache.path()), None);
        let tree = cache.path().join("1_10.0.2_ds-2");
        let bin = tree.join("usr/bin");
        let libs = tree.join("usr/lib/x86_64-linux-gnu");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::create_dir_all(tree.join("usr/share/qemu")).unwrap();
        std::fs::create_dir_all(libs.join("qemu")).unwrap();
        // A stand-in that prints what QEMU prints, and the module directory it got.
        let qemu = bin.join("qemu-system-x86_64");
        executable(
            &qemu,
            "#!/bin/sh\necho \"QEMU emulator version 10.0.2 (test) $QEMU_MODULE_DIR\"\n",
        );
        // Fetched before trees brought their libraries: fetched again.
        assert_eq!(unpacked(cache.path()), None);
        // A stand-in loader: `--library-path DIRS BINARY ARGS`, as ld.so takes them.
        executable(
            &libs.join(LOADER),
            "#!/bin/sh\n[ \"$1\" = --library-path ] || exit 9\nshift 2\nexec \"$@\"\n",
        );
        assert_eq!(unpacked(cache.path()), Some(tree.clone()));
        let q = from_path(&qemu, "test".into()).unwrap();
        assert_eq!(q.version, Some(QemuVersion(10, 0, 2)));
        assert!(q
            .version_line
            .ends_with("usr/bin/../lib/x86_64-linux-gnu/qemu"));
        assert!(q
            .program()
            .ends_with("usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"));
        let args = q.leading_args();
        assert_eq!(args[0], "--library-path");
        assert!(
            args[1].ends_with("usr/bin/../../usr/lib/x86_64-linux-gnu"),
            "{args:?}"
        );
        assert_eq!(args[2], qemu.display().to_string());
        assert_eq!(args[3], "-L");
        assert!(args[4].ends_with("usr/bin/../share/qemu"), "{args:?}");
        assert_eq!(&args[5..], ["-L", "/usr/share/qemu"]);
        assert_eq!(q.env()[0].0, "QEMU_MODULE_DIR");
        assert!(q
            .shell_line(&["-m".into(), "1024".into()])
            .starts_with("QEMU_MODULE_DIR="));
    }

    #[test]
    fn a_binary_outside_a_debian_tree_runs_on_the_hosts_libraries() {
        let dir = tempfile::tempdir().unwrap();
        let build = dir.path().join("build");
        std::fs::create_dir_all(build.join("pc-bios")).unwrap();
        let qemu = build.join("qemu-system-x86_64");
        std::fs::write(&qemu, "#!/bin/sh\necho QEMU emulator version 11.1.50\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&qemu, std::fs::Permissions::from_mode(0o755)).unwrap();
        let q = from_path(&qemu, "test".into()).unwrap();
        assert_eq!(q.libraries, None);
        assert_eq!(q.program(), qemu.display().to_string());
        assert_eq!(q.leading_args()[0], "-L");
    }

    #[test]
    fn a_binary_that_does_not_run_is_named() {
        let e = from_path(Path::new("/nonexistent/qemu-system-x86_64"), "t".into()).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("/nonexistent/qemu-system-x86_64: cannot run it"),
            "{e}"
        );
    }
}
