//! A scenario's `[[step]]`s: after L2 boots, each step attaches or
//! detaches hostdev XML (inline or a file, as for the domain) on the
//! running L2, with what must hold after it.
//!
//! ```toml
//! [[step]]
//! attach = '''<hostdev mode='subsystem' type='pci' managed='yes'>…</hostdev>'''
//! [step.expect]
//! l1 = { "0000:00:06.1" = "vfio-pci" }      # L1's drivers after the step
//! live = { "0000:00:06.1" = "unassigned" }  # the live domain: pci | unassigned | absent
//! aliased = ["0000:00:06.1"]                # its hostdev carries an <alias>
//! l2_guest = []                             # what L2's kernel sees after the step
//! # rules = ["R11"], error = "…"            # the step refused / failed
//! # reset_log = ["…"]                       # with `reset = true`: what L2's QEMU / L1's kernel said
//! [step.expect.libvirt]                     # libvirt's truth, key by key
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use lab::pci::listing::Place;
use lab::protocol::{Backend, StepAction, StepRequest};
use lab::{PciAddress, RuleId};
use serde::Deserialize;
use toml::Spanned;

use crate::host::scenario::ScenarioError;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepFile {
    attach: Option<String>,
    attach_file: Option<Spanned<String>>,
    detach: Option<String>,
    detach_file: Option<Spanned<String>>,
    /// `reset = true`: reset the running L2 (`virsh reset`, QMP `system_reset`).
    #[serde(default)]
    reset: bool,
    /// `reboot = true`: L2 powers off on the ACPI power button and is reset
    /// and resumed (`virsh reboot`, QMP `system_powerdown`).
    #[serde(default)]
    reboot: bool,
    #[serde(default)]
    expect: StepExpect,
}

/// What must hold after one step. Absent keys are not checked, except:
/// no rule error and no failure are expected unless said.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepExpect {
    pub rules: Option<Vec<RuleId>>,
    pub error: Option<String>,
    /// L1's drivers after the step (`none` for no driver).
    pub l1: Option<BTreeMap<PciAddress, String>>,
    /// Each function's hostdev in the live domain: `pci`, `unassigned`, or `absent`.
    pub live: Option<BTreeMap<PciAddress, String>>,
    /// Functions whose live hostdev must carry an alias.
    pub aliased: Option<Vec<PciAddress>>,
    /// What L2's kernel enumerated after the step, as `vendor:device@bdf`.
    pub l2_guest: Option<Vec<String>>,
    /// A reset step: texts its reset log must hold (L2's QEMU, L1's kernel).
    pub reset_log: Option<Vec<String>>,
    /// A reset step: texts its reset log must not hold.
    pub reset_log_lacks: Option<Vec<String>>,
    pub libvirt: Option<Box<StepExpect>>,
}

impl StepExpect {
    pub fn for_backend(&self, backend: Backend) -> StepExpect {
        let base = StepExpect {
            libvirt: None,
            ..self.clone()
        };
        if backend != Backend::Libvirt {
            return base;
        }
        let over = self.libvirt.as_deref().cloned().unwrap_or_default();
        StepExpect {
            rules: over.rules.or(base.rules),
            error: over.error.or(base.error),
            l1: over.l1.or(base.l1),
            live: over.live.or(base.live),
            aliased: over.aliased.or(base.aliased),
            l2_guest: over.l2_guest.or(base.l2_guest),
            reset_log: over.reset_log.or(base.reset_log),
            reset_log_lacks: over.reset_log_lacks.or(base.reset_log_lacks),
            libvirt: None,
        }
    }
}

#[derive(Clone, Debug)]
pub struct ScenarioStep {
    pub action: StepAction,
    pub xml_name: String,
    pub xml: String,
    pub expect: StepExpect,
}

impl ScenarioStep {
    pub fn request(&self) -> StepRequest {
        StepRequest {
            action: self.action,
            xml_name: self.xml_name.clone(),
            xml: self.xml.clone(),
        }
    }
}

/// Reads the steps; `here` names a place in the scenario file.
pub fn read_steps(
    path: &Path,
    files: Vec<StepFile>,
    here: &dyn Fn(std::ops::Range<usize>) -> Place,
) -> Result<Vec<ScenarioStep>, ScenarioError> {
    let mut steps = Vec::new();
    for (i, f) in files.into_iter().enumerate() {
        let n = i + 1;
        let mut given = Vec::new();
        if let Some(x) = f.attach {
            given.push((
                StepAction::Attach,
                format!("{}[step {n}]", path.display()),
                x,
            ));
        }
        if let Some(x) = f.detach {
            given.push((
                StepAction::Detach,
                format!("{}[step {n}]", path.display()),
                x,
            ));
        }
        for (action, rel) in [
            (StepAction::Attach, &f.attach_file),
            (StepAction::Detach, &f.detach_file),
        ] {
            if let Some(rel) = rel {
                let file = path.parent().unwrap_or(Path::new(".")).join(rel.get_ref());
                let xml =
                    std::fs::read_to_string(&file).map_err(|source| ScenarioError::StepFile {
                        at: here(rel.span()),
                        n,
                        file: file.clone(),
                        source,
                    })?;
                given.push((action, file.display().to_string(), xml));
            }
        }
        for (wanted, action) in [(f.reset, StepAction::Reset), (f.reboot, StepAction::Reboot)] {
            if wanted {
                given.push((
                    action,
                    format!("{}[step {n}]", path.display()),
                    String::new(),
                ));
            }
        }
        let mut given = given.into_iter();
        let (Some((action, xml_name, xml)), None) = (given.next(), given.next()) else {
            return Err(ScenarioError::StepAction {
                path: path.to_path_buf(),
                n,
            });
        };
        steps.push(ScenarioStep {
            action,
            xml_name,
            xml,
            expect: f.expect,
        });
    }
    Ok(steps)
}

#[cfg(test)]
mod tests {
    use crate::host::scenario::load;
    use lab::protocol::{Backend, StepAction};

    fn write(dir: &std::path::Path, name: &str, text: &str) -> std::path::PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn steps_are_read_in_order_with_files_and_libvirt_overrides() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "audio.xml", "<hostdev/>");
        let p = write(
            dir.path(),
            "s.toml",
            "topology = \"gpu-audio\"\nxml = '<domain/>'\n[[step]]\nattach_file = \"audio.xml\"\n[step.expect]\nrules = [\"R11\"]\nl1 = { \"0000:00:06.1\" = \"vfio-pci\" }\n[step.expect.libvirt]\nrules = []\nerror = \"is not viable\"\n[[step]]\ndetach = '<hostdev/>'\n",
        );
        let s = load(&p, &["gpu-audio"]).unwrap();
        assert_eq!(s.steps.len(), 2);
        assert_eq!(s.steps[0].action, StepAction::Attach);
        assert_eq!(s.steps[0].xml, "<hostdev/>");
        assert!(s.steps[0].xml_name.ends_with("audio.xml"));
        assert_eq!(s.steps[1].action, StepAction::Detach);
        let m = s.steps[0].expect.for_backend(Backend::Mflab);
        assert_eq!(m.rules.unwrap().len(), 1);
        assert_eq!(m.error, None);
        let l = s.steps[0].expect.for_backend(Backend::Libvirt);
        assert_eq!(l.rules.unwrap().len(), 0);
        assert_eq!(l.error.as_deref(), Some("is not viable"));
        assert!(l.l1.unwrap().contains_key(&"0000:00:06.1".parse().unwrap()));
    }

    #[test]
    fn a_step_must_say_one_thing_and_steps_need_a_booted_l2() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "s.toml",
            "topology = \"gpu-audio\"\nxml = '<domain/>'\n[[step]]\nattach = '<a/>'\ndetach = '<a/>'\n",
        );
        let err = load(&p, &["gpu-audio"]).unwrap_err().to_string();
        assert!(
            err.contains("step 1") && err.contains("exactly one"),
            "{err}"
        );
        let p = write(
            dir.path(),
            "t.toml",
            "topology = \"gpu-audio\"\ndepth = \"qmp\"\nxml = '<domain/>'\n[[step]]\nattach = '<a/>'\n",
        );
        let err = load(&p, &["gpu-audio"]).unwrap_err().to_string();
        assert!(err.contains("depth = \"guest\""), "{err}");
        let p = write(
            dir.path(),
            "u.toml",
            "topology = \"gpu-audio\"\nxml = '<domain/>'\n[[step]]\nattach = '<a/>'\n[step.expect]\nl2_gest = []\n",
        );
        let err = load(&p, &["gpu-audio"]).unwrap_err().to_string();
        assert!(
            err.contains("u.toml:6:1") && err.contains("l2_gest"),
            "{err}"
        );
    }
}
