//! `--kernel debian-13` (or `debian-12`): that Debian release's current
//! `linux-image-amd64` kernel, whatever the host runs. apt is pointed at a
//! sources list of mflab's own under the cache directory (the system's
//! mirror, the release's suite) with its own lists and cache, so the
//! system's sources, lists and package cache are never touched: adding
//! trixie to the system's sources would upgrade the host on its next
//! `apt-get install`. The kernel is unpacked once into
//! `<cache>/kernels/<release>/` and used from there, offline too.

use std::path::Path;
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

    /// `debian-12, debian-13`, for messages.
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

/// The one line of mflab's own sources list for `release`.
pub fn sources_line(mirror: &str, release: DebianRelease) -> String {
    format!(
        "deb [signed-by={KEYRING}] {mirror} {} main\n",
        release.suite
    )
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
    let apt_dir = kernels.join("apt");
    for dir in [apt_dir.join("lists/partial"), apt_dir.join("cache")] {
        std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    }
    let system = std::fs::read_to_string(SYSTEM_SOURCES).unwrap_or_default();
    let list = apt_dir.join("sources.list");
    std::fs::write(&list, sources_line(&mirror_uri(&system), release)).map_err(io_err(&list))?;
    if !Path::new(KEYRING).is_file() {
        return Err(ImageError::Kernel(format!(
            "--kernel {}: {KEYRING} is missing: apt-get install debian-archive-keyring",
            release.name
        )));
    }
    let options = apt_options(&apt_dir);
    tracing::info!("apt-get update for {} ({})", release.name, release.suite);
    let status = Command::new("apt-get")
        .args(&options)
        .args(["-q", "update"])
        .stdout(std::io::stderr())
        .status()
        .map_err(|e| ImageError::Kernel(format!("apt-get update: {e}")))?;
    if !status.success() {
        return Err(ImageError::Kernel(format!(
            "--kernel {}: apt-get update with {} failed ({status})",
            release.name,
            list.display()
        )));
    }
    let package = image_package(&options).ok_or_else(|| {
        ImageError::Kernel(format!(
            "--kernel {}: {} names no linux-image-amd64",
            release.name, release.suite
        ))
    })?;
    fetch_package(&kernels, &package, &options).map(|k| labelled(k, release))
}

fn labelled(mut k: KernelSource, release: DebianRelease) -> KernelSource {
    k.origin = format!("{} (--kernel {})", k.origin, release.name);
    k
}

/// The package `linux-image-amd64` depends on in the release's lists.
fn image_package(options: &[String]) -> Option<String> {
    let out = Command::new("apt-cache")
        .args(options)
        .args(["depends", "--important", "linux-image-amd64"])
        .output()
        .ok()?;
    depended_image(&String::from_utf8_lossy(&out.stdout))
}

/// From `apt-cache depends` output: `linux-image-6.12.117+deb13-amd64`.
pub fn depended_image(depends: &str) -> Option<String> {
    depends
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Depends: "))
        .find(|p| p.starts_with("linux-image-") && !p.contains("unsigned"))
        .map(str::to_string)
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
            sources_line("http://deb.debian.org/debian", r),
            "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie main\n"
        );
        assert!(DebianRelease::named("debian-11").is_none());
        assert_eq!(DebianRelease::names(), "debian-12, debian-13");
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
    fn the_image_package_is_the_signed_one() {
        let out = "linux-image-amd64\n  Depends: linux-image-6.12.117+deb13-amd64\n";
        assert_eq!(
            depended_image(out).as_deref(),
            Some("linux-image-6.12.117+deb13-amd64")
        );
        assert_eq!(depended_image("linux-image-amd64\n"), None);
    }
}
