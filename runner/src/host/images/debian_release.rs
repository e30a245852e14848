//! `--kernel debian-13` (or `debian-12`, `debian-testing`): that Debian
//! release's current `linux-image-amd64` kernel, whatever the host runs. apt is pointed at a
//! sources list of mflab's own under the cache directory (the system's
//! mirror, the release's suite) with its own lists and cache, so the
//! system's sources, lists and package cache are never touched: adding
//! trixie to the system's sources would upgrade the host on its next
//! `apt-get install`. The kernel is unpacked once into
//! `<cache>/kernels/<release>/` and used from there, offline too.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::kernel::{fetch_package, unpacked_kernel};
use super::{cache_dir, io_err, ImageError, KernelSource};

/// A Debian release mflab can fetch a kernel of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DebianRelease {
    /// What `--kernel` takes: `debian-13`.
    pub name: &'static str,
    /// The archive's suite: `trixie`.
    pub suite: &'static str,
}

const RELEASES: &[DebianRelease] = &[
    DebianRelease {
        name: "debian-12",
        suite: "bookworm",
    },
    DebianRelease {
        name: "debian-13",
        suite: "trixie",
    },
    // Named by its codename, not `testing`: a root or kernel cached under
    // it stays forky's when testing moves on to the next release.
    DebianRelease {
        name: "debian-testing",
        suite: "forky",
    },
];

/// The archive where the system names none (Ubuntu).
const DEFAULT_MIRROR: &str = "http://deb.debian.org/debian";
/// Debian's archive keys (package `debian-archive-keyring`, in Ubuntu too).
pub const KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";
pub const SYSTEM_SOURCES: &str = "/etc/apt/sources.list.d/debian.sources";

impl DebianRelease {
    pub fn named(name: &str) -> Option<DebianRelease> {
        RELEASES.iter().copied().find(|r| r.name == name)
    }

    /// `debian-12, debian-13, debian-testing`, for messages.
    pub fn names() -> String {
        RELEASES
            .iter()
            .map(|r| r.name)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The mirror of the system's Debian entry (deb822 `URIs:` of the stanza
/// whose suites are the release's own, not `-security`), else Debian's.
pub fn mirror_uri(deb822: &str) -> String {
    deb822
        .split("\n\n")
        .filter(|stanza| {
            stanza.lines().any(|l| {
                l.strip_prefix("Suites:").is_some_and(|s| {
                    s.split_whitespace()
                        .any(|suite| !suite.contains("security"))
                })
            })
        })
        .find_map(|stanza| {
            stanza
                .lines()
                .find_map(|l| l.strip_prefix("URIs:"))
                .and_then(|u| u.split_whitespace().next())
                .map(str::to_string)
        })
        .unwrap_or_else(|| DEFAULT_MIRROR.to_string())
}

/// The one line of mflab's own sources list for `suite`.
pub fn sources_line(mirror: &str, suite: &str) -> String {
    format!("deb [signed-by={KEYRING}] {mirror} {suite} main\n")
}

/// apt's options that make it read and write only under `apt_dir`.
pub fn apt_options(apt_dir: &Path) -> Vec<String> {
    let d = apt_dir.display();
    vec![
        format!("-oDir::Etc::SourceList={d}/sources.list"),
        "-oDir::Etc::SourceParts=/dev/null".into(),
        format!("-oDir::State::Lists={d}/lists"),
        format!("-oDir::Cache={d}/cache"),
        "-oAcquire::Languages=none".into(),
    ]
}

/// The release's kernel: unpacked earlier, else fetched now.
pub fn kernel(release: DebianRelease) -> Result<KernelSource, ImageError> {
    let kernels = cache_dir().join("kernels").join(release.name);
    if let Some(found) = unpacked_kernel(&kernels)? {
        return Ok(labelled(found, release));
    }
    let apt = OwnApt::for_suite(&kernels.join("apt"), release.suite)
        .map_err(|e| ImageError::Kernel(format!("--kernel {}: {e}", release.name)))?;
    let package = image_package(&apt.options).ok_or_else(|| {
        ImageError::Kernel(format!(
            "--kernel {}: {} names no linux-image-amd64",
            release.name, release.suite
        ))
    })?;
    fetch_package(&kernels, &package, &apt.options).map(|k| labelled(k, release))
}

/// apt pointed at one suite of the system's mirror, with lists and a
/// cache under a directory of mflab's own: the system's sources, lists
/// and package cache are never read or written.
pub struct OwnApt {
    pub options: Vec<String>,
    dir: PathBuf,
}

/// What [`download_unpacked`] fetches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fetch {
    /// The packages named, nothing else.
    Only,
    /// The packages and everything they depend on (not their
    /// recommendations), the C library and its loader included: a tree
    /// that runs on its own suite's libraries, whatever the host has.
    WithDependencies,
}

impl OwnApt {
    /// Writes the sources list under `apt_dir` and runs `apt-get update`.
    pub fn for_suite(apt_dir: &Path, suite: &str) -> Result<OwnApt, ImageError> {
        Self::for_suite_over(apt_dir, suite, None)
    }

    /// As [`OwnApt::for_suite`], with `base` beside `suite` for what
    /// `suite` lacks and `suite` preferred: a backports suite holds the
    /// backported packages only, their dependencies are in its release.
    pub fn for_suite_over(
        apt_dir: &Path,
        suite: &str,
        base: Option<&str>,
    ) -> Result<OwnApt, ImageError> {
        for dir in [apt_dir.join("lists/partial"), apt_dir.join("cache")] {
            std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        }
        if !Path::new(KEYRING).is_file() {
            return Err(ImageError::Kernel(format!(
                "{KEYRING} is missing: apt-get install debian-archive-keyring"
            )));
        }
        let system = std::fs::read_to_string(SYSTEM_SOURCES).unwrap_or_default();
        let list = apt_dir.join("sources.list");
        let mirror = mirror_uri(&system);
        let lines: String = base
            .iter()
            .chain([&suite])
            .map(|s| sources_line(&mirror, s))
            .collect();
        std::fs::write(&list, lines).map_err(io_err(&list))?;
        let mut options = apt_options(apt_dir);
        if base.is_some() {
            options.push(format!("-oAPT::Default-Release={suite}"));
        }
        tracing::info!("apt-get update for {suite}");
        let status = Command::new("apt-get")
            .args(&options)
            .args(["-q", "update"])
            .stdout(std::io::stderr())
            .status()
            .map_err(|e| ImageError::Kernel(format!("apt-get update: {e}")))?;
        if !status.success() {
            return Err(ImageError::Kernel(format!(
                "apt-get update with {} failed ({status})",
                list.display()
            )));
        }
        Ok(OwnApt {
            options,
            dir: apt_dir.to_path_buf(),
        })
    }

    /// The version apt would fetch of `package`.
    pub fn candidate(&self, package: &str) -> Option<String> {
        let out = Command::new("apt-cache")
            .args(&self.options)
            .args(["policy", package])
            .output()
            .ok()?;
        candidate_of(&String::from_utf8_lossy(&out.stdout))
    }

    /// [`download_unpacked`] with this apt.
    pub fn download_unpacked(
        &self,
        packages: &[&str],
        fetch: Fetch,
        target: &Path,
    ) -> Result<(), ImageError> {
        let mut options = self.options.clone();
        if fetch == Fetch::WithDependencies {
            // An empty dpkg status: apt resolves as for an empty root, so
            // nothing is left out because the host has an older version.
            let state = self.dir.join("state");
            std::fs::create_dir_all(&state).map_err(io_err(&state))?;
            let status = state.join("status");
            std::fs::write(&status, "").map_err(io_err(&status))?;
            options.extend([
                format!("-oDir::State={}", state.display()),
                format!("-oDir::State::status={}", status.display()),
                "-oAPT::Architectures=amd64".into(),
            ]);
        }
        download_unpacked(&options, packages, fetch, target)
    }
}

/// `apt-get download` of `packages` (with `apt_options`), each unpacked
/// with `dpkg-deb -x` into `target`, which appears whole or not at all
/// (two runners that fetch at once: the first rename wins).
pub fn download_unpacked(
    apt_options: &[String],
    packages: &[&str],
    fetch: Fetch,
    target: &Path,
) -> Result<(), ImageError> {
    let parent = target.parent().unwrap_or(Path::new("."));
    // Per process, so that two runners starting at once do not collide.
    let download = parent.join(format!("download.{}", std::process::id()));
    let partial = parent.join(format!("unpack.{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&partial);
    std::fs::create_dir_all(&download).map_err(io_err(&download))?;
    let result = (|| {
        // apt-get's progress goes to stderr: stdout is the report's (JSON).
        let mut apt = Command::new("apt-get");
        apt.args(apt_options);
        match fetch {
            Fetch::Only => apt.arg("download"),
            Fetch::WithDependencies => apt
                .arg(format!("-oDir::Cache::archives={}", download.display()))
                .args(["-y", "-q", "--download-only", "--no-install-recommends"])
                .arg("install"),
        };
        let status = apt
            .args(packages)
            .current_dir(&download)
            .stdout(std::io::stderr())
            .status()
            .map_err(|e| ImageError::Kernel(format!("apt-get download: {e}")))?;
        if !status.success() {
            return Err(ImageError::Kernel(format!(
                "apt-get download {} failed ({status})",
                packages.join(" ")
            )));
        }
        for entry in std::fs::read_dir(&download).map_err(io_err(&download))? {
            let deb = entry.map_err(io_err(&download))?.path();
            // apt's own lock file and partial/ directory sit beside the debs.
            if deb.extension().is_none_or(|e| e != "deb") {
                continue;
            }
            let status = Command::new("dpkg-deb")
                .arg("-x")
                .arg(&deb)
                .arg(&partial)
                .status()
                .map_err(|e| ImageError::Kernel(format!("dpkg-deb: {e}")))?;
            if !status.success() {
                return Err(ImageError::Kernel(format!(
                    "dpkg-deb -x {} failed",
                    deb.display()
                )));
            }
        }
        if std::fs::rename(&partial, target).is_err() && !target.is_dir() {
            return Err(ImageError::Kernel(format!(
                "could not move {} to {}",
                partial.display(),
                target.display()
            )));
        }
        Ok(())
    })();
    let _ = std::fs::remove_dir_all(&download);
    let _ = std::fs::remove_dir_all(&partial);
    result
}

/// From `apt-cache policy` output: the `Candidate:` version.
pub fn candidate_of(policy: &str) -> Option<String> {
    policy
        .lines()
        .find_map(|l| l.trim().strip_prefix("Candidate: "))
        .filter(|v| *v != "(none)")
        .map(str::to_string)
}

fn labelled(mut k: KernelSource, release: DebianRelease) -> KernelSource {
    k.origin = format!("{} (--kernel {})", k.origin, release.name);
    k
}

/// The package `linux-image-amd64` depends on in the lists `options`
/// point apt at (none: the system's).
pub fn image_package(options: &[String]) -> Option<String> {
    depended_image(&apt_depends(options, "linux-image-amd64")?)
}

/// `apt-cache depends --important package` (with `options`).
pub fn apt_depends(options: &[String], package: &str) -> Option<String> {
    let out = Command::new("apt-cache")
        .args(options)
        .args(["depends", "--important", package])
        .output()
        .ok()?;
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// From `apt-cache depends` output: `linux-image-6.12.117+deb13-amd64`.
pub fn depended_image(depends: &str) -> Option<String> {
    depends
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Depends: "))
        .find(|p| p.starts_with("linux-image-") && !p.contains("unsigned"))
        .map(str::to_string)
}

/// The packages that make up the kernel of `image`: the image itself and
/// those of its dependencies built for the same kernel version. Debian
/// 12's and 13's `linux-image-<v>` hold the files; forky's is empty and
/// depends on `linux-binary-<v>` (the `vmlinuz`), `linux-modules-<v>`
/// and `linux-base-<v>` (its `config`). The tools it also depends on
/// (`linux-base`, an initramfs generator) are not the kernel's.
pub fn kernel_parts(image: &str, depends: &str) -> Vec<String> {
    let version = image.trim_start_matches("linux-image-");
    let mut parts = vec![image.to_string()];
    parts.extend(
        depends
            .lines()
            .filter_map(|l| l.trim().trim_start_matches('|').strip_prefix("Depends: "))
            .filter(|p| {
                p.starts_with("linux-")
                    && p.strip_suffix(version)
                        .is_some_and(|stem| stem.ends_with('-') && stem != "linux-image-")
            })
            .map(str::to_string),
    );
    parts.dedup();
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOOKWORM: &str = "Types: deb\n# http://snapshot.debian.org/archive/debian/20250520T000000Z\nURIs: http://deb.debian.org/debian\nSuites: bookworm bookworm-updates\nComponents: main\n\nTypes: deb\nURIs: http://security.example/debian-security\nSuites: bookworm-security\nComponents: main\n";

    #[test]
    fn the_mirror_is_the_system_s_main_entry_not_security() {
        assert_eq!(mirror_uri(BOOKWORM), "http://deb.debian.org/debian");
        let reversed = "URIs: http://sec.example/ds\nSuites: bookworm-security\n\nURIs: http://mirror.example/debian\nSuites: bookworm\n";
        assert_eq!(mirror_uri(reversed), "http://mirror.example/debian");
        assert_eq!(mirror_uri(""), DEFAULT_MIRROR);
    }

    #[test]
    fn the_sources_list_names_trixie_with_debian_s_keys() {
        let r = DebianRelease::named("debian-13").unwrap();
        assert_eq!(
            sources_line("http://deb.debian.org/debian", r.suite),
            "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie main\n"
        );
        assert!(DebianRelease::named("debian-11").is_none());
        assert_eq!(
            DebianRelease::names(),
            "debian-12, debian-13, debian-testing"
        );
        assert_eq!(
            DebianRelease::named("debian-testing").unwrap().suite,
            "forky"
        );
    }

    #[test]
    fn apt_reads_and_writes_only_its_own_directory() {
        let o = apt_options(Path::new("/c/apt"));
        assert_eq!(
            o,
            [
                "-oDir::Etc::SourceList=/c/apt/sources.list",
                "-oDir::Etc::SourceParts=/dev/null",
                "-oDir::State::Lists=/c/apt/lists",
                "-oDir::Cache=/c/apt/cache",
                "-oAcquire::Languages=none",
            ]
        );
    }

    #[test]
    fn the_candidate_is_what_apt_would_fetch() {
        let out = "qemu-system-x86:\n  Installed: 1:7.2+dfsg-7+deb12u18+b3\n  Candidate: 1:10.0.2+ds-2+deb13u1~bpo12+1\n  Version table:\n";
        assert_eq!(
            candidate_of(out).as_deref(),
            Some("1:10.0.2+ds-2+deb13u1~bpo12+1")
        );
        assert_eq!(candidate_of("x:\n  Candidate: (none)\n"), None);
    }

    #[test]
    fn the_image_package_is_the_signed_one() {
        let out = "linux-image-amd64\n  Depends: linux-image-6.12.117+deb13-amd64\n";
        assert_eq!(
            depended_image(out).as_deref(),
            Some("linux-image-6.12.117+deb13-amd64")
        );
        assert_eq!(depended_image("linux-image-amd64\n"), None);
    }

    #[test]
    fn forky_s_kernel_is_its_image_and_the_parts_built_for_its_version() {
        let depends = "linux-image-7.2.12+deb14-amd64\n  PreDepends: linux-base\n |Depends: dracut\n |Depends: initramfs-tools\n  Depends: <linux-initramfs-tool>\n    dracut\n  Depends: linux-base-7.2.12+deb14-amd64\n  Depends: linux-binary-7.2.12+deb14-amd64\n  Depends: linux-modules-7.2.12+deb14-amd64\n";
        assert_eq!(
            kernel_parts("linux-image-7.2.12+deb14-amd64", depends),
            [
                "linux-image-7.2.12+deb14-amd64",
                "linux-base-7.2.12+deb14-amd64",
                "linux-binary-7.2.12+deb14-amd64",
                "linux-modules-7.2.12+deb14-amd64",
            ]
        );
        // Debian 13's image holds everything: it is the only part.
        let trixie = "linux-image-6.12.117+deb13-amd64\n  PreDepends: kmod\n  PreDepends: linux-base\n |Depends: initramfs-tools\n";
        assert_eq!(
            kernel_parts("linux-image-6.12.117+deb13-amd64", trixie),
            ["linux-image-6.12.117+deb13-amd64"]
        );
    }
}
