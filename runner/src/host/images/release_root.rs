//! `--release debian-13`: L1's userland as data. A Debian release's root,
//! built with `debootstrap` into the cache, is what L1 shares in over 9p
//! (read-only, under the same tmpfs skeleton) instead of the host's `/`;
//! the kernel in it (`linux-image-amd64` of that release) boots L1 and L2
//! unless `--kernel` says otherwise. The agent stays the host's build:
//! Debian 12's glibc is older than every release offered here.
//!
//! A root is named by its release, the mirror and the package list, so a
//! changed list builds a new root. It is built under `<name>.partial` and
//! renamed when debootstrap finished: a half-built root is never used, and
//! the downloaded packages stay in `roots/debs/<release>` so a build that
//! was cut off starts again without downloading them twice.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};

use sha2::{Digest, Sha256};

use super::debian_release::{mirror_uri, DebianRelease, KEYRING, SYSTEM_SOURCES};
use super::kernel::KernelSource;
use super::{cache_dir, io_err, ImageError};

/// What L1 runs its agent, QEMU and libvirt from.
/// A `--release` mflab has no root for.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown release '{name}'; give host or one of {}",
    DebianRelease::names()
)]
pub struct UnknownRelease {
    pub name: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Userland {
    /// The host's own `/` (the default).
    Host,
    /// A Debian release's root from the cache.
    Debian(DebianRelease),
}

impl Userland {
    /// `host`, `debian-12`, `debian-13`.
    pub fn parse(name: &str) -> Result<Userland, UnknownRelease> {
        if name == "host" {
            return Ok(Userland::Host);
        }
        DebianRelease::named(name)
            .map(Userland::Debian)
            .ok_or_else(|| UnknownRelease {
                name: name.to_string(),
            })
    }

    /// From `MFLAB_RELEASE` (what `--release` sets); host when unset.
    pub fn from_env() -> Result<Userland, UnknownRelease> {
        match std::env::var("MFLAB_RELEASE") {
            Ok(name) if !name.is_empty() => Userland::parse(&name),
            _ => Ok(Userland::Host),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Userland::Host => "host",
            Userland::Debian(r) => r.name,
        }
    }
}

/// What L1's agent, init and the lab need from the root: QEMU for L2,
/// Debian's libvirt (the second backend), busybox-static (L1's init is
/// built from the host's; carried for a shell in the root), the
/// release's kernel. `minbase` brings what L1's init and agent run from
/// the root: sh (the agent script), mount (libvirt's tmpfs), glibc.
pub const ROOT_PACKAGES: &[&str] = &[
    "qemu-system-x86",
    "libvirt-daemon",
    "libvirt-daemon-driver-qemu",
    "libvirt-clients",
    "busybox-static",
    "linux-image-amd64",
];

/// Changes when the way a root is built changes beyond the inputs below.
const ROOT_LAYOUT: &str = "1: debootstrap --variant=minbase";

/// `roots/debian-13-<hash>`: the release, the mirror and the packages.
pub fn root_name(release: DebianRelease, mirror: &str) -> String {
    let mut hash = Sha256::new();
    hash.update(ROOT_LAYOUT.as_bytes());
    hash.update(release.suite.as_bytes());
    hash.update(mirror.as_bytes());
    hash.update(ROOT_PACKAGES.join(",").as_bytes());
    format!("{}-{:.16x}", release.name, hash.finalize())
}

fn system_mirror() -> String {
    mirror_uri(&std::fs::read_to_string(SYSTEM_SOURCES).unwrap_or_default())
}

fn root_path(release: DebianRelease) -> PathBuf {
    cache_dir()
        .join("roots")
        .join(root_name(release, &system_mirror()))
}

/// The command that builds the root, for messages.
fn build_hint(release: DebianRelease) -> String {
    format!(
        "run `sudo mflab images --release {}` first (needs root and debootstrap: apt-get install debootstrap)",
        release.name
    )
}

/// The root of `release`, built now when the cache has none (as root:
/// debootstrap's and apt's lines go to stderr, as a kernel's download
/// does), else an error that says how to build it.
pub fn built_root(release: DebianRelease) -> Result<PathBuf, ImageError> {
    let root = root_path(release);
    if root.is_dir() {
        return Ok(root);
    }
    eprintln!(
        "mflab: --release {}: no root at {} yet, building it (debootstrap, a few minutes)",
        release.name,
        root.display()
    );
    let start = std::time::Instant::now();
    let (root, _) = build_root(release, &|line| {
        eprintln!("mflab: root {}: {line}", release.name)
    })?;
    eprintln!(
        "mflab: --release {}: root built in {:.0} s",
        release.name,
        start.elapsed().as_secs_f64()
    );
    Ok(root)
}

/// The root of `release`: the cached one, else built now with
/// debootstrap, each of its lines passed to `progress`.
pub fn build_root(
    release: DebianRelease,
    progress: &dyn Fn(&str),
) -> Result<(PathBuf, bool), ImageError> {
    let root = root_path(release);
    if root.is_dir() {
        return Ok((root, false));
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err(ImageError::Root(format!(
            "building the {} root needs root (debootstrap creates device nodes and chroots): {}",
            release.name,
            build_hint(release)
        )));
    }
    if !Path::new(KEYRING).is_file() {
        return Err(ImageError::Root(format!(
            "{KEYRING} is missing: apt-get install debian-archive-keyring"
        )));
    }
    let partial = root.with_extension("partial");
    let debs = cache_dir().join("roots/debs").join(release.name);
    std::fs::create_dir_all(&debs).map_err(io_err(&debs))?;
    let base_done = partial.join(BASE_DONE);
    if !base_done.exists() {
        // What a cut-off debootstrap left is not trusted; its downloads
        // in `debs` are (debootstrap checks them against the lists).
        if partial.exists() {
            unmount_under(&partial);
            progress(&format!("removing the half-built {}", partial.display()));
            std::fs::remove_dir_all(&partial).map_err(io_err(&partial))?;
        }
        let mut debootstrap = Command::new("debootstrap");
        debootstrap
            .arg("--variant=minbase")
            .arg(format!("--keyring={KEYRING}"))
            .arg(format!("--cache-dir={}", debs.display()))
            .arg(release.suite)
            .arg(&partial)
            .arg(system_mirror());
        if let Some(script) = debootstrap_script(release.suite, Path::new(DEBOOTSTRAP_SCRIPTS)) {
            debootstrap.arg(script);
        }
        run_logged("debootstrap", &mut debootstrap, progress).map_err(ImageError::Debootstrap)?;
        std::fs::write(&base_done, "").map_err(io_err(&base_done))?;
    } else {
        progress(&format!(
            "{}: base system there, installing the packages",
            partial.display()
        ));
    }
    // A build killed during the installation may have left its /proc mounted.
    unmount_under(&partial);
    install_packages(&partial, progress)?;
    std::fs::remove_file(&base_done).map_err(io_err(&base_done))?;
    std::fs::rename(&partial, &root).map_err(io_err(&root))?;
    Ok((root, true))
}

/// Where debootstrap keeps a script per suite.
const DEBOOTSTRAP_SCRIPTS: &str = "/usr/share/debootstrap/scripts";

/// The script to give debootstrap for `suite` when it has none of its
/// own: Debian 12's debootstrap knows trixie but not forky, and every
/// release since bookworm bootstraps as sid does.
fn debootstrap_script(suite: &str, scripts: &Path) -> Option<PathBuf> {
    (!scripts.join(suite).exists()).then(|| scripts.join("sid"))
}

/// Marks a `.partial` root whose debootstrap finished: a build cut off
/// after it resumes with the package installation.
const BASE_DONE: &str = ".mflab-base-done";

/// The lab's packages, installed by apt inside the root. Not with
/// debootstrap's `--include`: Debian 12's debootstrap 1.0.128 fails on
/// trixie when an included package pulls systemd in ("systemd
/// pre-depends on libsystemd-shared … has never been configured").
/// apt-get install is idempotent: a second run finishes a cut-off one.
fn install_packages(root: &Path, progress: &dyn Fn(&str)) -> Result<(), ImageError> {
    // No service starts inside a chroot of a build.
    let policy = root.join("usr/sbin/policy-rc.d");
    std::fs::write(&policy, "#!/bin/sh\nexit 101\n").map_err(io_err(&policy))?;
    std::fs::set_permissions(&policy, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .map_err(io_err(&policy))?;
    let proc_dir = root.join("proc");
    let mounted = Command::new("mount")
        .args(["-t", "proc", "proc"])
        .arg(&proc_dir)
        .status()
        .is_ok_and(|s| s.success());
    let chroot_apt = |args: &[&str]| {
        let mut apt = Command::new("chroot");
        // The signatures are checked; the lists' freshness is not: a
        // mirror's snapshot of testing can be older than its Release
        // file's Valid-Until (forky's, by 27 days here), which apt 3
        // refuses and debootstrap, which fetched the same lists, accepts.
        apt.arg(root)
            .arg("apt-get")
            .args(["-q", "-y", "-oAcquire::Check-Valid-Until=false"])
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
        run_logged("apt-get", &mut apt, progress)
    };
    let installed = chroot_apt(&["update"])
        .and_then(|()| {
            let mut args = vec!["install", "--no-install-recommends"];
            args.extend(ROOT_PACKAGES);
            chroot_apt(&args)
        })
        .and_then(|()| chroot_apt(&["clean"]));
    if mounted {
        let _ = Command::new("umount").arg(&proc_dir).status();
    }
    let _ = std::fs::remove_file(&policy);
    installed.map_err(|tool| ImageError::Install {
        tool,
        root: root.to_path_buf(),
    })
}

/// Unmounts whatever a killed build left mounted under `dir` (debootstrap
/// mounts proc and sys in its target; the installation, proc), deepest
/// first, so that removing the directory never reaches the host's /proc.
fn unmount_under(dir: &Path) {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let mut points = mounts_under(&mounts, dir);
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for point in points {
        let _ = Command::new("umount").arg("-l").arg(&point).status();
    }
}

/// The mount points in `/proc/self/mounts` text at or under `dir`.
fn mounts_under(mounts: &str, dir: &Path) -> Vec<String> {
    mounts
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter(|p| Path::new(p).starts_with(dir))
        .map(str::to_string)
        .collect()
}

/// Why a build tool (debootstrap, apt-get in the root) did not finish.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error("cannot run {what} ({source}): apt-get install debootstrap")]
    Spawn {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{what}: {source}")]
    Wait {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} failed ({status})")]
    Failed {
        what: &'static str,
        status: ExitStatus,
    },
}

/// Runs `command`, each line of its stdout passed to `progress`
/// (stderr goes to ours).
fn run_logged(
    what: &'static str,
    command: &mut Command,
    progress: &dyn Fn(&str),
) -> Result<(), ToolError> {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|source| ToolError::Spawn { what, source })?;
    if let Some(out) = child.stdout.take() {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            progress(&format!("{what}: {line}"));
        }
    }
    let status = child
        .wait()
        .map_err(|source| ToolError::Wait { what, source })?;
    match status.success() {
        true => Ok(()),
        false => Err(ToolError::Failed { what, status }),
    }
}

/// The release's kernel inside its root (`boot/vmlinuz-*`, or forky's
/// `usr/lib/modules/<v>/vmlinuz`) with its modules.
pub fn root_kernel(root: &Path, release: DebianRelease) -> Result<KernelSource, ImageError> {
    let found = super::kernel::kernel_in_tree(root)
        .map_err(|e| ImageError::Root(format!("{e}: the root lacks linux-image-amd64")))?;
    Ok(KernelSource {
        origin: format!("the {} root (--release {})", release.suite, release.name),
        ..found
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releases_are_named_as_the_flag_takes_them() {
        assert_eq!(Userland::parse("host"), Ok(Userland::Host));
        assert_eq!(Userland::parse("debian-13").unwrap().name(), "debian-13");
        let e = Userland::parse("debian-11").unwrap_err();
        assert!(e.to_string().contains("debian-12, debian-13"), "{e}");
        assert_eq!(
            Userland::parse("debian-testing").unwrap().name(),
            "debian-testing"
        );
    }

    #[test]
    fn a_suite_debootstrap_does_not_know_bootstraps_as_sid() {
        let scripts = tempfile::tempdir().unwrap();
        std::fs::write(scripts.path().join("trixie"), "").unwrap();
        assert_eq!(debootstrap_script("trixie", scripts.path()), None);
        assert_eq!(
            debootstrap_script("forky", scripts.path()),
            Some(scripts.path().join("sid"))
        );
    }

    #[test]
    fn a_root_is_named_by_release_mirror_and_packages() {
        let r13 = DebianRelease::named("debian-13").unwrap();
        let a = root_name(r13, "http://deb.debian.org/debian");
        assert!(
            a.starts_with("debian-13-") && a.len() == "debian-13-".len() + 16,
            "{a}"
        );
        assert_eq!(a, root_name(r13, "http://deb.debian.org/debian"));
        assert_ne!(a, root_name(r13, "http://mirror.example/debian"));
        let r12 = DebianRelease::named("debian-12").unwrap();
        assert_ne!(
            a.trim_start_matches("debian-13"),
            root_name(r12, "http://deb.debian.org/debian").trim_start_matches("debian-12")
        );
    }

    #[test]
    fn only_mounts_inside_the_partial_root_are_unmounted() {
        let mounts = "proc /proc proc rw 0 0\nproc /c/roots/d.partial/proc proc rw 0 0\nsysfs /c/roots/d.partial/sys sysfs rw 0 0\ntmpfs /c/roots/d.partialx tmpfs rw 0 0\n";
        assert_eq!(
            mounts_under(mounts, Path::new("/c/roots/d.partial")),
            ["/c/roots/d.partial/proc", "/c/roots/d.partial/sys"]
        );
    }

    #[test]
    fn the_kernel_is_found_in_the_root() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("boot")).unwrap();
        std::fs::write(root.path().join("boot/vmlinuz-6.12.117+deb13-amd64"), "").unwrap();
        std::fs::create_dir_all(root.path().join("usr/lib/modules/6.12.117+deb13-amd64")).unwrap();
        let r13 = DebianRelease::named("debian-13").unwrap();
        let k = root_kernel(root.path(), r13).unwrap();
        assert_eq!(k.version, "6.12.117+deb13-amd64");
        assert!(k.modules.ends_with("usr/lib/modules/6.12.117+deb13-amd64"));
        assert!(k.origin.contains("--release debian-13"));
    }
}
