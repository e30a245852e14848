//! Reading the host view from a sysfs tree laid out as the kernel does:
//! `bus/pci/devices/<bdf>` (links into `devices/`), with `vendor`,
//! `device`, `class`, `config`, `driver` (link), `driver_override` and
//! `iommu_group` (link), and `kernel/iommu_groups/<n>/devices/<bdf>`.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::{HostView, PciFunction};
use crate::pci::address::PciAddress;

#[derive(Debug, thiserror::Error)]
pub enum HostViewError {
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error(
        "{path}: unexpected content {content:?}; the kernel writes a hex number such as 0x8086"
    )]
    BadNumber { path: PathBuf, content: String },
    #[error("{path} has no PCI devices; is --sysfs pointing at a sysfs root (the directory that holds bus/pci)?")]
    NoDevices { path: PathBuf },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> HostViewError + '_ {
    move |source| HostViewError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Reads every PCI function and IOMMU group under `sysfs_root`.
pub fn read_host_view(sysfs_root: &Path) -> Result<HostView, HostViewError> {
    let devices_dir = sysfs_root.join("bus/pci/devices");
    let mut view = HostView::default();
    let entries = fs::read_dir(&devices_dir).map_err(io_err(&devices_dir))?;
    for entry in entries {
        let entry = entry.map_err(io_err(&devices_dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Ok(address) = name.parse::<PciAddress>() else {
            continue;
        };
        let function = read_function(address, &entry.path())?;
        view.functions.insert(address, function);
    }
    if view.functions.is_empty() {
        return Err(HostViewError::NoDevices { path: devices_dir });
    }
    read_groups(sysfs_root, &mut view)?;
    Ok(view)
}

fn read_function(address: PciAddress, dir: &Path) -> Result<PciFunction, HostViewError> {
    let vendor = read_hex(&dir.join("vendor"))? as u16;
    let device = read_hex(&dir.join("device"))? as u16;
    let class = read_hex(&dir.join("class"))?;
    // Reading config needs no privilege for its first 64 bytes.
    let header_type = fs::read(dir.join("config"))
        .ok()
        .and_then(|c| c.get(0x0e).copied())
        .unwrap_or(0);
    let driver = link_name(&dir.join("driver"));
    let driver_override = fs::read_to_string(dir.join("driver_override"))
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty() && s != "(null)");
    let iommu_group = link_name(&dir.join("iommu_group")).and_then(|n| n.parse().ok());
    Ok(PciFunction {
        address,
        vendor,
        device,
        class,
        header_type,
        driver,
        driver_override,
        iommu_group,
    })
}

/// Group membership comes from `kernel/iommu_groups`; a function whose
/// group directory is missing still counts as a member of its link's group.
fn read_groups(sysfs_root: &Path, view: &mut HostView) -> Result<(), HostViewError> {
    let groups_dir = sysfs_root.join("kernel/iommu_groups");
    if let Ok(entries) = fs::read_dir(&groups_dir) {
        for entry in entries.flatten() {
            let Ok(group) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let devices = entry.path().join("devices");
            let mut members: Vec<PciAddress> = fs::read_dir(&devices)
                .map_err(io_err(&devices))?
                .flatten()
                .filter_map(|e| e.file_name().to_string_lossy().parse().ok())
                .collect();
            members.sort();
            view.groups.insert(group, members);
        }
    }
    let linked: Vec<(u32, PciAddress)> = view
        .functions
        .values()
        .filter_map(|f| Some((f.iommu_group?, f.address)))
        .collect();
    for (group, address) in linked {
        let members = view.groups.entry(group).or_default();
        if !members.contains(&address) {
            members.push(address);
            members.sort();
        }
    }
    Ok(())
}

fn read_hex(path: &Path) -> Result<u32, HostViewError> {
    let text = fs::read_to_string(path).map_err(io_err(path))?;
    let trimmed = text.trim();
    let digits = trimmed.strip_prefix("0x").unwrap_or(trimmed);
    u32::from_str_radix(digits, 16).map_err(|_| HostViewError::BadNumber {
        path: path.to_path_buf(),
        content: trimmed.to_string(),
    })
}

/// The last path component of a symlink's target, e.g. the driver name.
pub(crate) fn link_name(path: &Path) -> Option<String> {
    let target = fs::read_link(path).ok()?;
    Some(target.file_name()?.to_string_lossy().into_owned())
}
