//! The kernel: `--kernel`/`--modules` (or `MFLAB_KERNEL`/`MFLAB_MODULES`),
//! `--kernel host` for the running kernel, else the kernel of the
//! `--release` root when one is given, else Debian's
//! `linux-image-amd64`, downloaded with `apt-get download` and unpacked
//! with `dpkg-deb` into the cache once; where apt knows no such package
//! (Ubuntu), the running kernel.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::debian_release::{DebianRelease, Fetch};
use super::{cache_dir, io_err, ImageError};

#[derive(Clone, Debug)]
pub struct KernelSource {
    pub vmlinuz: PathBuf,
    /// The `lib/modules/<version>` directory.
    pub modules: PathBuf,
    pub version: String,
    /// Where it came from, for `mflab images`.
    pub origin: String,
}

pub fn find_kernel() -> Result<KernelSource, ImageError> {
    let kernel = std::env::var_os("MFLAB_KERNEL").map(PathBuf::from);
    let modules = std::env::var_os("MFLAB_MODULES").map(PathBuf::from);
    match (kernel, modules) {
        (Some(k), None) if k.as_os_str() == "host" => host_kernel("--kernel host"),
        (Some(k), None) if DebianRelease::named(&k.to_string_lossy()).is_some() => {
            super::debian_release::kernel(DebianRelease::named(&k.to_string_lossy()).expect("checked"))
        }
        (Some(vmlinuz), Some(modules)) => {
            if !vmlinuz.is_file() {
                return Err(ImageError::Kernel(format!("kernel {} is not a file; give a vmlinuz (bzImage)", vmlinuz.display())));
            }
            if !modules.is_dir() {
                return Err(ImageError::Kernel(format!("modules {} is not a directory; give the kernel's lib/modules/<version>", modules.display())));
            }
            let version = modules.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            Ok(KernelSource {
                vmlinuz,
                modules,
                version,
                origin: "MFLAB_KERNEL/MFLAB_MODULES".into(),
            })
        }
        (None, None) => match super::release_root::Userland::from_env().map_err(|e| ImageError::Root(e.to_string()))? {
            super::release_root::Userland::Debian(release) => {
                let root = super::release_root::built_root(release)?;
                super::release_root::root_kernel(&root, release)
            }
            super::release_root::Userland::Host => debian_kernel(),
        },
        _ => Err(ImageError::Kernel(format!("give both MFLAB_KERNEL (a vmlinuz) and MFLAB_MODULES (a lib/modules/<version> directory), MFLAB_KERNEL=host or a Debian release ({}) alone, or neither", DebianRelease::names()))),
    }
}

/// The running kernel's release, as `uname -r` prints it.
fn running_release() -> Result<String, ImageError> {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .map_err(|e| ImageError::Kernel(format!("cannot read the running kernel's release: {e}")))
}

/// The running kernel: `/boot/vmlinuz-$(uname -r)` and `/lib/modules/$(uname -r)`.
fn host_kernel(why: &str) -> Result<KernelSource, ImageError> {
    let version = running_release()?;
    let vmlinuz = PathBuf::from(format!("/boot/vmlinuz-{version}"));
    let modules = PathBuf::from(format!("/lib/modules/{version}"));
    // Ubuntu's vmlinuz is mode 0600: readable by root only.
    if std::fs::File::open(&vmlinuz).is_err() {
        return Err(ImageError::Kernel(format!("{why}: {} is missing or unreadable (Ubuntu's is root's only: run as root); or give --kernel and --modules", vmlinuz.display())));
    }
    if !modules.is_dir() {
        return Err(ImageError::Kernel(format!(
            "{why}: {} is not a directory; install the running kernel's modules package",
            modules.display()
        )));
    }
    Ok(KernelSource {
        vmlinuz,
        modules,
        version,
        origin: format!("the running kernel ({why})"),
    })
}

/// The package `linux-image-amd64` depends on, e.g. linux-image-6.1.0-56-amd64.
fn debian_kernel_package() -> Result<String, ImageError> {
    let out = Command::new("apt-cache")
        .args(["depends", "--important", "linux-image-amd64"])
        .output()
        .map_err(|e| {
            ImageError::Kernel(format!(
                "cannot run apt-cache ({e}); give MFLAB_KERNEL and MFLAB_MODULES"
            ))
        })?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Depends: "))
        .find(|p| p.starts_with("linux-image-") && !p.contains("unsigned"))
        .map(str::to_string)
        .ok_or_else(|| ImageError::Kernel("apt-cache knows no linux-image-amd64: run `apt-get update` first, or give MFLAB_KERNEL and MFLAB_MODULES".into()))
}

fn debian_kernel() -> Result<KernelSource, ImageError> {
    let kernels = cache_dir().join("kernels");
    // A kernel unpacked earlier is used as it is, even offline.
    if let Some(found) = unpacked_kernel(&kernels)? {
        return Ok(found);
    }
    let package = match debian_kernel_package() {
        Ok(p) => p,
        Err(no_package) => {
            return host_kernel("no Debian linux-image-amd64 here").map_err(|e| {
                ImageError::Kernel(format!("{no_package}; and the running kernel: {e}"))
            })
        }
    };
    fetch_package(&kernels, &package, &[])
}

/// `apt-get download` of `package` (with `apt_options`) into `kernels`,
/// unpacked there with `dpkg-deb -x` as `kernels/<package>`; the kernel in it.
pub(super) fn fetch_package(
    kernels: &Path,
    package: &str,
    apt_options: &[String],
) -> Result<KernelSource, ImageError> {
    let dir = kernels.join(package);
    tracing::info!("downloading {package}");
    super::debian_release::download_unpacked(apt_options, &[package], Fetch::Only, &dir)?;
    unpacked_kernel(kernels)?
        .ok_or_else(|| ImageError::Kernel(format!("{} holds no boot/vmlinuz-*", dir.display())))
}

/// The newest `linux-image-*` unpacked in `kernels`, if any.
pub(super) fn unpacked_kernel(kernels: &Path) -> Result<Option<KernelSource>, ImageError> {
    let Ok(entries) = std::fs::read_dir(kernels) else {
        return Ok(None);
    };
    let mut dirs: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name().is_some_and(|n| {
                n.to_string_lossy().starts_with("linux-image-")
                    && !n.to_string_lossy().ends_with(".partial")
            })
        })
        .collect();
    dirs.sort();
    let Some(dir) = dirs.pop() else {
        return Ok(None);
    };
    let boot = dir.join("boot");
    let vmlinuz = std::fs::read_dir(&boot)
        .map_err(io_err(&boot))?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))
        })
        .ok_or_else(|| ImageError::Kernel(format!("{} has no vmlinuz-*", boot.display())))?;
    let version = vmlinuz
        .file_name()
        .unwrap()
        .to_string_lossy()
        .trim_start_matches("vmlinuz-")
        .to_string();
    // Debian 13's packages put the modules under usr/ (merged /usr).
    let modules = ["lib/modules", "usr/lib/modules"]
        .iter()
        .map(|m| dir.join(m).join(&version))
        .find(|m| m.is_dir())
        .unwrap_or_else(|| dir.join("lib/modules").join(&version));
    Ok(Some(KernelSource {
        modules,
        vmlinuz,
        origin: format!(
            "Debian package {}",
            dir.file_name().unwrap().to_string_lossy()
        ),
        version,
    }))
}
