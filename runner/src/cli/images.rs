//! `mflab images`: what is cached, where it came from; builds what is missing.

use super::Outcome;
use crate::host::images::{cache_dir, prepare_l1};

pub fn run() -> Outcome {
    let start = std::time::Instant::now();
    match prepare_l1() {
        Ok(images) => {
            println!("cache:     {}", cache_dir().display());
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
