//! Interrupt remapping for L1's emulated intel-iommu, as a real host has
//! it: under KVM, `intremap=on` on the IOMMU needs `-machine
//! kernel-irqchip=split` (QEMU refuses it with KVM's in-kernel IOAPIC:
//! "Intel Interrupt Remapping cannot work with kernel-irqchip=on, please
//! use 'split|off'"), and that is what QEMU's own intel-iommu tests run.
//! Under TCG L1 keeps the IOMMU as the topology gives it (there is no
//! in-kernel irqchip to split). The topology's device list is left as the
//! topology builds it; this only adds to the IOMMU's own argument.

use lab::machine::accel::Accel;

use crate::host::topology::IommuModel;

/// What the accelerator adds: to `-machine`, and to the IOMMU's `-device`.
#[derive(Debug, PartialEq, Eq)]
pub struct Remapping {
    pub machine_props: &'static str,
    pub iommu_props: &'static str,
}

/// The additions for `accel` with `iommu`; `None`: nothing to add.
pub fn remapping(accel: Accel, iommu: IommuModel) -> Option<Remapping> {
    match (accel, iommu) {
        (Accel::Kvm, IommuModel::Intel) => Some(Remapping {
            machine_props: ",kernel-irqchip=split",
            iommu_props: ",intremap=on",
        }),
        _ => None,
    }
}

/// `machine` (`q35,accel=…`) and the device arguments with the additions
/// for `accel`: the IOMMU is the `-device` whose driver is `iommu`'s.
pub fn apply(
    accel: Accel,
    iommu: IommuModel,
    machine: String,
    mut devices: Vec<String>,
) -> (String, Vec<String>) {
    let Some(r) = remapping(accel, iommu) else {
        return (machine, devices);
    };
    let driver = iommu.qemu_name();
    if let Some(spec) = devices
        .iter_mut()
        .find(|d| d.split(',').next() == Some(driver))
    {
        spec.push_str(r.iommu_props);
    }
    (format!("{machine}{}", r.machine_props), devices)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn devices() -> Vec<String> {
        [
            "-device",
            "intel-iommu,caching-mode=on",
            "-device",
            "bochs-display,bus=pcie.0,addr=0x06.0",
        ]
        .map(str::to_string)
        .to_vec()
    }

    #[test]
    fn kvm_gets_interrupt_remapping_on_a_split_irqchip() {
        let (machine, args) = apply(
            Accel::Kvm,
            IommuModel::Intel,
            "q35,accel=kvm".into(),
            devices(),
        );
        assert_eq!(machine, "q35,accel=kvm,kernel-irqchip=split");
        assert_eq!(
            args,
            [
                "-device",
                "intel-iommu,caching-mode=on,intremap=on",
                "-device",
                "bochs-display,bus=pcie.0,addr=0x06.0"
            ]
        );
    }

    #[test]
    fn tcg_keeps_the_iommu_as_the_topology_gives_it() {
        let (machine, args) = apply(
            Accel::Tcg,
            IommuModel::Intel,
            "q35,accel=tcg".into(),
            devices(),
        );
        assert_eq!(machine, "q35,accel=tcg");
        assert_eq!(args, devices());
    }

    #[test]
    fn other_iommus_are_left_alone_under_kvm() {
        let virtio = ["-device", "virtio-iommu-pci"].map(str::to_string).to_vec();
        let (machine, args) = apply(
            Accel::Kvm,
            IommuModel::Virtio,
            "q35,accel=kvm".into(),
            virtio.clone(),
        );
        assert_eq!((machine.as_str(), args), ("q35,accel=kvm", virtio));
        assert_eq!(remapping(Accel::Kvm, IommuModel::Amd), None);
    }
}
