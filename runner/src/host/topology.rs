//! L1's PCI topology: which QEMU device backs each function of each slot,
//! and the IOMMU model. Topologies are data (`images/topologies/*.toml`);
//! turning one into QEMU arguments is a pure function.

use serde::Deserialize;

pub mod pcie;
pub use pcie::{Downstream, RootPort, Switch};

/// The topologies shipped with mflab, compiled in.
pub const BUILTIN: &[(&str, &str)] = &[
    (
        "gpu-audio",
        include_str!("../../../images/topologies/gpu-audio.toml"),
    ),
    (
        "gpu-audio-virtio-iommu",
        include_str!("../../../images/topologies/gpu-audio-virtio-iommu.toml"),
    ),
    (
        "nic-quad",
        include_str!("../../../images/topologies/nic-quad.toml"),
    ),
    (
        "bridge",
        include_str!("../../../images/topologies/bridge.toml"),
    ),
    (
        "gpu-audio-root-port",
        include_str!("../../../images/topologies/gpu-audio-root-port.toml"),
    ),
    (
        "pcie-switch",
        include_str!("../../../images/topologies/pcie-switch.toml"),
    ),
    (
        "nic-link",
        include_str!("../../../images/topologies/nic-link.toml"),
    ),
    (
        "reset-root-port",
        include_str!("../../../images/topologies/reset-root-port.toml"),
    ),
    (
        "reset-other-group",
        include_str!("../../../images/topologies/reset-other-group.toml"),
    ),
];

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Topology {
    #[serde(skip)]
    pub name: String,
    pub description: String,
    #[serde(default = "default_iommu")]
    pub iommu: IommuModel,
    #[serde(default)]
    pub slot: Vec<Slot>,
    #[serde(default)]
    pub bridge: Vec<Bridge>,
    #[serde(default)]
    pub root_port: Vec<RootPort>,
    #[serde(default)]
    pub switch: Vec<Switch>,
    /// IOMMU groups L1's kernel must form, each exactly these functions
    /// (checked by the VM tests; groups are read, never assumed).
    #[serde(default)]
    pub expect_groups: Vec<Vec<lab::PciAddress>>,
    /// Keep the devices' option ROMs (off by default: SeaBIOS runs each one).
    #[serde(default)]
    pub option_roms: bool,
    /// Links between NICs, each a netdev hub in L0's QEMU whose ports are
    /// the netdev ids listed: `links = [["link0", "link1"]]` with devices
    /// `e1000,netdev=link0` and `e1000e,netdev=link1`. Frames between the
    /// two pass only through those devices (the link proof's wire).
    #[serde(default)]
    pub links: Vec<Vec<String>>,
}

/// The emulated IOMMU, named as QEMU's device: `intel-iommu`, `virtio-iommu`, `amd-iommu`.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
pub enum IommuModel {
    #[serde(rename = "intel-iommu")]
    Intel,
    #[serde(rename = "virtio-iommu")]
    Virtio,
    #[serde(rename = "amd-iommu")]
    Amd,
}

impl IommuModel {
    /// The name topologies give it (QEMU's device name).
    pub fn qemu_name(self) -> &'static str {
        match self {
            IommuModel::Intel => "intel-iommu",
            IommuModel::Virtio => "virtio-iommu",
            IommuModel::Amd => "amd-iommu",
        }
    }
}

fn default_iommu() -> IommuModel {
    IommuModel::Intel
}

/// One slot; `functions[i]` is function i, a QEMU `-device` spec
/// (`driver[,prop=value…]`).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Slot {
    pub addr: u8,
    pub functions: Vec<String>,
}

/// A conventional `pci-bridge` on the root bus, with slots behind it.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Bridge {
    pub addr: u8,
    #[serde(default)]
    pub slot: Vec<Slot>,
}

#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    #[error("unknown topology '{0}'; the shipped ones are: {1}")]
    Unknown(String, String),
    #[error("topology {name}: {source}")]
    Listing {
        name: String,
        #[source]
        source: crate::host::reported_host::LabHostError,
    },
    #[error("topology {name}: {source}")]
    Toml {
        name: String,
        #[source]
        source: toml::de::Error,
    },
    #[error("topology {name}: {source}")]
    Shape {
        name: String,
        #[source]
        source: ShapeError,
    },
}

/// What QEMU or the firmware would refuse or misnumber in a topology.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ShapeError {
    #[error("slot {0:#04x} needs 1 to 8 functions")]
    SlotFunctions(u8),
    #[error("slot {0:#04x} is past 0x1f")]
    PastLastSlot(u8),
    #[error("root port {0:#04x}: at most 8 functions")]
    RootPortFunctions(u8),
    #[error("switch {0:#04x}: needs 1 to 32 downstream ports")]
    SwitchPorts(u8),
    #[error("switch {switch:#04x}: a downstream port with {functions} functions (at most 8)")]
    DownstreamFunctions { switch: u8, functions: usize },
    #[error("root-bus slot {0:#04x} is used twice")]
    SlotTwice(u8),
}

pub fn builtin_names() -> String {
    BUILTIN
        .iter()
        .map(|(n, _)| *n)
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn load(name: &str) -> Result<Topology, TopologyError> {
    // A reported host's listing (see `reported_host`).
    if let Some(listing) = crate::host::reported_host::listing_path(name) {
        return crate::host::reported_host::LabHost::load(listing)
            .map(|built| built.topology)
            .map_err(|source| TopologyError::Listing {
                name: name.into(),
                source,
            });
    }
    let (_, text) = BUILTIN
        .iter()
        .find(|(n, _)| *n == name)
        .ok_or_else(|| TopologyError::Unknown(name.into(), builtin_names()))?;
    parse(name, text)
}

pub fn parse(name: &str, text: &str) -> Result<Topology, TopologyError> {
    let shape = |source| TopologyError::Shape {
        name: name.into(),
        source,
    };
    let mut t: Topology = toml::from_str(text).map_err(|source| TopologyError::Toml {
        name: name.into(),
        source,
    })?;
    t.name = name.to_string();
    for slot in t
        .slot
        .iter()
        .chain(t.bridge.iter().flat_map(|b| b.slot.iter()))
    {
        if slot.functions.is_empty() || slot.functions.len() > 8 {
            return Err(shape(ShapeError::SlotFunctions(slot.addr)));
        }
        if slot.addr > 0x1f {
            return Err(shape(ShapeError::PastLastSlot(slot.addr)));
        }
    }
    pcie::validate(&t).map_err(shape)?;
    Ok(t)
}

impl Topology {
    /// The `-device` arguments, IOMMU first (QEMU wants it before every
    /// other PCI device).
    pub fn device_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        let iommu = match self.iommu {
            IommuModel::Intel => "intel-iommu,caching-mode=on",
            IommuModel::Virtio => "virtio-iommu-pci",
            IommuModel::Amd => "amd-iommu",
        };
        args.extend(["-device".to_string(), iommu.to_string()]);
        for (hub, ports) in self.links.iter().enumerate() {
            for id in ports {
                args.extend([
                    "-netdev".to_string(),
                    format!("hubport,id={id},hubid={hub}"),
                ]);
            }
        }
        for slot in &self.slot {
            self.slot_args(&mut args, "pcie.0", slot);
        }
        for (i, bridge) in self.bridge.iter().enumerate() {
            let id = format!("bridge{i}");
            args.extend([
                "-device".into(),
                format!(
                    "pci-bridge,id={id},chassis_nr={},bus=pcie.0,addr={:#04x}",
                    i + 1,
                    bridge.addr
                ),
            ]);
            for slot in &bridge.slot {
                self.slot_args(&mut args, &id, slot);
            }
        }
        self.pcie_args(&mut args);
        args
    }

    fn slot_args(&self, args: &mut Vec<String>, bus: &str, slot: &Slot) {
        let multi = slot.functions.len() > 1;
        for (function, spec) in slot.functions.iter().enumerate() {
            let mut device = format!("{spec},bus={bus},addr={:#04x}.{function}", slot.addr);
            if multi && function == 0 {
                device.push_str(",multifunction=on");
            }
            if !self.option_roms && takes_romfile(spec) {
                device.push_str(",romfile=");
            }
            args.extend(["-device".into(), device]);
        }
    }
}

/// Devices with an option ROM that SeaBIOS would run (and spend time on).
fn takes_romfile(spec: &str) -> bool {
    let driver = spec.split(',').next().unwrap_or("");
    matches!(
        driver,
        "e1000"
            | "e1000e"
            | "igb"
            | "virtio-net-pci"
            | "rtl8139"
            | "bochs-display"
            | "virtio-rng-pci"
            | "pci-testdev"
            | "ich9-intel-hda"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_topology_parses() {
        for (name, _) in BUILTIN {
            let t = load(name).unwrap();
            assert!(!t.device_args().is_empty());
        }
    }

    #[test]
    fn gpu_audio_packs_both_functions_in_one_slot_iommu_first() {
        let args = load("gpu-audio").unwrap().device_args();
        assert_eq!(
            args,
            [
                "-device",
                "intel-iommu,caching-mode=on",
                "-device",
                "bochs-display,bus=pcie.0,addr=0x06.0,multifunction=on,romfile=",
                "-device",
                "ich9-intel-hda,bus=pcie.0,addr=0x06.1,romfile=",
            ]
        );
    }

    #[test]
    fn a_link_is_a_hub_whose_ports_the_nics_name() {
        let args = load("nic-link").unwrap().device_args();
        let netdevs: Vec<&String> = args.iter().filter(|a| a.starts_with("hubport")).collect();
        assert_eq!(
            netdevs,
            ["hubport,id=link0,hubid=0", "hubport,id=link1,hubid=0"]
        );
        let first_nic = args.iter().position(|a| a.starts_with("e1000")).unwrap();
        let last_netdev = args.iter().rposition(|a| a.starts_with("hubport")).unwrap();
        assert!(
            last_netdev < first_nic,
            "a netdev comes before the NIC that names it: {args:?}"
        );
        assert!(
            args.contains(
                &"e1000,netdev=link0,bus=pcie.0,addr=0x08.0,multifunction=on,romfile=".to_string()
            ),
            "{args:?}"
        );
    }

    #[test]
    fn bridge_devices_sit_on_the_bridge_bus() {
        let args = load("bridge").unwrap().device_args();
        assert!(
            args.contains(&"pci-bridge,id=bridge0,chassis_nr=1,bus=pcie.0,addr=0x1e".to_string())
        );
        assert!(args.contains(&"e1000,bus=bridge0,addr=0x01.0,romfile=".to_string()));
    }

    #[test]
    fn unknown_names_list_the_shipped_ones() {
        let err = load("gpu").unwrap_err().to_string();
        assert!(
            err.contains("gpu-audio") && err.contains("nic-quad"),
            "{err}"
        );
    }

    #[test]
    fn a_slot_with_nine_functions_is_refused() {
        let text =
            "description='x'\n[[slot]]\naddr=6\nfunctions=['a','a','a','a','a','a','a','a','a']";
        assert!(parse("x", text).is_err());
    }
}
