//! `--libvirt-bin` as the host reads it, before anything boots: the
//! directory must hold a libvirt L1 can run (see
//! [`lab::machine::libvirt_binaries`]), and L1 must see it where the host does.

use std::path::{Path, PathBuf};

use lab::machine::libvirt_binaries::{LibvirtBinaries, LibvirtBinariesError};

use super::images::release_root::Userland;

/// The absolute path L1 is given for `dir` (L1's working directory is
/// not the user's), once it is known to hold a libvirt.
pub fn checked(dir: &Path, userland: Userland) -> Result<PathBuf, LibvirtBinError> {
    let absolute = dir
        .canonicalize()
        .map_err(|source| LibvirtBinError::Unreadable {
            dir: dir.to_path_buf(),
            source,
        })?;
    if userland != Userland::Host {
        return Err(LibvirtBinError::NotInRelease {
            dir: dir.to_path_buf(),
            release: userland.name(),
        });
    }
    LibvirtBinaries::resolve(Some(&absolute))?;
    Ok(absolute)
}

/// Why `--libvirt-bin` cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum LibvirtBinError {
    #[error("--libvirt-bin {}: {source}", .dir.display())]
    Unreadable {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("--libvirt-bin {} is a directory of the host's root, which L1 does not share with --release {release} (and a build runs against the libraries it was built with): leave --release out, or build libvirt inside that release", .dir.display())]
    NotInRelease { dir: PathBuf, release: &'static str },
    #[error("--libvirt-bin: {0}")]
    NoLibvirt(#[from] LibvirtBinariesError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_relative_directory_reaches_l1_as_an_absolute_one() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["libvirtd", "virsh"] {
            std::fs::write(dir.path().join(name), "").unwrap();
        }
        let cwd = std::env::current_dir().unwrap();
        let relative = pathdiff(dir.path(), &cwd);
        let got = checked(&relative, Userland::Host).unwrap();
        assert!(got.is_absolute());
        assert_eq!(got, dir.path().canonicalize().unwrap());
    }

    #[test]
    fn another_release_root_cannot_see_the_hosts_directory() {
        let dir = tempfile::tempdir().unwrap();
        let release = Userland::parse("debian-13").unwrap();
        let err = checked(dir.path(), release).unwrap_err();
        assert!(err.to_string().contains("--release debian-13"), "{err}");
    }

    /// `target` relative to `base` ("../../tmp/x").
    fn pathdiff(target: &Path, base: &Path) -> PathBuf {
        let ups = base.components().count() - 1;
        let mut p = PathBuf::new();
        for _ in 0..ups {
            p.push("..");
        }
        p.join(target.strip_prefix("/").unwrap())
    }
}
