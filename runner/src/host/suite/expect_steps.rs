//! Comparing what held after each scenario step with its expectations:
//! every line names the step, and for drivers the function, the driver
//! expected and the one found.

use lab::protocol::{Backend, RunOutcome, StepOutcome};

use super::expect::{assigned_view, rules_and_error};
use crate::host::scenario_steps::{ScenarioStep, StepExpect};

pub fn compare_steps(steps: &[ScenarioStep], backend: Backend, o: &RunOutcome) -> Vec<String> {
    let mut m = Vec::new();
    for (i, step) in steps.iter().enumerate() {
        let label = format!("step {} ({})", i + 1, step.action);
        let Some(seen) = o.steps.get(i) else {
            m.push(format!(
                "{label}: not carried out (the run ended after {} step(s))",
                o.steps.len()
            ));
            continue;
        };
        for line in compare_step(&step.expect.for_backend(backend), seen) {
            m.push(format!("{label}: {line}"));
        }
    }
    m
}

pub fn compare_step(e: &StepExpect, o: &StepOutcome) -> Vec<String> {
    let mut m = Vec::new();
    rules_and_error(
        e.rules.as_deref(),
        &o.diagnostics,
        e.error.as_deref(),
        o.error.as_deref(),
        &mut m,
    );
    if let Some(want) = &e.l1 {
        for line in super::expect::driver_mismatches(want, &o.l1) {
            m.push(format!("L1: {line}"));
        }
    }
    for (bdf, want) in e.live.iter().flatten() {
        let seen = o
            .live
            .iter()
            .find(|h| &h.host == bdf)
            .map_or("absent", |h| h.address_type.as_str());
        if seen != want {
            m.push(format!(
                "live domain: hostdev {bdf} expected {want}, seen {seen}{}",
                o.live_xml
                    .as_deref()
                    .map(|x| format!("\n{x}"))
                    .unwrap_or_default()
            ));
        }
    }
    for bdf in e.aliased.iter().flatten() {
        if !o.live.iter().any(|h| &h.host == bdf && h.alias.is_some()) {
            m.push(format!("live domain: hostdev {bdf} has no alias"));
        }
    }
    if let Some(want) = &e.l2_guest {
        let mut want = want.clone();
        want.sort();
        if !o.l2_reported {
            m.push(format!(
                "L2: expected {want:?}, but L2's init did not report"
            ));
        } else {
            let seen = assigned_view(&o.l2_guest);
            if want != seen {
                m.push(format!("L2's kernel: expected {want:?}, seen {seen:?}"));
            }
        }
    }
    let log = o.reset_log.join("\n");
    for text in e.reset_log.iter().flatten() {
        if !log.contains(text.as_str()) {
            m.push(format!(
                "reset log: expected {text:?} in it; it says:\n{log}"
            ));
        }
    }
    for text in e.reset_log_lacks.iter().flatten() {
        if log.contains(text.as_str()) {
            m.push(format!("reset log: expected no {text:?}; it says:\n{log}"));
        }
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use lab::protocol::{FunctionRow, StepAction};

    fn row(bdf: &str, driver: &str) -> FunctionRow {
        FunctionRow {
            bdf: bdf.parse().unwrap(),
            vendor: "0x1234".into(),
            device: "0x1111".into(),
            class: "0x038000".into(),
            driver: Some(driver.into()),
            iommu_group: Some(3),
        }
    }

    #[test]
    fn a_wrong_driver_after_a_step_names_the_step_the_function_and_both_drivers() {
        let step = ScenarioStep {
            action: StepAction::Detach,
            xml_name: "s.toml[step 2]".into(),
            xml: String::new(),
            expect: StepExpect {
                l1: Some([("0000:00:06.0".parse().unwrap(), "bochs-drm".to_string())].into()),
                ..Default::default()
            },
        };
        let ok = StepOutcome {
            l2_reported: true,
            ..Default::default()
        };
        let wrong = StepOutcome {
            l1: vec![row("0000:00:06.0", "vfio-pci")],
            ..ok.clone()
        };
        let outcome = RunOutcome {
            steps: vec![ok, wrong],
            ..Default::default()
        };
        let first = ScenarioStep {
            action: StepAction::Attach,
            expect: StepExpect::default(),
            ..step.clone()
        };
        let m = compare_steps(&[first, step.clone()], Backend::Mflab, &outcome);
        assert_eq!(
            m,
            ["step 2 (detach): L1: 0000:00:06.0 expected on bochs-drm, found on vfio-pci"]
        );
        let short = RunOutcome::default();
        let m = compare_steps(&[step], Backend::Mflab, &short);
        assert!(m[0].contains("not carried out"), "{m:?}");
    }
}
