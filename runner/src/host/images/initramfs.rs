//! The L1 initramfs, written as a cpio (newc) archive: a static busybox,
//! the modules in load order, and the init script. Named by a hash of
//! everything that goes in, so a second run builds nothing.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::module_file::read_module;
use super::modules::{
    index_modules, load_groups, normalize, without_loaded, without_signature, Module,
};
use super::{
    cache_dir, io_err, ImageError, KernelSource, L1_INIT, L1_LATE_MODULES, L1_MODULES, L2_INIT,
    L2_LATE_MODULES, L2_MODULES,
};

const BUSYBOX: &str = "/bin/busybox";
/// Applets the init script uses, linked to busybox.
const APPLETS: &[&str] = &[
    "sh", "mount", "insmod", "cat", "cut", "mkdir", "ln", "readlink", "chroot", "poweroff", "sync",
    "echo", "sleep", "mv", "cp", "rm", "ip", "ping", "chmod", "acpid",
];

/// Changes whenever what goes into an archive changes in a way the
/// inputs below do not show (so an old cache entry is not reused).
const ARCHIVE_LAYOUT: &str =
    "4: module groups, signatures cut off, late modules, no /l2, VFIO variant modules.alias";

/// The module names of a list, as written (`name?` for optional ones).
pub fn wanted_modules(list: &str) -> Vec<String> {
    list.lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// The names to carry: `name?` only where the kernel has the module (a
/// file or built in), so one list serves kernels with and without it;
/// the kernel check refuses a topology whose IOMMU driver is missing
/// before any boot.
fn present(
    wanted: Vec<String>,
    index: &std::collections::BTreeMap<String, PathBuf>,
    tree: &Path,
) -> Vec<String> {
    let builtin = super::modules::builtin(tree);
    wanted
        .into_iter()
        .filter_map(|name| match name.strip_suffix('?') {
            None => Some(name),
            Some(optional) => {
                let n = normalize(optional);
                (index.contains_key(&n) || builtin.contains(&n)).then_some(n)
            }
        })
        .collect()
}

/// L1's initramfs: busybox, init, and the modules, in two lists: those
/// init loads before the agent starts, and those only an L2 needs, which
/// load behind the agent (`images/l1-late-modules.txt` says why). L2's
/// kernel and initramfs are not in it: 36 MB more to unpack cost every
/// boot about 0.3 s; init binds them from the host's root instead, and
/// the first L2 of an L1 reads them over 9p into L1's page cache.
pub fn l1_initramfs(kernel: &KernelSource) -> Result<(PathBuf, bool), ImageError> {
    // Resolving module dependencies reads every wanted .ko: only when building.
    let modules = || {
        let index = index_modules(&kernel.modules)?;
        let mut files = now_and_late(kernel, &index, L1_MODULES, L1_LATE_MODULES)?;
        files.alias =
            super::modules::vfio_variant_aliases(&index).map_err(io_err(&kernel.modules))?;
        Ok(files)
    };
    let wanted = format!("{L1_MODULES}\n[late]\n{L1_LATE_MODULES}");
    cached_initramfs("l1", kernel, L1_INIT, (&wanted, &modules))
}

/// The floor: a bare kernel boot whose init powers off at once.
pub fn floor_initramfs(kernel: &KernelSource) -> Result<(PathBuf, bool), ImageError> {
    cached_initramfs("floor", kernel, "#!/bin/sh\n/bin/poweroff -f\n", NO_MODULES)
}

/// L2's: its init reads sysfs and reports on its virtio-serial port, whose
/// modules (`images/l2-modules.txt`) it loads first; the link proof's NIC
/// drivers (`images/l2-late-modules.txt`) it loads only when asked.
pub fn l2_initramfs(kernel: &KernelSource) -> Result<(PathBuf, bool), ImageError> {
    let modules = || {
        let index = index_modules(&kernel.modules)?;
        now_and_late(kernel, &index, L2_MODULES, L2_LATE_MODULES)
    };
    let wanted = format!("{L2_MODULES}\n[late]\n{L2_LATE_MODULES}");
    cached_initramfs("l2", kernel, L2_INIT, (&wanted, &modules))
}

/// The modules of two lists in load order: those loaded at once, and
/// those loaded later (without any the first list already loads).
fn now_and_late(
    kernel: &KernelSource,
    index: &BTreeMap<String, PathBuf>,
    now: &str,
    late: &str,
) -> Result<ModuleFiles, ImageError> {
    let tree = &kernel.modules;
    let resolve =
        |list: &str| load_groups(&present(wanted_modules(list), index, tree), index, tree);
    let now = resolve(now)?;
    Ok(ModuleFiles {
        late: without_loaded(resolve(late)?, &now),
        now,
        alias: String::new(),
    })
}

/// Groups of modules that share nothing, each in load order.
type ModuleList = Vec<Vec<Module>>;

/// What of the kernel's modules goes into an archive.
#[derive(Default)]
struct ModuleFiles {
    /// Loaded before the agent starts.
    now: ModuleList,
    /// Loaded behind it.
    late: ModuleList,
    /// `lib/modules/modules.alias` (see [`super::modules::vfio_variant_aliases`]); empty: none.
    alias: String,
}
/// The wanted-modules text (part of the cache key) and how to resolve it
/// into files in load order (only when building).
type Modules<'a> = (&'a str, &'a dyn Fn() -> Result<ModuleFiles, ImageError>);
const NO_MODULES: Modules = ("", &|| Ok(ModuleFiles::default()));

fn cached_initramfs(
    kind: &str,
    kernel: &KernelSource,
    init: &str,
    modules: Modules,
) -> Result<(PathBuf, bool), ImageError> {
    let busybox = std::fs::read(BUSYBOX)
        .map_err(|e| ImageError::Busybox(format!("{BUSYBOX}: {e}; install busybox-static")))?;
    let mut hash = Sha256::new();
    hash.update(ARCHIVE_LAYOUT.as_bytes());
    hash.update(kernel.version.as_bytes());
    hash.update(init.as_bytes());
    hash.update(APPLETS.join(",").as_bytes());
    hash.update(&busybox);
    hash.update(kernel.modules.to_string_lossy().as_bytes());
    hash.update(modules.0.as_bytes());
    let digest = format!("{:x}", hash.finalize());
    let dir = cache_dir().join("initramfs");
    let out = dir.join(format!("{kind}-{}-{}.cpio", kernel.version, &digest[..16]));
    if out.exists() {
        return Ok((out, false));
    }
    std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    let tmp = dir.join(format!(
        ".{kind}-{}.tmp.{}",
        &digest[..16],
        std::process::id()
    ));
    let files = (modules.1)()?;
    write_archive(&tmp, &busybox, init, &files)?;
    std::fs::rename(&tmp, &out).map_err(io_err(&out))?;
    Ok((out, true))
}

/// A cpio (newc) archive being written, one entry at a time.
struct Archive {
    out: std::io::BufWriter<std::fs::File>,
    ino: u32,
}

impl Archive {
    fn entry(&mut self, name: &str, mode: u32, data: &[u8]) -> std::io::Result<()> {
        self.ino += 1;
        let mut writer = cpio::newc::Builder::new(name)
            .ino(self.ino)
            .mode(mode)
            .nlink(1)
            .write(&mut self.out, data.len() as u32);
        writer.write_all(data)?;
        writer.finish()?;
        Ok(())
    }

    fn dir(&mut self, name: &str) -> std::io::Result<()> {
        self.entry(name, 0o040755, &[])
    }

    fn file(&mut self, name: &str, executable: bool, data: &[u8]) -> std::io::Result<()> {
        self.entry(name, if executable { 0o100755 } else { 0o100644 }, data)
    }

    fn symlink(&mut self, name: &str, target: &str) -> std::io::Result<()> {
        self.entry(name, 0o120777, target.as_bytes())
    }

    fn finish(self) -> std::io::Result<()> {
        let out = cpio::newc::trailer(self.out)?;
        out.into_inner().map_err(|e| e.into_error())?.sync_all()
    }
}

fn write_archive(
    path: &Path,
    busybox: &[u8],
    init: &str,
    modules: &ModuleFiles,
) -> Result<(), ImageError> {
    let write = || -> std::io::Result<()> {
        let mut a = Archive {
            out: std::io::BufWriter::new(std::fs::File::create(path)?),
            ino: 1,
        };
        for dir in [
            "bin",
            "dev",
            "proc",
            "sys",
            "etc",
            "etc/mflab",
            "lib",
            "lib/modules",
            "host",
            "newroot",
            "tmp",
        ] {
            a.dir(dir)?;
        }
        a.file("bin/busybox", true, busybox)?;
        for applet in APPLETS {
            a.symlink(&format!("bin/{applet}"), "busybox")?;
        }
        a.file("init", true, init.as_bytes())?;
        // One line per group: init loads the lines side by side.
        if !modules.alias.is_empty() {
            a.file("lib/modules/modules.alias", false, modules.alias.as_bytes())?;
        }
        for (list_name, groups) in [("modules", &modules.now), ("modules-late", &modules.late)] {
            let mut list = String::new();
            for group in groups {
                let mut names = Vec::new();
                for (name, module) in group {
                    let ko = read_module(module)?;
                    a.file(
                        &format!("lib/modules/{name}.ko"),
                        false,
                        without_signature(&ko),
                    )?;
                    names.push(name.as_str());
                }
                list.push_str(&names.join(" "));
                list.push('\n');
            }
            a.file(&format!("etc/mflab/{list_name}"), false, list.as_bytes())?;
        }
        a.finish()
    };
    write().map_err(io_err(path))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::io::Read;

    use super::super::module_file::tests::compress;
    use super::super::module_file::Compression;
    use super::*;

    /// Every file in a newc archive, by name.
    fn unpack(path: &Path) -> BTreeMap<String, Vec<u8>> {
        let mut files = BTreeMap::new();
        let mut input = std::fs::File::open(path).unwrap();
        loop {
            let mut entry = cpio::newc::Reader::new(input).unwrap();
            if entry.entry().is_trailer() {
                break;
            }
            let name = entry.entry().name().to_string();
            let mut data = Vec::new();
            entry.read_to_end(&mut data).unwrap();
            files.insert(name, data);
            input = entry.finish().unwrap();
        }
        files
    }

    /// A fake module: an ELF-looking body with a `.modinfo`-style string table.
    fn fake_module(name: &str, depends: &str) -> Vec<u8> {
        format!("\x7fELF {name} body\0license=GPL\0depends={depends}\0name={name}\0")
            .repeat(20)
            .into_bytes()
    }

    #[test]
    fn compressed_modules_go_in_uncompressed() {
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path().join("lib/modules/6.8.0-generic/kernel");
        std::fs::create_dir_all(&tree).unwrap();
        let modules = [
            ("kvm-amd", "kvm", ".ko.zst", Compression::Zstd),
            ("kvm", "irqbypass", ".ko.gz", Compression::Gzip),
            ("irqbypass", "", ".ko.xz", Compression::Xz),
            ("vfio", "", ".ko", Compression::None),
        ];
        for (name, depends, suffix, c) in modules {
            std::fs::write(
                tree.join(format!("{name}{suffix}")),
                compress(&fake_module(name, depends), c),
            )
            .unwrap();
        }
        let index = index_modules(dir.path()).unwrap();
        // Looked up with dashes or underscores, whatever the file says.
        let wanted = ["kvm_amd".to_string(), "vfio".to_string()];
        let groups = load_groups(&wanted, &index, dir.path()).unwrap();
        let names: Vec<Vec<&str>> = groups
            .iter()
            .map(|g| g.iter().map(|(n, _)| n.as_str()).collect())
            .collect();
        assert_eq!(names, [vec!["irqbypass", "kvm", "kvm_amd"], vec!["vfio"]]);

        let archive = dir.path().join("l1.cpio");
        let files = ModuleFiles {
            now: groups,
            late: Vec::new(),
            alias: "# Aliases extracted from modules themselves.\n".into(),
        };
        write_archive(&archive, b"busybox", "#!/bin/sh\n", &files).unwrap();
        let files = unpack(&archive);
        for (name, depends, _, _) in modules {
            let file = format!("lib/modules/{}.ko", normalize(name));
            assert_eq!(
                files.get(&file).map(Vec::as_slice),
                Some(&fake_module(name, depends)[..]),
                "{file}"
            );
        }
        assert_eq!(files["etc/mflab/modules"], b"irqbypass kvm kvm_amd\nvfio\n");
        assert!(files["lib/modules/modules.alias"].starts_with(b"# Aliases"));
    }
}

#[cfg(test)]
mod optional_module_tests {
    use super::*;

    #[test]
    fn an_optional_module_is_carried_only_where_the_kernel_has_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("virtio_iommu.ko"), b"x").unwrap();
        let index = index_modules(dir.path()).unwrap();
        let wanted = vec![
            "vfio".to_string(),
            "virtio_iommu?".to_string(),
            "virtio_mem?".to_string(),
        ];
        assert_eq!(
            present(wanted, &index, dir.path()),
            ["vfio", "virtio_iommu"]
        );
        assert!(wanted_modules(L1_MODULES).contains(&"virtio_iommu?".to_string()));
    }
}

#[cfg(test)]
mod kvm_vendor_tests {
    use super::*;

    /// L1 carries both vendor modules and its init picks one by CPU flag.
    #[test]
    fn both_kvm_vendor_modules_ship_and_init_chooses() {
        let late = wanted_modules(L1_LATE_MODULES);
        assert!(late.contains(&"kvm_amd".to_string()), "{late:?}");
        assert!(late.contains(&"kvm_intel".to_string()), "{late:?}");
        assert!(L1_INIT.contains(r#"*" vmx "*) kvm_vendor=kvm_intel"#));
        assert!(L1_INIT.contains(r#"*" svm "*) kvm_vendor=kvm_amd"#));
    }
}
