//! `mflab images`: what is cached, where it came from; builds what is
//! missing. With `--release`, the release's root first (debootstrap, as
//! root; its progress lines on stderr), then the kernel and initramfs
//! from it.

use super::{CliError, Outcome};
use crate::host::images::release_root::{build_root, Userland};
use crate::host::images::{cache_dir, prepare_l1};

pub fn run() -> Result<Outcome, CliError> {
    let start = std::time::Instant::now();
    let userland = Userland::from_env()?;
    let mut root_line = None;
    if let Userland::Debian(release) = userland {
        let (root, built) = build_root(release, &|line| {
            eprintln!("mflab: root {}: {line}", release.name)
        })?;
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
    // The kernel first (a build of one takes tens of minutes), so that
    // the initramfs's time below is its own.
    crate::host::images::find_kernel()?;
    let start = std::time::Instant::now();
    let images = prepare_l1()?;
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
    Ok(Outcome::Clean)
}
