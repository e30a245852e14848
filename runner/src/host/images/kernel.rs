//! The kernel: `--kernel`/`--modules` (or `MFLAB_KERNEL`/`MFLAB_MODULES`),
//! `--kernel host` for the running kernel, else the kernel of the
//! `--release` root when one is given, else Debian's
//! `linux-image-amd64`, downloaded with `apt-get download` and unpacked
//! with `dpkg-deb` into the cache once; where apt knows no such package
//! (Ubuntu), the running kernel.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::debian_release::{DebianRelease, Fetch};
use super::{cache_dir, ImageError};

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
    // `RELEASE+FEATURE`: a kernel mflab builds (parsed once, its error kept).
    let built = kernel
        .as_ref()
        .filter(|_| modules.is_none())
        .and_then(|k| super::kernel_build::BuiltKernel::parse(&k.to_string_lossy()));
    if let Some(spec) = built {
        return super::kernel_build::built_kernel(spec?);
    }
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
        _ => Err(ImageError::Kernel(format!("give both MFLAB_KERNEL (a vmlinuz) and MFLAB_MODULES (a lib/modules/<version> directory), MFLAB_KERNEL=host, a Debian release ({}) or RELEASE+iommufd alone, or neither", DebianRelease::names()))),
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

/// The package `linux-image-amd64` depends on in the system's lists, e.g.
/// linux-image-6.1.0-56-amd64.
fn debian_kernel_package() -> Result<String, ImageError> {
    if Command::new("apt-cache").arg("--version").output().is_err() {
        return Err(ImageError::Kernel(
            "cannot run apt-cache; give MFLAB_KERNEL and MFLAB_MODULES".into(),
        ));
    }
    super::debian_release::image_package(&[]).ok_or_else(|| ImageError::Kernel("apt-cache knows no linux-image-amd64: run `apt-get update` first, or give MFLAB_KERNEL and MFLAB_MODULES".into()))
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

/// `apt-get download` of the kernel package `image` and its parts (with
/// `apt_options`), unpacked together with `dpkg-deb -x` as
/// `kernels/<image>`; the kernel in it.
pub(super) fn fetch_package(
    kernels: &Path,
    image: &str,
    apt_options: &[String],
) -> Result<KernelSource, ImageError> {
    let dir = kernels.join(image);
    let depends = super::debian_release::apt_depends(apt_options, image).unwrap_or_default();
    let parts = super::debian_release::kernel_parts(image, &depends);
    tracing::info!("downloading {}", parts.join(" "));
    let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
    super::debian_release::download_unpacked(apt_options, &parts, Fetch::Only, &dir)?;
    unpacked_kernel(kernels)?.ok_or_else(|| {
        ImageError::Kernel(format!(
            "{} holds no boot/vmlinuz-* and no usr/lib/modules/*/vmlinuz",
            dir.display()
        ))
    })
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
    let found = kernel_in_tree(&dir)?;
    Ok(Some(KernelSource {
        origin: format!(
            "Debian package {}",
            dir.file_name().unwrap().to_string_lossy()
        ),
        ..found
    }))
}

/// The newest kernel of a Debian tree (an unpacked package set or a
/// root): `boot/vmlinuz-<v>` (Debian 12 and 13), else
/// `usr/lib/modules/<v>/vmlinuz` (forky's `linux-binary-<v>`), with its
/// modules under `usr/lib/modules/<v>` (merged /usr) or `lib/modules/<v>`.
/// The origin is left for the caller to say.
pub(super) fn kernel_in_tree(dir: &Path) -> Result<KernelSource, ImageError> {
    let named = |d: &Path, keep: &dyn Fn(&str) -> Option<String>| -> Vec<(String, PathBuf)> {
        let mut found: Vec<(String, PathBuf)> = std::fs::read_dir(d)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| Some((keep(&e.file_name().to_string_lossy())?, e.path())))
            .collect();
        found.sort();
        found
    };
    let in_boot = named(&dir.join("boot"), &|n| {
        n.strip_prefix("vmlinuz-").map(str::to_string)
    });
    let in_modules = named(&dir.join("usr/lib/modules"), &|n| Some(n.to_string()))
        .into_iter()
        .map(|(v, d)| (v, d.join("vmlinuz")))
        .filter(|(_, vmlinuz)| vmlinuz.is_file())
        .collect::<Vec<_>>();
    let (version, vmlinuz) = in_boot
        .into_iter()
        .next_back()
        .or_else(|| in_modules.into_iter().next_back())
        .ok_or_else(|| {
            ImageError::Kernel(format!(
                "{} has no boot/vmlinuz-* and no usr/lib/modules/*/vmlinuz",
                dir.display()
            ))
        })?;
    let modules = ["usr/lib/modules", "lib/modules"]
        .iter()
        .map(|m| dir.join(m).join(&version))
        .find(|m| m.is_dir())
        .ok_or_else(|| {
            ImageError::Kernel(format!("{} has no modules for {version}", dir.display()))
        })?;
    Ok(KernelSource {
        vmlinuz,
        modules,
        version,
        origin: String::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(path: &Path) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, "").unwrap();
    }

    #[test]
    fn a_kernel_is_found_in_boot_or_beside_its_modules() {
        let trixie = tempfile::tempdir().unwrap();
        touch(&trixie.path().join("boot/vmlinuz-6.12.117+deb13-amd64"));
        touch(
            &trixie
                .path()
                .join("usr/lib/modules/6.12.117+deb13-amd64/modules.order"),
        );
        let k = kernel_in_tree(trixie.path()).unwrap();
        assert_eq!(k.version, "6.12.117+deb13-amd64");
        assert!(k.vmlinuz.ends_with("boot/vmlinuz-6.12.117+deb13-amd64"));
        assert!(k.modules.ends_with("usr/lib/modules/6.12.117+deb13-amd64"));

        let forky = tempfile::tempdir().unwrap();
        touch(
            &forky
                .path()
                .join("usr/lib/modules/7.2.12+deb14-amd64/vmlinuz"),
        );
        touch(
            &forky
                .path()
                .join("usr/lib/modules/7.2.12+deb14-amd64/config"),
        );
        let k = kernel_in_tree(forky.path()).unwrap();
        assert_eq!(k.version, "7.2.12+deb14-amd64");
        assert!(k
            .vmlinuz
            .ends_with("usr/lib/modules/7.2.12+deb14-amd64/vmlinuz"));

        let empty = tempfile::tempdir().unwrap();
        let e = kernel_in_tree(empty.path()).unwrap_err().to_string();
        assert!(e.contains("no boot/vmlinuz-*"), "{e}");
    }
}
