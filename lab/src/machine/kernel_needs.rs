//! What L1's kernel must have, and what a given kernel lacks: a pure
//! function of its config text (`config-<version>`) and the names of the
//! modules it ships, so that a missing piece is named before any boot,
//! with the package that usually has it.

use serde::Serialize;

/// One thing L1 needs from its kernel: a config option, and the module
/// that provides it when it is not built in (`None`: built-in only).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Need {
    pub config: &'static str,
    pub module: Option<&'static str>,
    /// What L1 uses it for, in a few words.
    pub role: String,
}

/// Why a need is not met.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Lack {
    /// The config says it is not built (not set, or absent).
    NotBuilt,
    /// Configured as a module (`=m`), or no config to read, and no such
    /// module file: the package with it is not installed.
    NotInstalled,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Missing {
    pub need: Need,
    pub lack: Lack,
}

fn need(config: &'static str, module: Option<&'static str>, role: &str) -> Need {
    Need {
        config,
        module,
        role: role.into(),
    }
}

/// The IOMMU driver for a topology's IOMMU, by QEMU's device name.
pub fn iommu_need(qemu_device: &str) -> Option<Need> {
    match qemu_device {
        "intel-iommu" => Some(need("INTEL_IOMMU", None, "the intel-iommu of the topology")),
        "virtio-iommu" | "virtio-iommu-pci" => Some(need(
            "VIRTIO_IOMMU",
            Some("virtio_iommu"),
            "the virtio-iommu of the topology",
        )),
        "amd-iommu" => Some(need("AMD_IOMMU", None, "the amd-iommu of the topology")),
        _ => None,
    }
}

/// What a hostdev with `<driver iommufd='yes'/>` needs of L1's kernel:
/// `/dev/iommu` (IOMMUFD) and the VFIO device cdev (`/dev/vfio/devices/`),
/// which Debian's kernels are built without (`--kernel RELEASE+iommufd`
/// builds one that has them).
pub fn iommufd_needs() -> Vec<Need> {
    vec![
        need(
            "IOMMUFD",
            Some("iommufd"),
            "<driver iommufd='yes'/>: /dev/iommu",
        ),
        need(
            "VFIO_DEVICE_CDEV",
            None,
            "<driver iommufd='yes'/>: the VFIO device cdev",
        ),
    ]
}

/// The kernel driver of a QEMU function device (`driver[,props]`), where
/// the function has one L1 binds before it is detached.
pub fn function_need(device: &str) -> Option<Need> {
    let driver = device.split(',').next().unwrap_or(device);
    let (config, module) = match driver {
        "bochs-display" | "VGA" => ("DRM_BOCHS", "bochs"),
        "ich9-intel-hda" | "intel-hda" => ("SND_HDA_INTEL", "snd_hda_intel"),
        "e1000e" => ("E1000E", "e1000e"),
        "e1000" => ("E1000", "e1000"),
        "virtio-rng-pci" => ("HW_RANDOM_VIRTIO", "virtio_rng"),
        _ => return None,
    };
    Some(need(
        config,
        Some(module),
        &format!("the {driver} function's driver"),
    ))
}

/// What every L1 needs: its 9p root, virtio, VFIO, and KVM for L2 with the
/// vendor module L1's CPU takes (`kvm_amd` under TCG's emulated SVM).
pub fn l1_needs(kvm_vendor: Option<&str>) -> Vec<Need> {
    let mut needs = vec![
        need("VIRTIO_PCI", Some("virtio_pci"), "L1's virtio devices"),
        need(
            "NET_9P_VIRTIO",
            Some("9pnet_virtio"),
            "the host's root over 9p",
        ),
        need("9P_FS", Some("9p"), "the host's root over 9p"),
        need("VFIO", Some("vfio"), "detaching functions for L2"),
        need("VFIO_PCI", Some("vfio_pci"), "detaching functions for L2"),
        need(
            "VFIO_IOMMU_TYPE1",
            Some("vfio_iommu_type1"),
            "L2's DMA mappings",
        ),
        need("KVM", Some("kvm"), "KVM for L2 inside L1"),
    ];
    match kvm_vendor {
        Some("kvm_intel") => needs.push(need(
            "KVM_INTEL",
            Some("kvm_intel"),
            "KVM on L1's Intel CPU",
        )),
        Some("kvm_amd") => needs.push(need("KVM_AMD", Some("kvm_amd"), "KVM on L1's AMD CPU")),
        _ => {}
    }
    needs
}

/// The value a config gives an option (`y`, `m`, …), `None` when it is not
/// set or not there.
pub fn config_value<'a>(config: &'a str, option: &str) -> Option<&'a str> {
    config.lines().find_map(|l| {
        let rest = l.trim().strip_prefix("CONFIG_")?.strip_prefix(option)?;
        rest.strip_prefix('=')
    })
}

/// The needs a kernel does not meet. `config` is its config text, if one
/// was found; `modules` the normalized names of its module files and of
/// its `modules.builtin`. Without a config, a need is met by its module
/// (built-in-only options then cannot be told and are taken as there).
pub fn missing(config: Option<&str>, modules: &[String], needs: &[Need]) -> Vec<Missing> {
    let has_module = |m: &str| modules.iter().any(|n| n.replace('-', "_") == m);
    needs
        .iter()
        .filter_map(|n| {
            let lack = match (config.map(|c| config_value(c, n.config)), n.module) {
                (Some(Some("y")), _) => return None,
                (Some(Some("m")) | None, Some(m)) if has_module(m) => return None,
                (None, None) => return None,
                (Some(Some("m")) | None, Some(_)) => Lack::NotInstalled,
                (Some(_), _) => Lack::NotBuilt,
            };
            Some(Missing {
                need: n.clone(),
                lack,
            })
        })
        .collect()
}

/// One line for a missing piece, with the fix that usually works.
pub fn describe(m: &Missing, kernel_version: &str) -> String {
    let what = match m.need.module {
        Some(module) => format!("CONFIG_{} (module {module})", m.need.config),
        None => format!("CONFIG_{} (built in)", m.need.config),
    };
    let fix = match m.lack {
        Lack::NotInstalled => format!(
            "the module is not installed: on Ubuntu it is in linux-modules-extra-{kernel_version} (`apt-get install linux-modules-extra-{kernel_version}`)"
        ),
        // Debian 12's kernel is the default here and is the one without it.
        Lack::NotBuilt if m.need.config == "VIRTIO_IOMMU" => "this kernel is built without it (Debian 12's is): use Debian 13's, `--kernel debian-13` or `--release debian-13`, or --kernel/--modules with one that has it".into(),
        // No Debian kernel has these: the fix is the one mflab builds.
        Lack::NotBuilt if matches!(m.need.config, "IOMMUFD" | "VFIO_DEVICE_CDEV") => "this kernel is built without it (Debian 12's, 13's and forky's are): use `--kernel debian-testing+iommufd` (forky's kernel rebuilt with it, once, into the cache: tens of minutes), or --kernel/--modules with one that has it (Ubuntu's)".into(),
        Lack::NotBuilt => "this kernel is built without it: use Debian's kernel (mflab's default where apt knows linux-image-amd64) or --kernel/--modules with one that has it".into(),
    };
    format!("{what}, for {}: {fix}", m.need.role)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = "\
# Linux/x86 6.8.0 Kernel Configuration
CONFIG_INTEL_IOMMU=y
# CONFIG_AMD_IOMMU is not set
CONFIG_VIRTIO_PCI=y
CONFIG_NET_9P_VIRTIO=m
CONFIG_9P_FS=m
CONFIG_VFIO=m
CONFIG_VFIO_PCI=m
CONFIG_VFIO_IOMMU_TYPE1=m
CONFIG_KVM=m
CONFIG_KVM_INTEL=m
CONFIG_KVM_AMD=m
CONFIG_DRM_BOCHS=m
CONFIG_SND_HDA_INTEL=m
CONFIG_E1000E=m
CONFIG_VIRTIO_IOMMU=m
";

    #[test]
    fn iommufd_is_refused_on_a_kernel_without_it_with_the_kernel_that_has_it() {
        let lacking = missing(Some(CONFIG), &names(&["vfio_pci"]), &iommufd_needs());
        let configs: Vec<&str> = lacking.iter().map(|m| m.need.config).collect();
        assert_eq!(configs, ["IOMMUFD", "VFIO_DEVICE_CDEV"]);
        let text = describe(&lacking[0], "7.2.12+deb14-amd64");
        assert!(text.contains("CONFIG_IOMMUFD (module iommufd)"), "{text}");
        assert!(text.contains("--kernel debian-testing+iommufd"), "{text}");
        let with = format!("{CONFIG}CONFIG_IOMMUFD=m\nCONFIG_VFIO_DEVICE_CDEV=y\n");
        assert!(missing(Some(&with), &names(&["iommufd"]), &iommufd_needs()).is_empty());
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn configs(missing: &[Missing]) -> Vec<(&str, Lack)> {
        missing.iter().map(|m| (m.need.config, m.lack)).collect()
    }

    #[test]
    fn a_config_value_is_read_exactly() {
        assert_eq!(config_value(CONFIG, "KVM"), Some("m"));
        assert_eq!(config_value(CONFIG, "KVM_AMD"), Some("m"));
        assert_eq!(config_value(CONFIG, "AMD_IOMMU"), None);
        assert_eq!(config_value(CONFIG, "VIRTIO"), None, "not VIRTIO_PCI");
    }

    #[test]
    fn modules_configured_but_not_shipped_are_not_installed() {
        // Ubuntu without linux-modules-extra: =m in the config, no file.
        let mut needs = l1_needs(Some("kvm_intel"));
        needs.extend(iommu_need("intel-iommu"));
        needs.extend(function_need("bochs-display"));
        needs.extend(function_need("ich9-intel-hda"));
        let shipped = names(&[
            "9pnet_virtio",
            "9p",
            "vfio",
            "vfio-pci",
            "vfio_iommu_type1",
            "kvm",
            "kvm_intel",
        ]);
        assert_eq!(
            configs(&missing(Some(CONFIG), &shipped, &needs)),
            [
                ("DRM_BOCHS", Lack::NotInstalled),
                ("SND_HDA_INTEL", Lack::NotInstalled)
            ]
        );
    }

    #[test]
    fn options_not_set_are_not_built() {
        let needs: Vec<Need> = ["amd-iommu", "virtio-iommu"]
            .into_iter()
            .filter_map(iommu_need)
            .collect();
        let got = missing(Some(CONFIG), &names(&["virtio_iommu"]), &needs);
        assert_eq!(configs(&got), [("AMD_IOMMU", Lack::NotBuilt)]);
        let no_viommu = CONFIG.replace("CONFIG_VIRTIO_IOMMU=m", "# CONFIG_VIRTIO_IOMMU is not set");
        let lacking = missing(
            Some(&no_viommu),
            &[],
            &iommu_need("virtio-iommu-pci")
                .into_iter()
                .collect::<Vec<_>>(),
        );
        let line = describe(&lacking[0], "6.1.0-57-amd64");
        assert!(
            line.starts_with("CONFIG_VIRTIO_IOMMU (module virtio_iommu)")
                && line.contains("--release debian-13"),
            "{line}"
        );
        let no_9p = "CONFIG_VIRTIO_PCI=y\n# CONFIG_9P_FS is not set\n";
        let got = missing(Some(no_9p), &names(&["9p"]), &l1_needs(None));
        assert!(
            configs(&got).contains(&("9P_FS", Lack::NotBuilt)),
            "{got:?}"
        );
        assert!(!configs(&got).iter().any(|(c, _)| *c == "VIRTIO_PCI"));
    }

    #[test]
    fn without_a_config_the_modules_decide() {
        let mut needs = l1_needs(Some("kvm_amd"));
        needs.extend(iommu_need("intel-iommu"));
        needs.extend(function_need("e1000e,romfile="));
        let shipped = names(&[
            "virtio_pci",
            "9pnet_virtio",
            "9p",
            "vfio",
            "vfio_pci",
            "vfio_iommu_type1",
            "kvm",
            "e1000e",
        ]);
        assert_eq!(
            configs(&missing(None, &shipped, &needs)),
            [("KVM_AMD", Lack::NotInstalled)]
        );
    }

    #[test]
    fn devices_without_a_driver_need_nothing() {
        assert_eq!(function_need("pci-testdev"), None);
        assert_eq!(function_need("e1000e").unwrap().config, "E1000E");
        let m = Missing {
            need: function_need("e1000e").unwrap(),
            lack: Lack::NotInstalled,
        };
        let line = describe(&m, "6.8.0-1020-azure");
        assert!(
            line.contains("linux-modules-extra-6.8.0-1020-azure"),
            "{line}"
        );
        assert!(line.contains("CONFIG_E1000E"), "{line}");
    }
}
