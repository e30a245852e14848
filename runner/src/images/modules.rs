//! Kernel modules and their load order, from each module's own `.modinfo`
//! (`depends=a,b`): the distribution ships no modules.dep we could use
//! without kmod.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use super::{io_err, ImageError};

/// Module names use `_` and `-` interchangeably; the kernel says `_`.
pub fn normalize(name: &str) -> String {
    name.replace('-', "_")
}

/// Every `.ko` under a modules tree, by normalized name.
pub fn index_modules(dir: &Path) -> Result<BTreeMap<String, PathBuf>, ImageError> {
    let mut index = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).map_err(io_err(&d))?.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Some(stem) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".ko"))
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

/// The wanted modules with their dependencies, each after what it needs.
pub fn load_order(
    wanted: &[String],
    index: &BTreeMap<String, PathBuf>,
    tree: &Path,
) -> Result<Vec<(String, PathBuf)>, ImageError> {
    let mut order = Vec::new();
    let mut seen = HashSet::new();
    for name in wanted {
        visit(&normalize(name), index, tree, &mut seen, &mut order)?;
    }
    Ok(order)
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
    let path = index
        .get(name)
        .ok_or_else(|| ImageError::ModuleMissing(name.into(), tree.to_path_buf()))?;
    let bytes = std::fs::read(path).map_err(io_err(path))?;
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
    fn depends_are_read_from_modinfo_strings() {
        let ko = b"\x7fELF....\0license=GPL\0depends=snd-hda-core,snd\0name=snd_hda_intel\0";
        assert_eq!(module_depends(ko), ["snd_hda_core", "snd"]);
        assert!(module_depends(b"\0depends=\0name=x\0").is_empty());
    }

    #[test]
    fn dependencies_come_first() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.ko"), b"\0depends=b-mod,c\0").unwrap();
        std::fs::write(dir.path().join("b-mod.ko"), b"\0depends=c\0").unwrap();
        std::fs::write(dir.path().join("c.ko"), b"\0depends=\0").unwrap();
        let index = index_modules(dir.path()).unwrap();
        let order: Vec<String> = load_order(&["a".into()], &index, dir.path())
            .unwrap()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(order, ["c", "b_mod", "a"]);
        assert!(load_order(&["nope".into()], &index, dir.path()).is_err());
    }
}
