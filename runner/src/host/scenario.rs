//! Scenario files (`scenarios/*.toml`): the L1 topology, the domain XML
//! (inline or a path, so a bug report's XML is used as it is), the policy,
//! the depth, and what must hold. A mistake gets the file, line and column.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use lab::assign::plan::{Plan, Policy};
use lab::pci::listing::Place;
use lab::protocol::link::LinkRequest;
use lab::protocol::{Backend, Depth};
use lab::{PciAddress, RuleId};
use serde::Deserialize;
use toml::Spanned;

use crate::host::reported_host::{rewrite::rewrite_sources, LabHost, LabHostError};

/// Why a scenario file gives no scenario, at its place in the file
/// (FILE:LINE:COLUMN) where it has one.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: no such file or directory", path.display())]
    Missing { path: PathBuf },
    /// toml's own text repeats the place with a snippet of the line; the
    /// message alone goes after the place here.
    #[error("{at}: {}", source.message())]
    Toml {
        at: Place,
        #[source]
        source: toml::de::Error,
    },
    #[error("{at}: xml_file {}: {source}", file.display())]
    XmlFile {
        at: Place,
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{at}: give xml or xml_file, not both")]
    XmlTwice { at: Place },
    #[error("{}:1:1: no domain XML: write xml = '''<domain>…''' or xml_file = \"bug.xml\"", path.display())]
    NoXml { path: PathBuf },
    #[error("{at}: give topology or host_file, not both")]
    TopologyTwice { at: Place },
    #[error("{at}: host_file: {source}")]
    HostFile {
        at: Place,
        #[source]
        source: LabHostError,
    },
    #[error("{at}: unknown topology '{name}'; the shipped ones are: {known}")]
    UnknownTopology {
        at: Place,
        name: String,
        known: String,
    },
    #[error("{}:1:1: depth '{depth}' boots L1: give topology = \"gpu-audio\" (or one of {known})", path.display())]
    NoTopology {
        path: PathBuf,
        depth: Depth,
        known: String,
    },
    #[error("{at}: expect.plan is not a plan: {source}; write the JSON `mflab plan --format json` prints")]
    Plan {
        at: Place,
        #[source]
        source: serde_json::Error,
    },
    #[error("{at}: step {n}: {}: {source}", file.display())]
    StepFile {
        at: Place,
        n: usize,
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: step {n}: give exactly one of attach, attach_file, detach, detach_file, reset = true", path.display())]
    StepAction { path: PathBuf, n: usize },
    #[error("{}:1:1: steps run on a booted L2: write depth = \"guest\" (not '{depth}')", path.display())]
    StepsNeedGuest { path: PathBuf, depth: Depth },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScenarioFile {
    #[serde(default)]
    description: String,
    topology: Option<Spanned<String>>,
    /// A reporter's PCI listing: L1's topology is built from it.
    host_file: Option<Spanned<String>>,
    #[serde(default)]
    policy: Policy,
    #[serde(default)]
    depth: Depth,
    xml: Option<String>,
    xml_file: Option<Spanned<String>>,
    #[serde(default)]
    kill_l2: bool,
    /// Functions bound to vfio-pci by hand before the run (managed='no').
    #[serde(default)]
    manual_detach: Vec<PciAddress>,
    /// The backends the suite runs this scenario under (default: mflab).
    #[serde(default = "default_backends")]
    backends: Vec<Backend>,
    #[serde(default)]
    expect: Expect,
    /// Steps on the running L2 (`scenario_steps`).
    #[serde(default, rename = "step")]
    steps: Vec<super::scenario_steps::StepFile>,
    /// The link proof: L1's peer NIC and how many echo requests L2 sends
    /// through the assigned one (`lab::protocol::link`).
    link: Option<LinkRequest>,
}

fn default_backends() -> Vec<Backend> {
    vec![Backend::Mflab]
}

/// What must hold. Absent keys are not checked, except: no rule error, no
/// failure text and every driver restored are expected unless said.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// Rule ids of the errors, in file order.
    pub rules: Option<Vec<RuleId>>,
    /// The plan, as `mflab plan --format json` prints it (JSON in the
    /// file, read into a [`Plan`] when the scenario is loaded).
    #[serde(rename = "plan")]
    plan_json: Option<Spanned<String>>,
    #[serde(skip)]
    pub plan: Option<Plan>,
    /// Drivers in L1 while L2 runs: function -> driver (`none` for no driver).
    pub l1_during: Option<BTreeMap<PciAddress, String>>,
    /// Drivers in L1 after teardown.
    pub l1_after: Option<BTreeMap<PciAddress, String>>,
    /// Whether every function ends on the driver it had (default true).
    pub restored: Option<bool>,
    /// Functions in L2's `query-pci`, as `vendor:device@guest-bdf`, exactly
    /// (the `pc` machine's own slots 0 and 1 aside).
    pub l2_qmp: Option<Vec<String>>,
    /// Functions L2's kernel enumerated, in the same form.
    pub l2_guest: Option<Vec<String>>,
    /// A text the failure must contain (e.g. "is not viable").
    pub error: Option<String>,
    /// With `[link]`: the echo replies L2 must get through the assigned NIC.
    pub link_replies: Option<u32>,
    /// With `[link]`: every restored function with a use test (a NIC's
    /// ARP round trip, an audio function's ALSA card) works on L1 again.
    pub restored_by_use: Option<bool>,
    /// With `host_file`: L1's kernel groups the reported endpoints otherwise
    /// than the report, and that is known (default false: a difference fails).
    pub groups_differ: Option<bool>,
    /// Where libvirt's truth differs: these keys replace the ones above
    /// when the backend is libvirt (libvirt ignores `assigned=`, puts
    /// hostdevs behind its own root ports, lets QEMU find a non-viable group).
    pub libvirt: Option<Box<Expect>>,
    /// Inside `[expect.libvirt]`: where libvirt says otherwise from one
    /// major version on (`[expect.libvirt.version.11]`: 11.x, 12.x, …
    /// until a later table), laid over the libvirt table when L1's
    /// libvirtd is of that version or a later one.
    pub version: Option<BTreeMap<u32, Expect>>,
}

impl Expect {
    /// The expectations for one backend: the common ones, with the
    /// backend's own table laid over them key by key, and for libvirt the
    /// table of the libvirt major version that ran (when it has one).
    pub fn for_backend(&self, backend: Backend) -> Expect {
        self.for_run(backend, None)
    }

    pub fn for_run(&self, backend: Backend, libvirt_major: Option<u32>) -> Expect {
        if backend != Backend::Libvirt {
            return Expect {
                libvirt: None,
                ..self.clone()
            };
        }
        let mut over = self.libvirt.as_deref().cloned().unwrap_or_default();
        // The nearest table at or below the major that ran: what libvirt
        // changed in 11 stays changed in 12 unless 12's table says so.
        if let Some(v) = libvirt_major.and_then(|m| {
            let (_, v) = over.version.as_ref()?.range(..=m).next_back()?;
            Some(v.clone())
        }) {
            over = v.laid_over(over);
        }
        self.with_libvirt(over)
    }

    /// `self`'s keys where it has them, `under`'s elsewhere.
    fn laid_over(self, under: Expect) -> Expect {
        Expect {
            rules: self.rules.or(under.rules),
            plan_json: None,
            plan: None,
            l1_during: self.l1_during.or(under.l1_during),
            l1_after: self.l1_after.or(under.l1_after),
            restored: self.restored.or(under.restored),
            l2_qmp: self.l2_qmp.or(under.l2_qmp),
            l2_guest: self.l2_guest.or(under.l2_guest),
            error: self.error.or(under.error),
            link_replies: self.link_replies.or(under.link_replies),
            restored_by_use: self.restored_by_use.or(under.restored_by_use),
            groups_differ: self.groups_differ.or(under.groups_differ),
            libvirt: None,
            version: None,
        }
    }

    fn with_libvirt(&self, over: Expect) -> Expect {
        Expect {
            rules: over.rules.or_else(|| self.rules.clone()),
            // The plan is mflab's own; libvirt has none to compare.
            plan_json: None,
            plan: over.plan,
            l1_during: over.l1_during.or_else(|| self.l1_during.clone()),
            l1_after: over.l1_after.or_else(|| self.l1_after.clone()),
            restored: over.restored.or(self.restored),
            l2_qmp: over.l2_qmp.or_else(|| self.l2_qmp.clone()),
            l2_guest: over.l2_guest.or_else(|| self.l2_guest.clone()),
            error: over.error.or_else(|| self.error.clone()),
            link_replies: over.link_replies.or(self.link_replies),
            restored_by_use: over.restored_by_use.or(self.restored_by_use),
            groups_differ: over.groups_differ.or(self.groups_differ),
            libvirt: None,
            version: None,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Scenario {
    pub name: String,
    pub description: String,
    pub topology: String,
    /// The reported host L1 is built from (`host_file`), with its host map.
    pub host: Option<LabHost>,
    pub policy: Policy,
    pub depth: Depth,
    pub xml_name: String,
    pub xml: String,
    pub kill_l2: bool,
    pub manual_detach: Vec<PciAddress>,
    pub backends: Vec<Backend>,
    pub expect: Expect,
    pub steps: Vec<super::scenario_steps::ScenarioStep>,
    pub link: Option<LinkRequest>,
}

impl Expect {
    /// Reads the expected plans (this table's and libvirt's) from their
    /// JSON; an error names the place in the scenario file.
    fn read_plans(&mut self, path: &Path, text: &str) -> Result<(), ScenarioError> {
        if let Some(json) = &self.plan_json {
            self.plan = Some(read_plan(path, text, json)?);
        }
        if let Some(libvirt) = &mut self.libvirt {
            libvirt.read_plans(path, text)?;
        }
        Ok(())
    }
}

/// `expect.plan`: JSON inside a TOML string. A JSON error is reported at
/// its place in the file: the string's first character plus the JSON
/// error's line and column.
fn read_plan(path: &Path, text: &str, json: &Spanned<String>) -> Result<Plan, ScenarioError> {
    serde_json::from_str(json.get_ref()).map_err(|source| {
        let span = json.span();
        let raw = &text[span.start.min(text.len())..];
        let quote = if raw.starts_with("'''") || raw.starts_with("\"\"\"") {
            3
        } else {
            1
        };
        let mut content = span.start + quote;
        // A newline right after a triple quote is not part of the string.
        if quote == 3 {
            if text[content..].starts_with("\r\n") {
                content += 2;
            } else if text[content..].starts_with('\n') {
                content += 1;
            }
        }
        let (line, col) = line_col(text, content);
        let (line, col) = if source.line() <= 1 {
            (line, col + source.column().saturating_sub(1))
        } else {
            (line + source.line() - 1, source.column())
        };
        ScenarioError::Plan {
            at: place(path, line, col),
            source,
        }
    })
}

fn place(path: &Path, line: usize, column: usize) -> Place {
    Place {
        file: path.display().to_string(),
        line: line as u32,
        column: column as u32,
    }
}

/// Line and column (1-based) of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, col)
}

pub fn load(path: &Path, known_topologies: &[&str]) -> Result<Scenario, ScenarioError> {
    let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let file: ScenarioFile = toml::from_str(&text).map_err(|source| {
        let (l, c) = source
            .span()
            .map(|s| line_col(&text, s.start))
            .unwrap_or((1, 1));
        ScenarioError::Toml {
            at: place(path, l, c),
            source,
        }
    })?;
    let here = |span: std::ops::Range<usize>| {
        let (l, c) = line_col(&text, span.start);
        place(path, l, c)
    };
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let (xml_name, xml) = match (&file.xml, &file.xml_file) {
        (Some(xml), None) => (format!("{}[xml]", path.display()), xml.clone()),
        (None, Some(rel)) => {
            let xml_path = path.parent().unwrap_or(Path::new(".")).join(rel.get_ref());
            let xml =
                std::fs::read_to_string(&xml_path).map_err(|source| ScenarioError::XmlFile {
                    at: here(rel.span()),
                    file: xml_path.clone(),
                    source,
                })?;
            (xml_path.display().to_string(), xml)
        }
        (Some(_), Some(rel)) => {
            return Err(ScenarioError::XmlTwice {
                at: here(rel.span()),
            })
        }
        (None, None) => {
            return Err(ScenarioError::NoXml {
                path: path.to_path_buf(),
            })
        }
    };
    let mut host = None;
    let mut xml = xml;
    if let Some(rel) = &file.host_file {
        if let Some(t) = &file.topology {
            return Err(ScenarioError::TopologyTwice { at: here(t.span()) });
        }
        let listing = path.parent().unwrap_or(Path::new(".")).join(rel.get_ref());
        let lab = LabHost::load(&listing).map_err(|source| ScenarioError::HostFile {
            at: here(rel.span()),
            source,
        })?;
        xml = rewrite_sources(&xml, &lab).0;
        host = Some(lab);
    }
    let topology = match (&file.topology, file.depth) {
        _ if host.is_some() => host
            .as_ref()
            .map(|h| h.topology.name.clone())
            .unwrap_or_default(),
        (Some(t), _) if !known_topologies.contains(&t.get_ref().as_str()) => {
            return Err(ScenarioError::UnknownTopology {
                at: here(t.span()),
                name: t.get_ref().clone(),
                known: known_topologies.join(", "),
            })
        }
        (Some(t), _) => t.get_ref().clone(),
        (None, Depth::Rules) => String::new(),
        (None, depth) => {
            return Err(ScenarioError::NoTopology {
                path: path.to_path_buf(),
                depth,
                known: known_topologies.join(", "),
            })
        }
    };
    let mut expect = file.expect;
    expect.read_plans(path, &text)?;
    let steps = super::scenario_steps::read_steps(path, file.steps, &here)?;
    if !steps.is_empty() && file.depth != Depth::Guest {
        return Err(ScenarioError::StepsNeedGuest {
            path: path.to_path_buf(),
            depth: file.depth,
        });
    }
    Ok(Scenario {
        name,
        description: file.description,
        topology,
        host,
        policy: file.policy,
        depth: file.depth,
        xml_name,
        xml,
        kill_l2: file.kill_l2,
        manual_detach: file.manual_detach,
        backends: file.backends,
        expect,
        steps,
        link: file.link,
    })
}

/// Scenario files under the given paths (files as they are, directories
/// one level deep), sorted by name.
pub fn discover(paths: &[PathBuf]) -> Result<Vec<PathBuf>, ScenarioError> {
    let mut found = Vec::new();
    for p in paths {
        if p.is_dir() {
            let entries = std::fs::read_dir(p).map_err(|source| ScenarioError::Io {
                path: p.clone(),
                source,
            })?;
            found.extend(
                entries
                    .flatten()
                    .map(|e| e.path())
                    .filter(|f| f.extension().is_some_and(|e| e == "toml")),
            );
        } else if p.exists() {
            found.push(p.clone());
        } else {
            return Err(ScenarioError::Missing { path: p.clone() });
        }
    }
    found.sort();
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn a_misspelt_key_is_reported_with_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "s.toml",
            "topology = \"gpu-audio\"\nxml = '<hostdev/>'\n\n[expect]\nl2_gest = []\n",
        );
        let err = load(&p, &["gpu-audio"]).unwrap_err().to_string();
        assert!(err.contains("s.toml:5:1"), "{err}");
        assert!(err.contains("l2_gest"), "{err}");
    }

    #[test]
    fn an_unknown_topology_names_the_known_ones_and_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "s.toml",
            "xml = '<hostdev/>'\ntopology = \"gpu\"\n",
        );
        let err = load(&p, &["gpu-audio", "bridge"]).unwrap_err().to_string();
        assert!(
            err.contains("s.toml:2:12") && err.contains("gpu-audio, bridge"),
            "{err}"
        );
    }

    #[test]
    fn xml_file_is_read_relative_to_the_scenario() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "bug.xml", "<hostdev/>");
        let p = write(
            dir.path(),
            "s.toml",
            "depth = \"rules\"\nxml_file = \"bug.xml\"\n[expect]\nrules = [\"R11\"]\n",
        );
        let s = load(&p, &[]).unwrap();
        assert_eq!(s.xml, "<hostdev/>");
        assert_eq!(s.expect.rules, Some(vec![RuleId::R11]));
    }

    #[test]
    fn a_bad_rule_id_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "s.toml",
            "depth = \"rules\"\nxml = '<a/>'\n[expect]\nrules = [\"R99\"]\n",
        );
        assert!(load(&p, &[]).unwrap_err().to_string().contains("R99"));
    }

    #[test]
    fn libvirt_expectations_override_key_by_key() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "s.toml", "topology = \"gpu-audio\"\nxml = '<a/>'\nbackends = [\"mflab\", \"libvirt\"]\n[expect]\nrules = [\"R11\"]\nl2_guest = []\n[expect.libvirt]\nrules = []\nerror = \"is not viable\"\n");
        let s = load(&p, &["gpu-audio"]).unwrap();
        assert_eq!(s.backends, [Backend::Mflab, Backend::Libvirt]);
        let m = s.expect.for_backend(Backend::Mflab);
        assert_eq!(
            (m.rules.as_deref(), m.error.as_deref()),
            (Some(&[RuleId::R11][..]), None)
        );
        let l = s.expect.for_backend(Backend::Libvirt);
        assert_eq!(
            (l.rules.as_deref(), l.error.as_deref()),
            (Some(&[][..]), Some("is not viable"))
        );
        assert_eq!(l.l2_guest, Some(vec![]));
    }

    #[test]
    fn a_libvirt_major_versions_table_lays_over_libvirts_from_that_version_on() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "s.toml", "topology = \"gpu-audio\"\nxml = '<a/>'\nbackends = [\"mflab\", \"libvirt\"]\n[expect]\nerror = \"mflab's\"\n[expect.libvirt]\nerror = \"9.0's words\"\nl2_guest = []\n[expect.libvirt.version.11]\nerror = \"11.3's words\"\n");
        let s = load(&p, &["gpu-audio"]).unwrap();
        let error = |e: Expect| e.error.unwrap();
        assert_eq!(
            error(s.expect.for_run(Backend::Libvirt, Some(9))),
            "9.0's words"
        );
        assert_eq!(
            error(s.expect.for_run(Backend::Libvirt, None)),
            "9.0's words"
        );
        let v11 = s.expect.for_run(Backend::Libvirt, Some(11));
        assert_eq!(
            v11.l2_guest,
            Some(vec![]),
            "the libvirt table's other keys stay"
        );
        assert_eq!(error(v11), "11.3's words");
        assert_eq!(
            error(s.expect.for_run(Backend::Libvirt, Some(12))),
            "11.3's words",
            "11's table holds from 11 on"
        );
        assert_eq!(error(s.expect.for_run(Backend::Mflab, Some(11))), "mflab's");
    }

    #[test]
    fn a_malformed_expected_plan_is_an_error_at_its_place() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "s.toml",
            "topology = \"gpu-audio\"\nxml = '<a/>'\n[expect]\nplan = '''\n{\"detach\":[\"0000:00:06.0\"],\n \"asign\":[]}'''\n",
        );
        let err = load(&p, &["gpu-audio"]).unwrap_err().to_string();
        assert!(err.starts_with(&format!("{}:6:", p.display())), "{err}");
        assert!(err.contains("asign"), "{err}");
        let p = write(
            dir.path(),
            "t.toml",
            "topology = \"gpu-audio\"\nxml = '<a/>'\n[expect]\nplan = '{\"detach\": 7}'\n",
        );
        let err = load(&p, &["gpu-audio"]).unwrap_err().to_string();
        assert!(err.starts_with(&format!("{}:4:", p.display())), "{err}");
    }

    #[test]
    fn an_expected_plan_is_typed_at_load() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "s.toml",
            "topology = \"gpu-audio\"\nxml = '<a/>'\n[expect]\nplan = '{\"detach\":[\"0000:00:06.0\"],\"assign\":[],\"unassigned\":[\"0000:00:06.0\"],\"restore\":[{\"host\":\"0000:00:06.0\",\"driver\":null}]}'\nl1_after = { \"0000:00:06.0\" = \"bochs-drm\" }\n",
        );
        let s = load(&p, &["gpu-audio"]).unwrap();
        let plan = s.expect.plan.unwrap();
        assert_eq!(plan.detach, ["0000:00:06.0".parse::<PciAddress>().unwrap()]);
        assert_eq!(plan.restore[0].driver, None);
        assert!(s
            .expect
            .l1_after
            .unwrap()
            .contains_key(&"0000:00:06.0".parse().unwrap()));
    }

    #[test]
    fn vm_depths_need_a_topology() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "s.toml", "xml = '<a/>'\n");
        assert!(load(&p, &[]).unwrap_err().to_string().contains("topology"));
    }
}
