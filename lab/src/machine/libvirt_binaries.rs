//! Which `libvirtd` and `virsh` a libvirt run uses: the installed ones,
//! a directory holding another build's two binaries, or a libvirt meson
//! build directory as `ninja` left it (what libvirt's developers test
//! their patches with).
//!
//! A build directory is run the way libvirt's own `build/run` wrapper runs
//! it: `src/libvirtd` and `tools/virsh` from the tree, `src/` first on
//! `LD_LIBRARY_PATH`, and `LIBVIRT_DIR_OVERRIDE=1` so the library loads
//! its driver modules and helpers from the tree too (the daemon turns the
//! override on by itself when its own path lies under the build
//! directory it was compiled in). Its state, configuration and socket
//! paths are compiled in: mflab prepares the system ones (/etc, /var,
//! /run), so the build must be configured with `-Dsystem=true`, as
//! libvirt's docs say for a build that works beside the OS's.
//!
//! The same paths are read on the host (to refuse a bad directory before
//! booting) and inside L1, which shares the host's root.

use std::path::{Path, PathBuf};

use serde::Deserialize;

const INSTALLED_LIBVIRTD: &str = "/usr/sbin/libvirtd";
const INSTALLED_VIRSH: &str = "/usr/bin/virsh";

/// The binaries of one libvirt, and the environment they run in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LibvirtBinaries {
    pub libvirtd: PathBuf,
    pub virsh: PathBuf,
    /// Set for both binaries (empty for installed ones).
    pub env: Vec<(String, String)>,
    /// A meson build directory, when it is one.
    pub build_dir: Option<PathBuf>,
}

impl LibvirtBinaries {
    /// The installed libvirt (/usr/sbin/libvirtd, /usr/bin/virsh).
    pub fn installed() -> Self {
        LibvirtBinaries {
            libvirtd: INSTALLED_LIBVIRTD.into(),
            virsh: INSTALLED_VIRSH.into(),
            env: Vec::new(),
            build_dir: None,
        }
    }

    /// What `--libvirt-bin DIR` names: a meson build directory (it has
    /// `meson-info/`), else a directory with `libvirtd` and `virsh`.
    pub fn resolve(dir: Option<&Path>) -> Result<Self, LibvirtBinariesError> {
        let Some(dir) = dir else {
            return Ok(Self::installed());
        };
        if dir.join("meson-info/meson-info.json").exists() {
            return Self::meson_build(dir);
        }
        if dir.join("meson.build").exists() {
            return Err(LibvirtBinariesError::SourceTree {
                dir: dir.to_path_buf(),
            });
        }
        let found = LibvirtBinaries {
            libvirtd: dir.join("libvirtd"),
            virsh: dir.join("virsh"),
            env: Vec::new(),
            build_dir: None,
        };
        found.exist()?;
        Ok(found)
    }

    fn meson_build(dir: &Path) -> Result<Self, LibvirtBinariesError> {
        let path = dir.join("meson-info/intro-buildoptions.json");
        let options = std::fs::read_to_string(&path).map_err(|source| {
            LibvirtBinariesError::BuildOptionsUnread {
                path: dir.join("meson-info"),
                source,
            }
        })?;
        let options: Vec<BuildOption> = serde_json::from_str(&options)
            .map_err(|source| LibvirtBinariesError::NotBuildOptions { path, source })?;
        system_paths(&options).map_err(|why| LibvirtBinariesError::NotSystemPaths {
            dir: dir.to_path_buf(),
            why,
        })?;
        let src = dir.join("src");
        let found = LibvirtBinaries {
            libvirtd: src.join("libvirtd"),
            virsh: dir.join("tools/virsh"),
            env: vec![
                ("LIBVIRT_DIR_OVERRIDE".into(), "1".into()),
                ("LD_LIBRARY_PATH".into(), src.display().to_string()),
            ],
            build_dir: Some(dir.to_path_buf()),
        };
        found
            .exist()
            .map_err(|missing| LibvirtBinariesError::NotBuilt {
                dir: dir.to_path_buf(),
                missing: Box::new(missing),
            })?;
        let qemu_driver = src.join("libvirt_driver_qemu.so");
        // `driver_modules` is a meson feature ("auto", "enabled",
        // "disabled"); disabled links the drivers into the daemon itself.
        let modules = option(&options, "driver_modules")
            .is_none_or(|v| v.as_str() != Some("disabled") && v.as_bool() != Some(false));
        if modules && !qemu_driver.exists() {
            return Err(LibvirtBinariesError::NoQemuDriver {
                driver: qemu_driver,
                dir: dir.to_path_buf(),
            });
        }
        Ok(found)
    }

    fn exist(&self) -> Result<(), LibvirtBinariesError> {
        for binary in [&self.libvirtd, &self.virsh] {
            if !binary.is_file() {
                return Err(LibvirtBinariesError::Missing {
                    binary: binary.clone(),
                });
            }
        }
        Ok(())
    }
}

/// Why a directory holds no libvirt mflab can run, and what to do.
#[derive(Debug, thiserror::Error)]
pub enum LibvirtBinariesError {
    #[error("{}: this is libvirt's source tree; give its build directory (e.g. --libvirt-bin {}), built with `meson setup build -Dsystem=true && ninja -C build`", .dir.display(), .dir.join("build").display())]
    SourceTree { dir: PathBuf },
    #[error("{}: {source}", .path.display())]
    BuildOptionsUnread {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: not meson's build options: {source}", .path.display())]
    NotBuildOptions {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{}: {why}; mflab runs a build with libvirt's system paths (/etc, /var, /run): reconfigure with `meson configure {} -Dsystem=true` and run `ninja -C {}`", .dir.display(), .dir.display(), .dir.display())]
    NotSystemPaths {
        dir: PathBuf,
        #[source]
        why: ForeignPaths,
    },
    #[error("{} not found", .binary.display())]
    Missing { binary: PathBuf },
    #[error("{missing} (a build directory needs `-Ddriver_libvirtd=enabled -Ddriver_qemu=enabled` and `ninja -C {}`)", .dir.display())]
    NotBuilt {
        dir: PathBuf,
        #[source]
        missing: Box<LibvirtBinariesError>,
    },
    #[error("{} not found: configure {} with `-Ddriver_qemu=enabled` and run `ninja -C {}`", .driver.display(), .dir.display(), .dir.display())]
    NoQemuDriver { driver: PathBuf, dir: PathBuf },
}

/// A build configured with paths other than the system's: its daemon
/// would look for its configuration and socket under them.
#[derive(Debug, thiserror::Error)]
#[error("configured with prefix {prefix} (sysconfdir {sysconfdir}, localstatedir {localstatedir}), so its daemon would look for its configuration and socket there")]
pub struct ForeignPaths {
    /// Each as meson's build options give it, `?` where they do not.
    pub prefix: String,
    pub sysconfdir: String,
    pub localstatedir: String,
}

/// One entry of meson's `intro-buildoptions.json`.
#[derive(Deserialize)]
struct BuildOption {
    name: String,
    value: serde_json::Value,
}

fn option<'a>(options: &'a [BuildOption], name: &str) -> Option<&'a serde_json::Value> {
    options.iter().find(|o| o.name == name).map(|o| &o.value)
}

/// Whether the build uses /etc, /var and /run: `-Dsystem=true`, or a
/// prefix of /usr (libvirt's meson.build turns /usr/etc and /usr/var into
/// /etc and /var then).
fn system_paths(options: &[BuildOption]) -> Result<(), ForeignPaths> {
    if option(options, "system").and_then(serde_json::Value::as_bool) == Some(true) {
        return Ok(());
    }
    let text = |name| option(options, name).and_then(serde_json::Value::as_str);
    let prefix = text("prefix").unwrap_or("?");
    let under_usr = |name, system: &str| {
        text(name).is_some_and(|v| v == system || v == system.trim_start_matches('/'))
    };
    if prefix == "/usr" && under_usr("sysconfdir", "/etc") && under_usr("localstatedir", "/var") {
        return Ok(());
    }
    Err(ForeignPaths {
        prefix: prefix.to_string(),
        sysconfdir: text("sysconfdir").unwrap_or("?").to_string(),
        localstatedir: text("localstatedir").unwrap_or("?").to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build_dir(options: &str, built: &[&str]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("meson-info")).unwrap();
        std::fs::write(dir.path().join("meson-info/meson-info.json"), "{}").unwrap();
        std::fs::write(
            dir.path().join("meson-info/intro-buildoptions.json"),
            options,
        )
        .unwrap();
        for file in built {
            let path = dir.path().join(file);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, "").unwrap();
        }
        dir
    }

    const BUILT: &[&str] = &["src/libvirtd", "tools/virsh", "src/libvirt_driver_qemu.so"];
    const SYSTEM: &str = r#"[{"name":"prefix","value":"/usr/local"},{"name":"sysconfdir","value":"etc"},{"name":"localstatedir","value":"/var/local"},{"name":"system","value":true},{"name":"driver_modules","value":"auto"}]"#;

    #[test]
    fn a_system_build_directory_runs_from_its_tree_as_libvirts_run_wrapper_does() {
        let dir = build_dir(SYSTEM, BUILT);
        let found = LibvirtBinaries::resolve(Some(dir.path())).unwrap();
        assert_eq!(found.libvirtd, dir.path().join("src/libvirtd"));
        assert_eq!(found.virsh, dir.path().join("tools/virsh"));
        assert!(found
            .env
            .contains(&("LIBVIRT_DIR_OVERRIDE".to_string(), "1".to_string())));
        assert!(found.env.contains(&(
            "LD_LIBRARY_PATH".to_string(),
            dir.path().join("src").display().to_string()
        )));
    }

    #[test]
    fn a_build_with_usr_local_paths_is_refused_with_the_option_to_set() {
        let local = SYSTEM.replace("true", "false");
        let dir = build_dir(&local, BUILT);
        let err = LibvirtBinaries::resolve(Some(dir.path()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("prefix /usr/local"), "{err}");
        assert!(err.contains("-Dsystem=true"), "{err}");
    }

    #[test]
    fn a_usr_prefix_is_as_good_as_system_true() {
        let usr = r#"[{"name":"prefix","value":"/usr"},{"name":"sysconfdir","value":"etc"},{"name":"localstatedir","value":"var"},{"name":"system","value":false}]"#;
        let dir = build_dir(usr, BUILT);
        assert!(LibvirtBinaries::resolve(Some(dir.path())).is_ok());
    }

    #[test]
    fn an_unbuilt_tree_or_one_without_the_qemu_driver_says_what_to_build() {
        let dir = build_dir(SYSTEM, &[]);
        let err = LibvirtBinaries::resolve(Some(dir.path()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("src/libvirtd not found"), "{err}");
        assert!(err.contains("ninja -C"), "{err}");
        let dir = build_dir(SYSTEM, &BUILT[..2]);
        let err = LibvirtBinaries::resolve(Some(dir.path()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("-Ddriver_qemu=enabled"), "{err}");
        // Without driver modules the QEMU driver is inside libvirtd.
        let linked_in = SYSTEM.replace(r#""value":"auto""#, r#""value":"disabled""#);
        let dir = build_dir(&linked_in, &BUILT[..2]);
        assert!(LibvirtBinaries::resolve(Some(dir.path())).is_ok());
    }

    #[test]
    fn the_source_tree_is_pointed_at_its_build_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("meson.build"), "project('libvirt')").unwrap();
        let err = LibvirtBinaries::resolve(Some(dir.path()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("source tree"), "{err}");
        assert!(err.contains(&dir.path().join("build").display().to_string()));
    }

    #[test]
    fn a_plain_directory_needs_both_binaries() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("libvirtd"), "").unwrap();
        let err = LibvirtBinaries::resolve(Some(dir.path()))
            .unwrap_err()
            .to_string();
        assert!(err.ends_with("virsh not found"), "{err}");
        std::fs::write(dir.path().join("virsh"), "").unwrap();
        let found = LibvirtBinaries::resolve(Some(dir.path())).unwrap();
        assert!(found.env.is_empty() && found.build_dir.is_none());
    }

    #[test]
    fn no_directory_is_the_installed_libvirt() {
        let found = LibvirtBinaries::resolve(None).unwrap();
        assert_eq!(found.libvirtd, Path::new(INSTALLED_LIBVIRTD));
        assert!(found.env.is_empty());
    }
}
