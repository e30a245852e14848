//! Kernel modules and their load order, from each module's own `.modinfo`
//! (`depends=a,b`): the distribution ships no modules.dep we could use
//! without kmod.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use super::module_file::{module_name, read_module};
use super::{io_err, ImageError};

/// Module names use `_` and `-` interchangeably; the kernel says `_`.
pub fn normalize(name: &str) -> String {
    name.replace('-', "_")
}

/// Every module file (`.ko`, `.ko.xz`, `.ko.zst`, `.ko.gz`) under a
/// modules tree, by normalized name.
pub fn index_modules(dir: &Path) -> Result<BTreeMap<String, PathBuf>, ImageError> {
    let mut index = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).map_err(io_err(&d))?.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Some((stem, _)) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(module_name)
            {
                index.insert(normalize(stem), path);
            }
        }
    }
    Ok(index)
}

/// The `depends=` list of a module file's `.modinfo` strings.
pub fn module_depends(ko: &[u8]) -> Vec<String> {
    const KEY: &[u8] = b"\0depends=";
    let Some(at) = ko.windows(KEY.len()).position(|w| w == KEY) else {
        return Vec::new();
    };
    let rest = &ko[at + KEY.len()..];
    let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
    String::from_utf8_lossy(&rest[..end])
        .split(',')
        .filter(|s| !s.is_empty())
        .map(normalize)
        .collect()
}

/// A module's name and file.
pub type Module = (String, PathBuf);

/// The `alias=` strings of a module file's `.modinfo`.
pub fn module_aliases(ko: &[u8]) -> Vec<String> {
    const KEY: &[u8] = b"\0alias=";
    let mut aliases = Vec::new();
    let mut from = 0;
    while let Some(at) = ko[from..].windows(KEY.len()).position(|w| w == KEY) {
        let rest = &ko[from + at + KEY.len()..];
        let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
        aliases.push(String::from_utf8_lossy(&rest[..end]).into_owned());
        from += at + KEY.len() + end;
    }
    aliases
}

/// A `modules.alias` (depmod's format) with the PCI aliases of the
/// kernel's VFIO variant drivers (the modules under drivers/vfio/pci):
/// libvirt 10+ reads `/lib/modules/$(uname -r)/modules.alias` before a
/// managed detach to pick a variant driver, and fails the start when the
/// file is missing. Those `vfio_pci:` lines are all it reads; the modules
/// of the rest of the kernel are not opened.
pub fn vfio_variant_aliases(index: &BTreeMap<String, PathBuf>) -> std::io::Result<String> {
    let mut text = String::from("# Aliases extracted from modules themselves.\n");
    for (name, path) in index {
        if !path.to_string_lossy().contains("/drivers/vfio/pci/") {
            continue;
        }
        for alias in module_aliases(&super::module_file::read_module(path)?) {
            text.push_str(&format!("alias {alias} {name}\n"));
        }
    }
    Ok(text)
}

/// The wanted modules with their dependencies, each after what it needs,
/// in groups that share no module: L1's init loads the groups side by side
/// (one vCPU each), each group in order.
pub fn load_groups(
    wanted: &[String],
    index: &BTreeMap<String, PathBuf>,
    tree: &Path,
) -> Result<Vec<Vec<Module>>, ImageError> {
    let mut groups: Vec<Vec<Module>> = Vec::new();
    for name in wanted {
        let mut closure = Vec::new();
        visit(
            &normalize(name),
            index,
            tree,
            &mut HashSet::new(),
            &mut closure,
        )?;
        let shares = |g: &Vec<Module>| g.iter().any(|m| closure.contains(m));
        // Groups are disjoint and each in load order, so any concatenation
        // of them is too; what the closure adds comes after what it needs.
        let mut merged: Vec<Module> = Vec::new();
        for group in groups.extract_if(.., |g| shares(g)) {
            merged.extend(group);
        }
        for m in closure {
            if !merged.contains(&m) {
                merged.push(m);
            }
        }
        if !merged.is_empty() {
            groups.push(merged);
        }
    }
    Ok(groups)
}

/// `late` groups without the modules `now` loads already (a late module's
/// dependencies may be there: kvm needs irqbypass, which vfio loads).
pub fn without_loaded(late: Vec<Vec<Module>>, now: &[Vec<Module>]) -> Vec<Vec<Module>> {
    late.into_iter()
        .map(|group| {
            group
                .into_iter()
                .filter(|m| !now.iter().flatten().any(|n| n == m))
                .collect::<Vec<_>>()
        })
        .filter(|group| !group.is_empty())
        .collect()
}

/// The trailer of a signed module (`scripts/sign-file`).
const SIGNATURE_MARKER: &[u8] = b"~Module signature appended~\n";

/// The module without its appended signature. Checking a signature costs
/// a SHA-256 of the whole module and an RSA verify, emulated instruction
/// by instruction under TCG; a kernel that does not enforce signatures
/// loads the module either way (and notes the taint once).
pub fn without_signature(ko: &[u8]) -> &[u8] {
    let Some(body) = ko.strip_suffix(SIGNATURE_MARKER) else {
        return ko;
    };
    // struct module_signature: algo, hash, id_type, signer_len, key_id_len,
    // 3 pad bytes, then sig_len big-endian; the signature precedes it.
    let Some(info) = body.len().checked_sub(12).map(|at| &body[at..]) else {
        return ko;
    };
    let signer_and_key = info[3] as usize + info[4] as usize;
    let sig_len = u32::from_be_bytes([info[8], info[9], info[10], info[11]]) as usize;
    match (body.len() - 12).checked_sub(sig_len + signer_and_key) {
        Some(end) => &ko[..end],
        None => ko,
    }
}

/// The modules built into the kernel, by name, from `modules.builtin`
/// (one `kernel/…/name.ko` path a line).
pub fn builtin(tree: &Path) -> HashSet<String> {
    std::fs::read_to_string(tree.join("modules.builtin"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.rsplit('/').next()?.strip_suffix(".ko"))
        .map(normalize)
        .collect()
}

fn visit(
    name: &str,
    index: &BTreeMap<String, PathBuf>,
    tree: &Path,
    seen: &mut HashSet<String>,
    order: &mut Vec<(String, PathBuf)>,
) -> Result<(), ImageError> {
    if !seen.insert(name.to_string()) {
        return Ok(());
    }
    let Some(path) = index.get(name) else {
        // Built into the kernel (Debian 13 builds virtio_pci in): nothing to load.
        if builtin(tree).contains(name) {
            return Ok(());
        }
        return Err(ImageError::ModuleMissing(name.into(), tree.to_path_buf()));
    };
    let bytes = read_module(path).map_err(io_err(path))?;
    for dep in module_depends(&bytes) {
        visit(&dep, index, tree, seen, order)?;
    }
    order.push((name.to_string(), path.clone()));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_alias_of_a_module_is_read() {
        let ko = b"\x7fELF\0license=GPL\0alias=vfio_pci:v000015B3d0000101Esv*sd*bc*sc*i*\0alias=vfio_pci:v000015B3d00001024sv*sd*bc*sc*i*\0depends=vfio\0";
        assert_eq!(
            module_aliases(ko),
            [
                "vfio_pci:v000015B3d0000101Esv*sd*bc*sc*i*",
                "vfio_pci:v000015B3d00001024sv*sd*bc*sc*i*"
            ]
        );
        assert!(module_aliases(b"\0depends=\0").is_empty());
    }

    #[test]
    fn modules_alias_holds_the_vfio_variant_drivers_aliases_only() {
        let dir = tempfile::tempdir().unwrap();
        let put = |rel: &str, modinfo: &[u8]| {
            let path = dir.path().join(rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, modinfo).unwrap();
        };
        put(
            "kernel/drivers/vfio/pci/mlx5/mlx5-vfio-pci.ko",
            b"\0alias=vfio_pci:v000015B3d0000101Esv*sd*bc*sc*i*\0",
        );
        put(
            "kernel/drivers/net/e1000e/e1000e.ko",
            b"\0alias=pci:v00008086d000010D3sv*sd*bc*sc*i*\0",
        );
        let text = vfio_variant_aliases(&index_modules(dir.path()).unwrap()).unwrap();
        assert_eq!(
            text,
            "# Aliases extracted from modules themselves.\nalias vfio_pci:v000015B3d0000101Esv*sd*bc*sc*i* mlx5_vfio_pci\n"
        );
    }

    #[test]
    fn depends_are_read_from_modinfo_strings() {
        let ko = b"\x7fELF....\0license=GPL\0depends=snd-hda-core,snd\0name=snd_hda_intel\0";
        assert_eq!(module_depends(ko), ["snd_hda_core", "snd"]);
        assert!(module_depends(b"\0depends=\0name=x\0").is_empty());
    }

    #[test]
    fn dependencies_come_first_in_groups_that_share_nothing() {
        let dir = tempfile::tempdir().unwrap();
        for (name, deps) in [
            ("a", "b-mod,c"),
            ("b-mod", "c"),
            ("c", ""),
            ("d", ""),
            ("e", "c"),
        ] {
            std::fs::write(
                dir.path().join(format!("{name}.ko")),
                format!("\0depends={deps}\0"),
            )
            .unwrap();
        }
        let index = index_modules(dir.path()).unwrap();
        let names = |wanted: &[&str]| -> Vec<Vec<String>> {
            let wanted: Vec<String> = wanted.iter().map(|s| s.to_string()).collect();
            load_groups(&wanted, &index, dir.path())
                .unwrap()
                .into_iter()
                .map(|g| g.into_iter().map(|(n, _)| n).collect())
                .collect()
        };
        assert_eq!(names(&["a"]), [["c", "b_mod", "a"]]);
        assert_eq!(names(&["d", "a"]), [vec!["d"], vec!["c", "b_mod", "a"]]);
        // e shares c with a: one group, c loaded once, before both.
        assert_eq!(
            names(&["a", "d", "e"]),
            [vec!["d"], vec!["c", "b_mod", "a", "e"]]
        );
        let wanted = ["nope".to_string()];
        assert!(load_groups(&wanted, &index, dir.path()).is_err());
        // Built in (modules.builtin names it): nothing to load, no error.
        std::fs::write(
            dir.path().join("modules.builtin"),
            "kernel/drivers/virtio/virtio_pci.ko\n",
        )
        .unwrap();
        assert_eq!(names(&["virtio-pci", "d"]), [["d"]]);
        assert!(load_groups(&wanted, &index, dir.path()).is_err());
    }

    #[test]
    fn late_groups_leave_out_what_loads_before_them() {
        let m = |n: &str| (n.to_string(), PathBuf::from(format!("{n}.ko")));
        let now = vec![vec![m("irqbypass"), m("vfio")], vec![m("virtio")]];
        let late = vec![
            vec![m("irqbypass"), m("kvm"), m("kvm_amd")],
            vec![m("virtio")],
        ];
        assert_eq!(without_loaded(late, &now), [vec![m("kvm"), m("kvm_amd")]]);
    }

    #[test]
    fn an_appended_signature_is_cut_off() {
        let mut signed = b"\x7fELF module body".to_vec();
        let signature = [0xab; 7];
        signed.extend(signature);
        signed.extend([0, 0, 2, 0, 0, 0, 0, 0]); // PKCS#7: no signer, no key id
        signed.extend((signature.len() as u32).to_be_bytes());
        signed.extend(SIGNATURE_MARKER);
        assert_eq!(without_signature(&signed), b"\x7fELF module body");
        assert_eq!(without_signature(b"unsigned"), b"unsigned");
        // A marker with a length that does not fit is left alone.
        let mut bogus = vec![0u8; 8];
        bogus.extend(1000u32.to_be_bytes());
        bogus.extend(SIGNATURE_MARKER);
        assert_eq!(without_signature(&bogus), &bogus[..]);
    }
}
