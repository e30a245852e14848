//! `--kernel RELEASE+FEATURE` (`debian-testing+iommufd`): a Debian
//! release's kernel rebuilt from its own `linux-source-<major.minor>` with
//! a feature the release builds without, for L1 and L2. The release's
//! config is the start: `make localmodconfig` keeps as modules only those
//! the lab loads (the builtins stay Debian's), `images/kernel-build.config`
//! and the feature's `images/kernel-<feature>.config` are laid over it,
//! and every line of the fragments must hold in the final config (a
//! dependency Kconfig refused is an error, not a kernel without the
//! feature). The result is cached by what went into it (the source
//! package's version, the config, the fragments, the module list) under
//! `<cache>/kernels/built/`, as `usr/lib/modules/<version>/vmlinuz` beside
//! its modules, which is forky's own layout.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use sha2::{Digest, Sha256};

use super::debian_release::{DebianRelease, Fetch, OwnApt};
use super::kernel::{kernel_in_tree, KernelSource};
use super::{cache_dir, io_err, ImageError};

/// A feature mflab can build into a release's kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Feature {
    /// What follows the `+`: `iommufd`.
    pub name: &'static str,
    /// Its Kconfig fragment.
    pub fragment: &'static str,
}

const FEATURES: &[Feature] = &[Feature {
    name: "iommufd",
    fragment: include_str!("../../../../images/kernel-iommufd.config"),
}];

/// Laid over the release's config for every build.
const BUILD_FRAGMENT: &str = include_str!("../../../../images/kernel-build.config");

/// Changes when the way a kernel is built changes beyond the inputs hashed.
const BUILD_LAYOUT: &str = "1: localmodconfig, fragments, bzImage modules";

/// Modules the lab loads beyond the initramfs lists: what vfio-pci and
/// KVM pull in by name at run time.
const RUNTIME_MODULES: &[&str] = &["vfio", "vfio_pci_core", "iommufd", "kvm", "irqbypass"];

/// `debian-testing+iommufd`, parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BuiltKernel {
    pub release: DebianRelease,
    pub feature: Feature,
}

impl BuiltKernel {
    /// `Some` for a `RELEASE+FEATURE` spelling, with the error when either
    /// half is unknown; `None` for any other `--kernel`.
    pub fn parse(spec: &str) -> Option<Result<BuiltKernel, ImageError>> {
        let (release, feature) = spec.split_once('+')?;
        let Some(release) = DebianRelease::named(release) else {
            return Some(Err(ImageError::Kernel(format!(
                "--kernel {spec}: unknown release '{release}'; write one of {} before the +",
                DebianRelease::names()
            ))));
        };
        let Some(feature) = FEATURES.iter().copied().find(|f| f.name == feature) else {
            return Some(Err(ImageError::Kernel(format!(
                "--kernel {spec}: unknown feature '{feature}'; write one of {} after the +",
                FEATURES
                    .iter()
                    .map(|f| f.name)
                    .collect::<Vec<_>>()
                    .join(", ")
            ))));
        };
        Some(Ok(BuiltKernel { release, feature }))
    }

    pub fn spec(&self) -> String {
        format!("{}+{}", self.release.name, self.feature.name)
    }
}

/// The `CONFIG_X=v` lines of a fragment, comments left out.
pub fn fragment_lines(fragment: &str) -> Vec<&str> {
    fragment
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("CONFIG_"))
        .collect()
}

/// The fragment lines `config` does not hold: `CONFIG_X=n` holds when the
/// config says `# CONFIG_X is not set` or has no such option at all.
pub fn unmet<'a>(fragment: &[&'a str], config: &str) -> Vec<&'a str> {
    fragment
        .iter()
        .copied()
        .filter(|line| {
            let Some((option, value)) = line.split_once('=') else {
                return true;
            };
            if value == "n" {
                let set = format!("{option}=");
                return config.lines().any(|l| l.starts_with(&set));
            }
            !config.lines().any(|l| l == *line)
        })
        .collect()
}

/// `linux-source-7.2` for kernel version `7.2.12+deb14-amd64`.
pub fn source_package(version: &str) -> Option<String> {
    let mut numbers = version.split(|c: char| !c.is_ascii_digit());
    let (major, minor) = (numbers.next()?, numbers.next()?);
    (!major.is_empty() && !minor.is_empty()).then(|| format!("linux-source-{major}.{minor}"))
}

/// lsmod's format, as `make localmodconfig` reads it from `LSMOD`.
pub fn lsmod_text(modules: &[String]) -> String {
    let mut text = String::from("Module                  Size  Used by\n");
    for m in modules {
        text.push_str(&format!("{m} 16384 0\n"));
    }
    text
}

/// Every module the lab loads in L1 or L2, by name.
fn lab_modules() -> Vec<String> {
    let mut names: Vec<String> = [
        super::L1_MODULES,
        super::L1_LATE_MODULES,
        super::L2_MODULES,
        super::L2_LATE_MODULES,
    ]
    .iter()
    .flat_map(|list| list.lines())
    .map(|l| l.trim().trim_end_matches('?'))
    .filter(|l| !l.is_empty() && !l.starts_with('#'))
    .chain(RUNTIME_MODULES.iter().copied())
    .map(str::to_string)
    .collect();
    names.sort();
    names.dedup();
    names
}

/// The built kernel: cached, else built now (its `make` lines counted on
/// stderr), which takes tens of minutes on two cores.
pub fn built_kernel(spec: BuiltKernel) -> Result<KernelSource, ImageError> {
    let stock = super::debian_release::kernel(spec.release)?;
    let config_path = [
        stock.modules.join("config"),
        stock
            .vmlinuz
            .parent()
            .unwrap_or(Path::new("."))
            .join(format!("config-{}", stock.version)),
    ]
    .into_iter()
    .find(|p| p.is_file())
    .ok_or_else(|| {
        ImageError::Kernel(format!(
            "--kernel {}: {}'s kernel has no config beside it",
            spec.spec(),
            spec.release.name
        ))
    })?;
    let config = std::fs::read_to_string(&config_path).map_err(io_err(&config_path))?;
    let package = source_package(&stock.version).ok_or_else(|| {
        ImageError::Kernel(format!(
            "--kernel {}: no major.minor in {}",
            spec.spec(),
            stock.version
        ))
    })?;
    let modules = lab_modules();
    let mut hash = Sha256::new();
    // The release's kernel version names its source (Debian bumps the ABI
    // name or the package when the source changes); its config is hashed
    // too. apt is asked nothing until a build is needed.
    for part in [
        BUILD_LAYOUT,
        &package,
        &stock.version,
        &config,
        BUILD_FRAGMENT,
        spec.feature.fragment,
        &modules.join(","),
    ] {
        hash.update(part.as_bytes());
        hash.update([0]);
    }
    let built = cache_dir().join("kernels/built");
    let target = built.join(format!("{}-{:.16x}", spec.spec(), hash.finalize()));
    let origin = |seconds: &str| {
        format!(
            "{package} of {} with images/kernel-{}.config (--kernel {}; built in {seconds} s)",
            stock.version,
            spec.feature.name,
            spec.spec()
        )
    };
    if target.is_dir() {
        let seconds = std::fs::read_to_string(target.join(BUILD_SECONDS)).unwrap_or_default();
        return Ok(KernelSource {
            origin: origin(seconds.trim()),
            ..kernel_in_tree(&target)?
        });
    }
    let apt_dir = cache_dir()
        .join("kernels")
        .join(spec.release.name)
        .join("apt");
    let apt = OwnApt::for_suite(&apt_dir, spec.release.suite)?;
    if apt.candidate(&package).is_none() {
        return Err(ImageError::Kernel(format!(
            "--kernel {}: {} has no {package}",
            spec.spec(),
            spec.release.suite
        )));
    }
    eprintln!(
        "mflab: --kernel {}: building {package} into {} (tens of minutes on two cores)",
        spec.spec(),
        target.display()
    );
    remove_abandoned_builds(&built);
    let work = built.join(format!("build.{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).map_err(io_err(&work))?;
    let start = Instant::now();
    let result = build(&apt, &package, &config, &modules, spec, &work);
    let out = work.join("out");
    let finished = result.and_then(|()| {
        let seconds = format!("{:.0}", start.elapsed().as_secs_f64());
        let file = out.join(BUILD_SECONDS);
        std::fs::write(&file, &seconds).map_err(io_err(&file))?;
        if std::fs::rename(&out, &target).is_err() && !target.is_dir() {
            return Err(ImageError::Kernel(format!(
                "could not move {} to {}",
                out.display(),
                target.display()
            )));
        }
        Ok(seconds)
    });
    // The source tree and its objects (a few GB) are not kept.
    let _ = std::fs::remove_dir_all(&work);
    let seconds = finished?;
    eprintln!("mflab: --kernel {}: built in {seconds} s", spec.spec());
    Ok(KernelSource {
        origin: origin(&seconds),
        ..kernel_in_tree(&target)?
    })
}

/// Removes the `build.<pid>` trees of builds whose process is gone
/// (killed, or the machine went down): a few GB each.
fn remove_abandoned_builds(built: &Path) {
    for entry in std::fs::read_dir(built).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix("build.") else {
            continue;
        };
        if !Path::new("/proc").join(pid).exists() {
            eprintln!(
                "mflab: removing an abandoned kernel build, {}",
                entry.path().display()
            );
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Where a built kernel records how long its build took.
const BUILD_SECONDS: &str = "build-seconds";

/// The build in `work`: the source unpacked, configured, built and its
/// modules installed under `work/out/usr/lib/modules/<version>`.
fn build(
    apt: &OwnApt,
    package: &str,
    config: &str,
    modules: &[String],
    spec: BuiltKernel,
    work: &Path,
) -> Result<(), ImageError> {
    for tool in ["make", "gcc", "flex", "bison", "bc"] {
        if Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .map_or(true, |s| !s.success())
        {
            return Err(ImageError::Kernel(format!(
                "--kernel {}: building a kernel needs {tool}: apt-get install build-essential flex bison bc libelf-dev libssl-dev",
                spec.spec()
            )));
        }
    }
    let deb = work.join("deb");
    apt.download_unpacked(&[package], Fetch::Only, &deb)?;
    let tarball = deb.join("usr/src").join(format!("{package}.tar.xz"));
    step(
        "tar",
        Command::new("tar")
            .arg("-xf")
            .arg(&tarball)
            .arg("-C")
            .arg(work),
    )?;
    let src = work.join(package);
    let dot_config = src.join(".config");
    std::fs::write(&dot_config, config).map_err(io_err(&dot_config))?;
    let lsmod = work.join("lsmod.txt");
    std::fs::write(&lsmod, lsmod_text(modules)).map_err(io_err(&lsmod))?;
    let fragments = [
        ("kernel-build.config", BUILD_FRAGMENT),
        (
            &*format!("kernel-{}.config", spec.feature.name),
            spec.feature.fragment,
        ),
    ];
    let mut fragment_paths = Vec::new();
    for (name, text) in fragments {
        let path = work.join(name);
        std::fs::write(&path, text).map_err(io_err(&path))?;
        fragment_paths.push(path);
    }
    let make = |args: &[&str]| {
        let mut c = Command::new("make");
        c.current_dir(&src).args(["-s"]).args(args);
        c
    };
    step("make olddefconfig", &mut make(&["olddefconfig"]))?;
    step(
        "make localmodconfig",
        make(&["localmodconfig"]).env("LSMOD", &lsmod),
    )?;
    step(
        "merge_config.sh",
        Command::new("scripts/kconfig/merge_config.sh")
            .current_dir(&src)
            .arg("-m")
            .arg(".config")
            .args(&fragment_paths),
    )?;
    step("make olddefconfig", &mut make(&["olddefconfig"]))?;
    let final_config = std::fs::read_to_string(&dot_config).map_err(io_err(&dot_config))?;
    let wanted: Vec<&str> = fragment_lines(BUILD_FRAGMENT)
        .into_iter()
        .chain(fragment_lines(spec.feature.fragment))
        .collect();
    let refused = unmet(&wanted, &final_config);
    if !refused.is_empty() {
        return Err(ImageError::Kernel(format!(
            "--kernel {}: Kconfig did not keep {} (a dependency is off in {}'s config)",
            spec.spec(),
            refused.join(", "),
            spec.release.name
        )));
    }
    let jobs = std::thread::available_parallelism().map_or(2, |n| n.get());
    counted(
        "make bzImage modules",
        &mut make(&[&format!("-j{jobs}"), "bzImage", "modules"]),
    )?;
    let release = Command::new("make")
        .current_dir(&src)
        .args(["-s", "kernelrelease"])
        .output()
        .map_err(io_err(&src))?;
    let version = String::from_utf8_lossy(&release.stdout).trim().to_string();
    let out = work.join("out");
    let install_path = out.join("usr");
    step(
        "make modules_install",
        &mut make(&[
            "modules_install",
            &format!("INSTALL_MOD_PATH={}", install_path.display()),
            "INSTALL_MOD_STRIP=1",
            // mflab reads each module's .modinfo, not modules.dep: no kmod needed.
            "DEPMOD=true",
        ]),
    )?;
    let modules_dir: PathBuf = install_path.join("lib/modules").join(&version);
    for link in ["build", "source"] {
        let _ = std::fs::remove_file(modules_dir.join(link));
    }
    let copy = |from: PathBuf, to: PathBuf| std::fs::copy(&from, &to).map_err(io_err(&from));
    copy(
        src.join("arch/x86/boot/bzImage"),
        modules_dir.join("vmlinuz"),
    )?;
    copy(dot_config, modules_dir.join("config"))?;
    Ok(())
}

/// Runs a build step, its output on stderr only when it fails.
fn step(what: &str, command: &mut Command) -> Result<(), ImageError> {
    let out = command
        .stdin(Stdio::null())
        .output()
        .map_err(|e| ImageError::Kernel(format!("{what}: {e}")))?;
    if out.status.success() {
        return Ok(());
    }
    Err(ImageError::Kernel(format!(
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )))
}

/// Runs the compile, a line on stderr every 500 objects, the last lines
/// of its errors when it fails. make runs in a process group of its own,
/// ended whole when mflab is interrupted (SIGINT or SIGTERM to mflab
/// alone would leave it compiling for half an hour).
fn counted(what: &str, command: &mut Command) -> Result<(), ImageError> {
    use std::os::unix::process::CommandExt;
    let start = Instant::now();
    let mut child = command
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| ImageError::Kernel(format!("{what}: {e}")))?;
    let stderr = child.stderr.take().map(|err| {
        std::thread::spawn(move || {
            BufReader::new(err)
                .lines()
                .map_while(Result::ok)
                .collect::<Vec<_>>()
        })
    });
    let mut lines = 0usize;
    if let Some(out) = child.stdout.take() {
        for _ in BufReader::new(out).lines().map_while(Result::ok) {
            if crate::interrupt::interrupted() {
                // SAFETY: kill has no memory preconditions; the group is make's.
                unsafe { libc::kill(-(child.id() as i32), libc::SIGTERM) };
                let _ = child.wait();
                return Err(ImageError::Kernel(format!(
                    "{what}: interrupted; the build tree is removed"
                )));
            }
            lines += 1;
            if lines.is_multiple_of(500) {
                eprintln!(
                    "mflab: kernel build: {lines} steps, {:.0} s",
                    start.elapsed().as_secs_f64()
                );
            }
        }
    }
    let status = child
        .wait()
        .map_err(|e| ImageError::Kernel(format!("{what}: {e}")))?;
    let errors = stderr.and_then(|t| t.join().ok()).unwrap_or_default();
    if status.success() {
        return Ok(());
    }
    let tail = errors[errors.len().saturating_sub(30)..].join("\n");
    Err(ImageError::Kernel(format!(
        "{what} failed ({status}):\n{tail}"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_built_kernel_is_a_release_and_a_feature() {
        let k = BuiltKernel::parse("debian-testing+iommufd")
            .unwrap()
            .unwrap();
        assert_eq!((k.release.suite, k.feature.name), ("forky", "iommufd"));
        assert_eq!(k.spec(), "debian-testing+iommufd");
        assert!(BuiltKernel::parse("debian-13").is_none());
        let e = BuiltKernel::parse("debian-13+sev")
            .unwrap()
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("unknown feature 'sev'") && e.contains("iommufd"),
            "{e}"
        );
        let e = BuiltKernel::parse("ubuntu+iommufd")
            .unwrap()
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown release 'ubuntu'"), "{e}");
    }

    #[test]
    fn the_iommufd_fragment_turns_on_iommufd_and_the_vfio_cdev() {
        let lines = fragment_lines(FEATURES[0].fragment);
        assert!(lines.contains(&"CONFIG_IOMMUFD=m"), "{lines:?}");
        assert!(lines.contains(&"CONFIG_VFIO_DEVICE_CDEV=y"), "{lines:?}");
        assert!(fragment_lines("# CONFIG_X=y\n\nCONFIG_Y=n\n") == ["CONFIG_Y=n"]);
    }

    #[test]
    fn a_fragment_line_kconfig_refused_is_named() {
        let config = "CONFIG_IOMMUFD=m\n# CONFIG_VFIO_DEVICE_CDEV is not set\n# CONFIG_DEBUG_INFO_BTF is not set\nCONFIG_MODULE_SIG=y\n";
        let wanted = [
            "CONFIG_IOMMUFD=m",
            "CONFIG_VFIO_DEVICE_CDEV=y",
            "CONFIG_DEBUG_INFO_BTF=n",
            "CONFIG_DEBUG_INFO_DWARF5=n",
            "CONFIG_MODULE_SIG=n",
        ];
        assert_eq!(
            unmet(&wanted, config),
            ["CONFIG_VFIO_DEVICE_CDEV=y", "CONFIG_MODULE_SIG=n"]
        );
    }

    #[test]
    fn the_source_package_is_named_by_major_and_minor() {
        assert_eq!(
            source_package("7.2.12+deb14-amd64").as_deref(),
            Some("linux-source-7.2")
        );
        assert_eq!(
            source_package("6.12.117+deb13-amd64").as_deref(),
            Some("linux-source-6.12")
        );
        assert_eq!(source_package("amd64"), None);
    }

    #[test]
    fn localmodconfig_reads_the_lab_s_modules_as_lsmod_prints_them() {
        let text = lsmod_text(&["vfio_pci".into(), "iommufd".into()]);
        let mut lines = text.lines();
        assert!(lines.next().unwrap().starts_with("Module"));
        assert_eq!(lines.next(), Some("vfio_pci 16384 0"));
        let all = lab_modules();
        for m in ["vfio_pci", "vfio_iommu_type1", "iommufd", "kvm_amd", "9p"] {
            assert!(all.iter().any(|n| n == m), "{m} in {all:?}");
        }
        assert!(all.iter().all(|n| !n.ends_with('?') && !n.starts_with('#')));
    }
}
