//! The summary at the end of `mflab run`'s text report: how many runs
//! passed, how many failed with the system under test to blame and how
//! many because the lab's retries ran out, and what the lab faults cost,
//! by kind. With `--repeat` it says how flaky the lab is.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Duration;

use lab::lab_fault::LabFaultKind;

use crate::host::suite::attempt::ScenarioReport;

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub runs: usize,
    pub passed: usize,
    /// Failed runs whose last attempt gave an outcome: the system under
    /// test (or the expectations) failed.
    pub failed: usize,
    /// Failed runs whose last attempt was a lab fault (no retry left).
    pub lab_failed: usize,
    /// Every attempt that was a lab fault, retried or not, by kind.
    pub faults: BTreeMap<LabFaultKind, KindCost>,
}

/// What one kind of lab fault cost.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct KindCost {
    pub count: usize,
    /// The attempts' elapsed time, summed.
    pub cost: Duration,
    /// L1 panics by their first line, with how often each was seen.
    pub panics: BTreeMap<String, usize>,
}

pub fn of(reports: &[ScenarioReport]) -> Summary {
    let mut s = Summary {
        runs: reports.len(),
        ..Default::default()
    };
    for r in reports {
        match (r.passed(), &r.gave_up) {
            (true, _) => s.passed += 1,
            (false, Some(_)) => s.lab_failed += 1,
            (false, None) => s.failed += 1,
        }
        for attempt in r.retried.iter().chain(&r.gave_up) {
            let kind = s.faults.entry(attempt.fault.kind).or_default();
            kind.count += 1;
            kind.cost += attempt.elapsed;
            if let Some(line) = &attempt.fault.panic_line {
                *kind.panics.entry(line.clone()).or_default() += 1;
            }
        }
    }
    s
}

pub fn render(s: &Summary) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "summary: {} run(s): {} passed, {} failed (system under test), {} failed (lab fault, no retry left)",
        s.runs, s.passed, s.failed, s.lab_failed
    );
    let count: usize = s.faults.values().map(|k| k.count).sum();
    if count == 0 {
        let _ = writeln!(t, "lab faults: none");
        return t;
    }
    let cost: Duration = s.faults.values().map(|k| k.cost).sum();
    let _ = writeln!(t, "lab faults: {count}, costing {:.1}s", cost.as_secs_f64());
    for (kind, k) in &s.faults {
        let _ = writeln!(
            t,
            "  {}: {}, {:.1}s",
            kind.name(),
            k.count,
            k.cost.as_secs_f64()
        );
        for (line, n) in &k.panics {
            let _ = writeln!(t, "    {n}x {line}");
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::suite::attempt::FaultedAttempt;
    use lab::lab_fault::{of_l1_exit, LabFault};
    use lab::protocol::{Backend, Depth, RunOutcome};

    fn report(mismatches: &[&str], retried: Vec<FaultedAttempt>) -> ScenarioReport {
        ScenarioReport {
            name: "gpu-audio-partial".into(),
            repeat: 1,
            notes: vec![],
            retried,
            gave_up: None,
            backend: Backend::Mflab,
            depth: Depth::Guest,
            elapsed: Duration::from_secs(30),
            mismatches: mismatches.iter().map(|m| m.to_string()).collect(),
            outcome: RunOutcome::default(),
            kept: None,
            l0_qemu: Some("QEMU 10.0.2 (backports)".into()),
        }
    }

    fn attempt(fault: LabFault, secs: u64) -> FaultedAttempt {
        FaultedAttempt {
            fault,
            elapsed: Duration::from_secs(secs),
        }
    }

    fn silent(secs: u64) -> FaultedAttempt {
        attempt(
            LabFault::new(LabFaultKind::L2Silent, "L2 never spoke"),
            secs,
        )
    }

    fn panic(secs: u64, line: &str) -> FaultedAttempt {
        let log = format!("[    1.0] ok\n[   12.5] {line}\n[   12.5] CPU: 1\n");
        attempt(of_l1_exit(&log, "L1 stopped during the scenario"), secs)
    }

    #[test]
    fn runs_are_told_apart_by_who_failed_and_faults_are_counted_with_their_cost() {
        let lockup = "watchdog: BUG: soft lockup - CPU#1 stuck for 22s! [qemu-system-x86]";
        let mut gave_up = report(&["L1 gave no outcome"], vec![silent(20), silent(25)]);
        gave_up.gave_up = Some(panic(40, lockup));
        let reports = [
            report(&[], vec![]),
            report(&[], vec![panic(10, lockup)]),
            report(&["l2_guest: expected [1af4:1000], seen []"], vec![]),
            gave_up,
            report(
                &[],
                vec![panic(5, "Kernel panic - not syncing: Fatal exception")],
            ),
        ];
        let s = of(&reports);
        assert_eq!((s.runs, s.passed, s.failed, s.lab_failed), (5, 3, 1, 1));
        let panics = &s.faults[&LabFaultKind::L1Panic];
        assert_eq!((panics.count, panics.cost), (3, Duration::from_secs(55)));
        assert_eq!(panics.panics[lockup], 2);
        let silent = &s.faults[&LabFaultKind::L2Silent];
        assert_eq!((silent.count, silent.cost), (2, Duration::from_secs(45)));
        assert_eq!(s.faults.len(), 2);

        let text = render(&s);
        assert_eq!(
            text,
            "summary: 5 run(s): 3 passed, 1 failed (system under test), 1 failed (lab fault, no retry left)\n\
             lab faults: 5, costing 100.0s\n\
             \x20 L1 panic: 3, 55.0s\n\
             \x20   1x Kernel panic - not syncing: Fatal exception\n\
             \x20   2x watchdog: BUG: soft lockup - CPU#1 stuck for 22s! [qemu-system-x86]\n\
             \x20 L2 silent: 2, 45.0s\n"
        );
    }

    #[test]
    fn a_clean_run_says_no_lab_fault() {
        let text = render(&of(&[report(&[], vec![])]));
        assert!(text.ends_with("lab faults: none\n"), "{text}");
    }
}
