//! Builds small sysfs trees with the kernel's own layout, for tests and for
//! people who want to try `mflab plan` on a host they do not have.
//!
//! Layout written (relative links, as the kernel makes them):
//! ```text
//! devices/pci0000:00/<bdf>/{vendor,device,class,config,driver_override}
//! devices/pci0000:00/<bdf>/driver       -> ../../../bus/pci/drivers/<name>
//! devices/pci0000:00/<bdf>/iommu_group  -> ../../../kernel/iommu_groups/<n>
//! bus/pci/devices/<bdf>                 -> ../../../devices/pci0000:00/<bdf>
//! bus/pci/drivers/<name>/{bind,unbind,<bdf> -> device}
//! bus/pci/drivers_probe
//! kernel/iommu_groups/<n>/devices/<bdf> -> ../../../../devices/pci0000:00/<bdf>
//! ```

use std::fs;
use std::io;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use crate::pci::address::PciAddress;

/// One function to put in a fake tree.
#[derive(Clone, Debug)]
pub struct FakeFunction {
    pub address: PciAddress,
    pub vendor: u16,
    pub device: u16,
    pub class: u32,
    pub header_type: u8,
    pub driver: Option<String>,
    pub iommu_group: Option<u32>,
}

impl FakeFunction {
    /// An endpoint with the given ids, class, driver and group.
    pub fn endpoint(
        address: &str,
        ids: (u16, u16),
        class: u32,
        driver: Option<&str>,
        group: u32,
    ) -> Self {
        FakeFunction {
            address: address.parse().expect("valid test address"),
            vendor: ids.0,
            device: ids.1,
            class,
            header_type: 0,
            driver: driver.map(str::to_string),
            iommu_group: Some(group),
        }
    }

    /// Sets bit 7 of the header type: "this device has several functions".
    pub fn multifunction(mut self) -> Self {
        self.header_type |= 0x80;
        self
    }

    /// A PCI-to-PCI bridge (header type 1, class 0x0604).
    pub fn bridge(address: &str, group: u32) -> Self {
        FakeFunction {
            address: address.parse().expect("valid test address"),
            vendor: 0x1b36,
            device: 0x0001,
            class: 0x060400,
            header_type: 1,
            driver: None,
            iommu_group: Some(group),
        }
    }
}

/// A sysfs tree under a directory.
pub struct FakeSysfs {
    root: PathBuf,
}

impl FakeSysfs {
    pub fn create(root: &Path) -> io::Result<Self> {
        fs::create_dir_all(root.join("bus/pci/devices"))?;
        fs::create_dir_all(root.join("bus/pci/drivers"))?;
        fs::create_dir_all(root.join("kernel/iommu_groups"))?;
        fs::create_dir_all(root.join("devices/pci0000:00"))?;
        fs::write(root.join("bus/pci/drivers_probe"), "")?;
        Ok(FakeSysfs {
            root: root.to_path_buf(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn add_driver(&self, name: &str) -> io::Result<()> {
        let dir = self.root.join("bus/pci/drivers").join(name);
        fs::create_dir_all(&dir)?;
        fs::write(dir.join("bind"), "")?;
        fs::write(dir.join("unbind"), "")
    }

    pub fn add(&self, f: &FakeFunction) -> io::Result<&Self> {
        let bdf = f.address.to_string();
        let dir = self.root.join("devices/pci0000:00").join(&bdf);
        fs::create_dir_all(&dir)?;
        fs::write(dir.join("vendor"), format!("{:#06x}\n", f.vendor))?;
        fs::write(dir.join("device"), format!("{:#06x}\n", f.device))?;
        fs::write(dir.join("class"), format!("{:#08x}\n", f.class))?;
        fs::write(dir.join("driver_override"), "(null)\n")?;
        let mut config = vec![0u8; 64];
        config[0..2].copy_from_slice(&f.vendor.to_le_bytes());
        config[2..4].copy_from_slice(&f.device.to_le_bytes());
        config[9..12].copy_from_slice(&f.class.to_le_bytes()[0..3]);
        config[0x0e] = f.header_type;
        fs::write(dir.join("config"), config)?;
        symlink(
            format!("../../../devices/pci0000:00/{bdf}"),
            self.root.join("bus/pci/devices").join(&bdf),
        )?;
        if let Some(driver) = &f.driver {
            self.add_driver(driver)?;
            symlink(
                format!("../../../bus/pci/drivers/{driver}"),
                dir.join("driver"),
            )?;
            symlink(
                format!("../../../../devices/pci0000:00/{bdf}"),
                self.root.join("bus/pci/drivers").join(driver).join(&bdf),
            )?;
        }
        if let Some(group) = f.iommu_group {
            let gdir = self
                .root
                .join("kernel/iommu_groups")
                .join(group.to_string())
                .join("devices");
            fs::create_dir_all(&gdir)?;
            symlink(
                format!("../../../kernel/iommu_groups/{group}"),
                dir.join("iommu_group"),
            )?;
            symlink(
                format!("../../../../devices/pci0000:00/{bdf}"),
                gdir.join(&bdf),
            )?;
        }
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pci::view::read_host_view;

    #[test]
    fn a_fake_tree_reads_back_as_written() {
        let dir = tempfile::tempdir().unwrap();
        let tree = FakeSysfs::create(dir.path()).unwrap();
        tree.add(
            &FakeFunction::endpoint(
                "0000:00:06.0",
                (0x1234, 0x1111),
                0x038000,
                Some("bochs-drm"),
                2,
            )
            .multifunction(),
        )
        .unwrap()
        .add(&FakeFunction::endpoint(
            "0000:00:06.1",
            (0x8086, 0x293e),
            0x040300,
            Some("snd_hda_intel"),
            2,
        ))
        .unwrap()
        .add(&FakeFunction::endpoint(
            "0000:00:07.0",
            (0x8086, 0x10d3),
            0x020000,
            None,
            3,
        ))
        .unwrap()
        .add(&FakeFunction::bridge("0000:00:1e.0", 4))
        .unwrap();
        let view = read_host_view(dir.path()).unwrap();
        let gpu = view.function("0000:00:06.0".parse().unwrap()).unwrap();
        assert_eq!(
            (gpu.vendor, gpu.device, gpu.class),
            (0x1234, 0x1111, 0x038000)
        );
        assert_eq!(gpu.driver.as_deref(), Some("bochs-drm"));
        assert_eq!(gpu.driver_override, None);
        assert!(view.is_multifunction("0000:00:06.1".parse().unwrap()));
        assert!(!view.is_multifunction("0000:00:07.0".parse().unwrap()));
        let (group, members) = view.group_of("0000:00:06.1".parse().unwrap()).unwrap();
        assert_eq!((group, members.len()), (2, 2));
        assert!(view
            .function("0000:00:1e.0".parse().unwrap())
            .unwrap()
            .is_bridge());
        assert_eq!(
            view.function("0000:00:07.0".parse().unwrap())
                .unwrap()
                .driver,
            None
        );
    }

    #[test]
    fn an_empty_tree_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        FakeSysfs::create(dir.path()).unwrap();
        let err = read_host_view(dir.path()).unwrap_err().to_string();
        assert!(err.contains("no PCI devices"), "{err}");
    }
}
