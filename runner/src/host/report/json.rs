//! `mflab run --format json`: one [`RunRecord`] per scenario run, the
//! type `mflab report --compare` reads back.

use std::collections::BTreeMap;
use std::path::PathBuf;

use lab::assign::plan::Plan;
use lab::machine::accel::Accel;
use lab::protocol::{
    fault::{LabFault, LabFaultKind},
    Backend, FunctionRow, GuestFunction, L1Versions, Stage, StepOutcome,
};
use serde::{Deserialize, Serialize};

use crate::host::suite::attempt::ScenarioReport;

/// One scenario run: scenario, repeat (the `--repeat` round, from 1),
/// backend, passed, plan, l1_during, l1_after, l2_qmp, l2_guest, error,
/// restored, mismatches, notes, seconds, timings, work_dir; and
/// `lab_faults`, the kinds of the lab faults that were retried;
/// `lab_fault`, the last attempt's `{kind, detail}` when it was a lab
/// fault with no retry left (the run failed for the lab's reason);
/// `l2_accel`, what L2 ran on inside L1 (`kvm`, `tcg`; null when no L2
/// started); `l1_versions`, `{kernel, qemu, libvirt}` as L1's tools named
/// themselves; `l0_qemu`, the QEMU that ran L1 ("QEMU 10.0.2
/// (backports)"); `steps`, each step's outcome on the running L2 (its
/// error in the backend's words, L1's drivers, the live hostdevs, what L2
/// saw after it); `link`, the link proof (L2's replies, the peer's frames,
/// L1's IOMMU domain, each restored function's use), when asked for. Keys
/// an older mflab did not write read as empty.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunRecord {
    pub scenario: String,
    #[serde(default)]
    pub repeat: usize,
    pub backend: Backend,
    pub passed: bool,
    #[serde(default)]
    pub plan: Option<Plan>,
    #[serde(default)]
    pub l1_during: Vec<FunctionRow>,
    #[serde(default)]
    pub l1_after: Vec<FunctionRow>,
    #[serde(default)]
    pub l2_qmp: Vec<GuestFunction>,
    #[serde(default)]
    pub l2_guest: Vec<GuestFunction>,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub restored: bool,
    #[serde(default)]
    pub mismatches: Vec<String>,
    #[serde(default)]
    pub notes: Vec<String>,
    #[serde(default)]
    pub lab_faults: Vec<LabFaultKind>,
    #[serde(default)]
    pub lab_fault: Option<LabFault>,
    #[serde(default)]
    pub seconds: f64,
    #[serde(default)]
    pub timings: BTreeMap<Stage, f64>,
    #[serde(default)]
    pub work_dir: Option<PathBuf>,
    #[serde(default)]
    pub l2_accel: Option<Accel>,
    #[serde(default)]
    pub l1_versions: Option<L1Versions>,
    #[serde(default)]
    pub l0_qemu: Option<String>,
    #[serde(default)]
    pub steps: Vec<StepOutcome>,
    /// The link proof, when the scenario asked for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<lab::protocol::link::LinkOutcome>,
}

impl From<&ScenarioReport> for RunRecord {
    fn from(r: &ScenarioReport) -> Self {
        let o = &r.outcome;
        let error = o.error.clone().or_else(|| {
            (!o.diagnostics.is_empty()).then(|| {
                o.diagnostics
                    .iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join("\n")
            })
        });
        RunRecord {
            scenario: r.name.clone(),
            repeat: r.repeat,
            backend: r.backend,
            passed: r.passed(),
            plan: o.plan.clone(),
            l1_during: o.l1_during.clone(),
            l1_after: o.l1_after.clone(),
            l2_qmp: o.l2_qmp.clone(),
            l2_guest: o.l2_guest.clone(),
            error,
            restored: o.restored,
            mismatches: r.mismatches.clone(),
            notes: r.notes.clone(),
            lab_faults: r.retried.iter().map(|a| a.fault.kind).collect(),
            lab_fault: r.gave_up.as_ref().map(|g| g.fault.clone()),
            seconds: r.elapsed.as_secs_f64(),
            timings: o.timings.clone(),
            work_dir: r.kept.clone(),
            l2_accel: o.l2_accel,
            l1_versions: o.l1_versions.clone(),
            l0_qemu: r.l0_qemu.clone(),
            steps: o.steps.clone(),
            link: o.link.clone(),
        }
    }
}

/// The JSON object of one run.
pub fn object(r: &ScenarioReport) -> serde_json::Value {
    serde_json::to_value(RunRecord::from(r)).expect("a run record serializes")
}

#[cfg(test)]
mod tests {
    use super::*;
    use lab::protocol::{Depth, RunOutcome};
    use std::time::Duration;

    fn report() -> ScenarioReport {
        ScenarioReport {
            name: "gpu-audio-unassigned".into(),
            repeat: 2,
            notes: vec![],
            retried: vec![],
            gave_up: None,
            backend: Backend::Libvirt,
            depth: Depth::Guest,
            elapsed: Duration::from_millis(1500),
            mismatches: vec![],
            outcome: RunOutcome {
                error: Some("group 3 is not viable".into()),
                ..RunOutcome::default()
            },
            kept: None,
            l0_qemu: Some("QEMU 10.0.2 (backports)".into()),
        }
    }

    #[test]
    fn the_keys_are_those_tools_read() {
        let o = object(&report());
        let keys: Vec<&str> = o.as_object().unwrap().keys().map(|k| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "backend",
                "error",
                "l0_qemu",
                "l1_after",
                "l1_during",
                "l1_versions",
                "l2_accel",
                "l2_guest",
                "l2_qmp",
                "lab_fault",
                "lab_faults",
                "mismatches",
                "notes",
                "passed",
                "plan",
                "repeat",
                "restored",
                "scenario",
                "seconds",
                "steps",
                "timings",
                "work_dir",
            ]
        );
        assert_eq!(o["backend"], "libvirt");
        assert_eq!(o["seconds"], 1.5);
        assert_eq!(o["error"], "group 3 is not viable");
        assert!(o["plan"].is_null() && o["work_dir"].is_null());
    }

    #[test]
    fn a_record_reads_back_and_an_older_one_too() {
        let o = object(&report());
        let back: RunRecord = serde_json::from_value(o.clone()).unwrap();
        assert_eq!(serde_json::to_value(&back).unwrap(), o);
        // Before l0_qemu, steps and the rest: what is missing reads as empty.
        let old = r#"{"scenario": "s", "backend": "mflab", "passed": true, "error": null}"#;
        let old: RunRecord = serde_json::from_str(old).unwrap();
        assert!(old.l0_qemu.is_none() && old.steps.is_empty() && old.l2_guest.is_empty());
    }
}
