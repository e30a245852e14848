//! Reading what a kernel has, for [`lab::machine::kernel_needs`]: its config
//! (`config-<version>` beside the vmlinuz, as in `/boot` and in Debian's
//! package, else `build/.config` or `config` in its modules directory) and
//! its module names (module files and `modules.builtin`).

use std::path::Path;

use lab::machine::kernel_needs::{function_need, iommu_need, l1_needs, missing, Missing, Need};

use super::modules::{index_modules, normalize};
use super::KernelSource;
use crate::host::topology::Topology;

pub fn kernel_config(kernel: &KernelSource) -> Option<String> {
    let beside = kernel
        .vmlinuz
        .parent()
        .map(|d| d.join(format!("config-{}", kernel.version)));
    beside
        .into_iter()
        .chain([
            kernel.modules.join("build/.config"),
            kernel.modules.join("config"),
        ])
        .find_map(|p| std::fs::read_to_string(p).ok())
}

/// Normalized names of the modules a kernel ships or has built in.
pub fn module_names(modules: &Path) -> Vec<String> {
    let mut names: Vec<String> = index_modules(modules)
        .map(|i| i.into_keys().collect())
        .unwrap_or_default();
    if let Ok(builtin) = std::fs::read_to_string(modules.join("modules.builtin")) {
        names.extend(builtin.lines().filter_map(|l| {
            let file = l.rsplit('/').next()?;
            Some(normalize(file.strip_suffix(".ko")?))
        }));
    }
    names
}

/// What L1 needs for these topologies, with `kvm_module` for L2's KVM.
pub fn needs_for(topologies: &[&Topology], kvm_module: Option<&str>) -> Vec<Need> {
    let mut needs = l1_needs(kvm_module);
    for t in topologies {
        let devices = t
            .slot
            .iter()
            .chain(t.bridge.iter().flat_map(|b| b.slot.iter()))
            .flat_map(|s| s.functions.iter());
        for need in iommu_need(t.iommu.qemu_name())
            .into_iter()
            .chain(devices.filter_map(|d| function_need(d)))
        {
            if !needs.contains(&need) && !needs.iter().any(|n| n.config == need.config) {
                needs.push(need);
            }
        }
    }
    needs
}

/// What `kernel` lacks of `needs`.
pub fn check(kernel: &KernelSource, needs: &[Need]) -> Vec<Missing> {
    missing(
        kernel_config(kernel).as_deref(),
        &module_names(&kernel.modules),
        needs,
    )
}

/// Before a boot: the kernel that will boot has what these topologies
/// need, or an error naming each missing piece and its fix.
/// `extra`: what the scenarios themselves need beyond their topologies
/// (IOMMUFD for `<driver iommufd='yes'/>`).
pub fn require(
    topologies: &[&Topology],
    kvm_module: Option<&str>,
    extra: &[Need],
) -> Result<(), KernelLacks> {
    let kernel = super::find_kernel()?;
    let mut needs = needs_for(topologies, kvm_module);
    needs.extend(
        extra
            .iter()
            .filter(|n| !needs.contains(n))
            .cloned()
            .collect::<Vec<_>>(),
    );
    let lacking = check(&kernel, &needs);
    if lacking.is_empty() {
        return Ok(());
    }
    let lines = lacking
        .iter()
        .map(|m| {
            format!(
                "  {}",
                lab::machine::kernel_needs::describe(m, &kernel.version)
            )
        })
        .collect();
    Err(KernelLacks::Needs {
        version: kernel.version,
        origin: kernel.origin,
        lines,
    })
}

/// Why L1 cannot boot the kernel it would get.
#[derive(Debug, thiserror::Error)]
pub enum KernelLacks {
    #[error(transparent)]
    NoKernel(#[from] super::ImageError),
    #[error("kernel {version} ({origin}) lacks what L1 needs:\n{}", .lines.join("\n"))]
    Needs {
        version: String,
        origin: String,
        lines: Vec<String>,
    },
}
