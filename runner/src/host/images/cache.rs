//! The cache directory: `$MFLAB_CACHE`, else `$XDG_CACHE_HOME/mflab`, else
//! `~/.cache/mflab`. Everything in it is named by content, so stale
//! entries are never used, only left behind.

use std::path::PathBuf;

pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("MFLAB_CACHE") {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(dir).join("mflab");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp"));
    home.join(".cache/mflab")
}
