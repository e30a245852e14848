//! What L1 boots: a distribution kernel and an initramfs built here, in
//! Rust, cached by content under the user's cache directory.

mod cache;
pub mod debian_release;
mod elf_compact;
mod elf_fields;
mod initramfs;
mod kernel;
pub mod kernel_build;
pub mod kernel_check;
mod module_file;
mod modules;
mod pvh;
pub mod release_root;

use std::path::PathBuf;

use lab::machine::kvm_proof::ProofGuest;

pub use cache::cache_dir;
pub use initramfs::floor_initramfs;
pub use kernel::{find_kernel, KernelSource};
pub use release_root::Userland;

/// The recipe files, compiled in so the binary is the whole recipe.
pub const L1_INIT: &str = include_str!("../../../../images/l1-init.sh");
pub const L1_MODULES: &str = include_str!("../../../../images/l1-modules.txt");
pub const L1_LATE_MODULES: &str = include_str!("../../../../images/l1-late-modules.txt");
pub const L2_INIT: &str = include_str!("../../../../images/l2-init.sh");
pub const L2_MODULES: &str = include_str!("../../../../images/l2-modules.txt");
pub const L2_LATE_MODULES: &str = include_str!("../../../../images/l2-late-modules.txt");

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("{0}")]
    Kernel(String),
    #[error("module {0} not found under {1}")]
    ModuleMissing(String, PathBuf),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("busybox: {0}")]
    Busybox(String),
    #[error("{0}")]
    Root(String),
    #[error(transparent)]
    Release(#[from] release_root::UnknownRelease),
    #[error("{0}; run the same command again to start over")]
    Debootstrap(#[source] release_root::ToolError),
    #[error("{tool} in {}; run the same command again to resume", root.display())]
    Install {
        #[source]
        tool: release_root::ToolError,
        root: PathBuf,
    },
}

pub fn io_err(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> ImageError {
    let path = path.into();
    move |source| ImageError::Io { path, source }
}

/// A kernel and the L1 initramfs that goes with it.
#[derive(Clone, Debug)]
pub struct L1Images {
    pub kernel: KernelSource,
    /// What QEMU's -kernel gets: the PVH ELF when the kernel has one, else the bzImage.
    pub boot_kernel: PathBuf,
    pub initramfs: PathBuf,
    /// L2's kernel and initramfs, as canonical host paths: L1's init binds
    /// them at /l2/vmlinux and /l2/initrd from the host's root over 9p
    /// (from copies in the work directory when L1's root is a release's).
    pub l2_kernel: PathBuf,
    pub l2_initrd: PathBuf,
    /// Whether this call built the L1 initramfs (false: taken from the cache).
    pub built: bool,
    /// What L1 shares in as its root over 9p: the host's `/` or a release's root.
    pub userland: Userland,
    pub root: PathBuf,
}

impl L1Images {
    /// No images: for runs that never boot a VM (rules depth).
    pub fn none() -> Self {
        L1Images {
            boot_kernel: PathBuf::new(),
            kernel: KernelSource {
                vmlinuz: PathBuf::new(),
                modules: PathBuf::new(),
                version: String::new(),
                origin: "none".into(),
            },
            initramfs: PathBuf::new(),
            l2_kernel: PathBuf::new(),
            l2_initrd: PathBuf::new(),
            built: false,
            userland: Userland::Host,
            root: PathBuf::from("/"),
        }
    }
}

/// The guest the KVM proof boots: L1's kernel with the floor initramfs
/// (a kernel is the proof that counts), else the proof's tiny BIOS.
pub fn proof_guest(images: Option<&L1Images>) -> ProofGuest {
    images
        .and_then(|i| {
            let (initrd, _) = floor_initramfs(&i.kernel).ok()?;
            Some(ProofGuest::Kernel {
                kernel: i.boot_kernel.clone(),
                initrd,
            })
        })
        .unwrap_or(ProofGuest::Bios)
}

/// The same for a kernel alone (no L1 initramfs needed).
pub fn proof_guest_for(kernel: &KernelSource) -> ProofGuest {
    let boot = pvh::boot_image(kernel).ok();
    match (boot, floor_initramfs(kernel)) {
        (Some(kernel), Ok((initrd, _))) => ProofGuest::Kernel { kernel, initrd },
        _ => ProofGuest::Bios,
    }
}

/// Finds the kernel (downloading Debian's if none is given) and builds or
/// reuses the L1 initramfs.
pub fn prepare_l1() -> Result<L1Images, ImageError> {
    let userland = Userland::from_env()?;
    let root = match userland {
        Userland::Host => PathBuf::from("/"),
        Userland::Debian(release) => release_root::built_root(release)?,
    };
    let kernel = find_kernel()?;
    let boot_kernel = if std::env::var_os("MFLAB_NO_PVH").is_some() {
        kernel.vmlinuz.clone()
    } else {
        pvh::boot_image(&kernel)?
    };
    let (l2_initramfs, _) = initramfs::l2_initramfs(&kernel)?;
    let (initramfs, built) = initramfs::l1_initramfs(&kernel)?;
    let canonical = |p: &PathBuf| std::fs::canonicalize(p).map_err(io_err(p));
    Ok(L1Images {
        l2_kernel: canonical(&boot_kernel)?,
        l2_initrd: canonical(&l2_initramfs)?,
        boot_kernel,
        kernel,
        initramfs,
        built,
        userland,
        root,
    })
}
