//! `mflab images`: what is cached, where it came from; builds what is
//! missing. With `--release`, the release's root first (debootstrap, as
//! root; its progress lines on stderr), then the kernel and initramfs
//! from it.

use super::Outcome;
use crate::host::images::release_root::{build_root, Userland};
use crate::host::images::{cache_dir, prepare_l1};

pub fn run() -> Outcome {
    let start = std::time::Instant::now();
    let userland = match Userland::from_env() {
        Ok(u) => u,
        Err(e) => {
            eprintln!("mflab: {e}");
            return Outcome::UsageOrIo;
        }
    };
    let mut root_line = None;
    if let Userland::Debian(release) = userland {
        match build_root(release, &|line| {
            eprintln!("mflab: root {}: {line}", release.name)
        }) {
            Ok((root, built)) => {
                root_line = Some(format!(
                    "root:      {} ({})",
                    root.display(),
                    if built {
                        format!("built now in {:.0}s", start.elapsed().as_secs_f64())
                    } else {
                        "cached".to_string()
                    }
                ));
            }
            Err(e) => {
                eprintln!("mflab: images: {e}");
                return Outcome::UsageOrIo;
            }
        }
    }
    let start = std::time::Instant::now();
    match prepare_l1() {
        Ok(images) => {
            println!("cache:     {}", cache_dir().display());
            if let Some(line) = root_line {
                println!("{line}");
            }
            println!(
                "kernel:    {} ({})",
                images.kernel.vmlinuz.display(),
                images.kernel.origin
            );
            println!("modules:   {}", images.kernel.modules.display());
            println!(
                "initramfs: {} ({})",
                images.initramfs.display(),
                if images.built {
                    format!("built now in {:.2}s", start.elapsed().as_secs_f64())
                } else {
                    "cached".to_string()
                }
            );
            Outcome::Clean
        }
        Err(e) => {
            eprintln!("mflab: images: {e}");
            Outcome::UsageOrIo
        }
    }
}
