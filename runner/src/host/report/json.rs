//! `mflab run --format json`: one object per scenario run.

use serde_json::json;

use crate::host::suite::attempt::ScenarioReport;

/// scenario, repeat (the `--repeat` round, from 1), backend, passed, plan, l1_during, l1_after, l2_qmp, l2_guest,
/// error, restored, mismatches, notes, seconds, timings, work_dir; and
/// `lab_faults`, the kinds of the lab faults that were retried; `l2_accel`,
/// what L2 ran on inside L1 (`kvm`, `tcg`; null when no L2 started);
/// `l1_versions`, `{kernel, qemu, libvirt}` as L1's tools named themselves;
/// `l0_qemu`, the QEMU that ran L1 ("QEMU 10.0.2 (backports)");
/// `steps`, each step's outcome on the running L2 (its error in the
/// backend's words, L1's drivers, the live hostdevs, what L2 saw after it).
pub fn object(r: &ScenarioReport) -> serde_json::Value {
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
    json!({
        "scenario": r.name,
        "repeat": r.repeat,
        "backend": r.backend,
        "passed": r.passed(),
        "plan": o.plan,
        "l1_during": o.l1_during,
        "l1_after": o.l1_after,
        "l2_qmp": o.l2_qmp,
        "l2_guest": o.l2_guest,
        "error": error,
        "restored": o.restored,
        "mismatches": r.mismatches,
        "notes": r.notes,
        "lab_faults": r.retried.iter().map(|a| a.fault.kind).collect::<Vec<_>>(),
        "seconds": r.elapsed.as_secs_f64(),
        "timings": o.timings,
        "work_dir": r.kept,
        "l2_accel": o.l2_accel,
        "l1_versions": o.l1_versions,
        "l0_qemu": r.l0_qemu,
        "steps": o.steps,
    })
}
