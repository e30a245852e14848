//! The L1 initramfs, written as a cpio (newc) archive: a static busybox,
//! the modules in load order, and the init script. Named by a hash of
//! everything that goes in, so a second run builds nothing.

use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::modules::{index_modules, load_order};
use super::{cache_dir, io_err, ImageError, KernelSource, L1_INIT, L1_MODULES};

const BUSYBOX: &str = "/bin/busybox";
/// Applets the init script uses, linked to busybox.
const APPLETS: &[&str] = &[
    "sh", "mount", "insmod", "cat", "cut", "mkdir", "ln", "readlink", "chroot", "poweroff", "sync",
    "echo", "sleep",
];

pub fn wanted_modules(list: &str) -> Vec<String> {
    list.lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

pub fn l1_initramfs(kernel: &KernelSource) -> Result<(PathBuf, bool), ImageError> {
    let busybox = std::fs::read(BUSYBOX)
        .map_err(|e| ImageError::Busybox(format!("{BUSYBOX}: {e}; install busybox-static")))?;
    let index = index_modules(&kernel.modules)?;
    let modules = load_order(&wanted_modules(L1_MODULES), &index, &kernel.modules)?;

    let mut hash = Sha256::new();
    hash.update(kernel.version.as_bytes());
    hash.update(L1_INIT.as_bytes());
    hash.update(&busybox);
    for (name, path) in &modules {
        hash.update(name.as_bytes());
        hash.update(path.to_string_lossy().as_bytes());
    }
    let digest = format!("{:x}", hash.finalize());
    let dir = cache_dir().join("initramfs");
    let out = dir.join(format!("l1-{}-{}.cpio", kernel.version, &digest[..16]));
    if out.exists() {
        return Ok((out, false));
    }
    std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    let tmp = dir.join(format!(".{}.tmp.{}", &digest[..16], std::process::id()));
    write_archive(&tmp, &busybox, &modules)?;
    std::fs::rename(&tmp, &out).map_err(io_err(&out))?;
    Ok((out, true))
}

fn write_archive(
    path: &Path,
    busybox: &[u8],
    modules: &[(String, PathBuf)],
) -> Result<(), ImageError> {
    let file = std::fs::File::create(path).map_err(io_err(path))?;
    let mut w = std::io::BufWriter::new(file);
    let mut ino = 1;
    let mut entry = |w: &mut std::io::BufWriter<std::fs::File>,
                     name: &str,
                     mode: u32,
                     data: &[u8]|
     -> std::io::Result<()> {
        ino += 1;
        let mut writer = cpio::newc::Builder::new(name)
            .ino(ino)
            .mode(mode)
            .nlink(1)
            .write(w, data.len() as u32);
        writer.write_all(data)?;
        writer.finish()?;
        Ok(())
    };
    let write = |w: &mut std::io::BufWriter<std::fs::File>,
                 entry: &mut dyn FnMut(
        &mut std::io::BufWriter<std::fs::File>,
        &str,
        u32,
        &[u8],
    ) -> std::io::Result<()>|
     -> std::io::Result<()> {
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
            entry(w, dir, 0o040755, &[])?;
        }
        entry(w, "bin/busybox", 0o100755, busybox)?;
        for applet in APPLETS {
            entry(w, &format!("bin/{applet}"), 0o120777, b"busybox")?;
        }
        entry(w, "init", 0o100755, L1_INIT.as_bytes())?;
        let mut list = String::new();
        for (name, path) in modules {
            let bytes = std::fs::read(path)?;
            entry(w, &format!("lib/modules/{name}.ko"), 0o100644, &bytes)?;
            list.push_str(name);
            list.push('\n');
        }
        entry(w, "etc/mflab/modules", 0o100644, list.as_bytes())?;
        Ok(())
    };
    write(&mut w, &mut entry).map_err(io_err(path))?;
    let w = cpio::newc::trailer(w).map_err(io_err(path))?;
    w.into_inner()
        .map_err(|e| io_err(path)(e.into_error()))?
        .sync_all()
        .map_err(io_err(path))
}
