//! `mflab run --junit FILE`: JUnit XML for CI dashboards, written with
//! `quick-junit` (nextest's). A run that passed after a lab fault was
//! retried is flaky: each retried attempt is a `<flakyFailure>`; a run
//! that failed after retries carries them as `<rerunFailure>`, as Maven
//! Surefire and nextest write them.

use quick_junit::{
    NonSuccessKind, Property, Report, TestCase, TestCaseStatus, TestRerun, TestSuite,
};

use crate::host::images::Userland;
use crate::host::suite::attempt::ScenarioReport;

/// Under `--repeat` each case is named "SCENARIO #ROUND", so that the
/// rounds stay apart; under `--release` other than host, "SCENARIO
/// [debian-13]", so that one dashboard keeps the releases apart.
pub fn render(reports: &[ScenarioReport], userland: Userland) -> String {
    let repeated = reports.iter().any(|r| r.repeat > 1);
    let mut suite = TestSuite::new("mflab");
    let total: std::time::Duration = reports.iter().map(|r| r.elapsed).sum();
    suite.set_time(total);
    // The versions that ran, as the suite's properties: the same for every case.
    if let Some(q) = reports.iter().find_map(|r| r.l0_qemu.as_deref()) {
        suite.add_property(Property::new("l0_qemu", q));
    }
    if let Some(v) = reports.iter().find_map(|r| r.outcome.l1_versions.as_ref()) {
        suite.add_property(Property::new("l1_kernel", v.kernel.as_str()));
        suite.add_property(Property::new("l1_qemu", v.qemu.as_str()));
        suite.add_property(Property::new("l1_libvirt", v.libvirt.as_str()));
    }
    for r in reports {
        let mut status = if r.passed() {
            TestCaseStatus::success()
        } else {
            let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
            s.set_message(r.mismatches[0].lines().next().unwrap_or(""));
            s.set_description(r.mismatches.join("\n"));
            // Failed for the lab's reason: the type says so, as a rerun's does.
            if let Some(g) = &r.gave_up {
                s.set_type(format!("lab fault: {}", g.fault.kind.name()));
            }
            s
        };
        for (attempt, note) in r.retried.iter().zip(&r.notes) {
            let mut rerun = TestRerun::new(NonSuccessKind::Failure);
            rerun.set_type(format!("lab fault: {}", attempt.fault.kind.name()));
            rerun.set_message(attempt.fault.detail.clone());
            rerun.set_description(note.clone());
            rerun.set_time(attempt.elapsed);
            status.add_rerun(rerun);
        }
        let mut name = match repeated {
            true => format!("{} #{}", r.name, r.repeat),
            false => r.name.clone(),
        };
        if userland != Userland::Host {
            name = format!("{name} [{}]", userland.name());
        }
        let mut case = TestCase::new(name, status);
        case.set_classname(format!("scenario.{}", r.backend));
        case.set_time(r.elapsed);
        // What the run proved beyond enumeration, as a property of its case.
        if let Some(link) = &r.outcome.link {
            case.add_property(Property::new("proven", link.summary()));
        }
        if let Some(dir) = &r.kept {
            case.set_system_out(format!("work directory: {}", dir.display()));
        }
        suite.add_test_case(case);
    }
    let mut report = Report::new("mflab");
    report.add_test_suite(suite);
    report.to_string().expect("JUnit XML serializes")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::suite::attempt::FaultedAttempt;
    use lab::lab_fault::{LabFault, LabFaultKind};
    use lab::protocol::{Backend, Depth, RunOutcome};
    use std::time::Duration;

    fn report(name: &str, mismatches: Vec<String>, retried: usize) -> ScenarioReport {
        let fault = FaultedAttempt {
            fault: LabFault::new(
                LabFaultKind::L2Silent,
                "L2 was resumed but its init never printed a line",
            ),
            elapsed: Duration::from_secs(20),
        };
        ScenarioReport {
            name: name.into(),
            repeat: 1,
            notes: (0..retried)
                .map(|i| format!("L2 silent: …; ran again on a fresh L1 (that attempt kept in /tmp/mflab-run-{i})"))
                .collect(),
            retried: vec![fault; retried],
            gave_up: None,
            backend: Backend::Libvirt,
            depth: Depth::Guest,
            elapsed: Duration::from_millis(1500),
            mismatches,
            outcome: RunOutcome::default(),
            kept: None,
            l0_qemu: Some("QEMU 10.0.2 (backports)".into()),
        }
    }

    #[test]
    fn a_pass_after_a_retry_is_flaky_and_a_failure_after_retries_says_so() {
        let xml = render(
            &[
                report("clean", vec![], 0),
                report("flaky", vec![], 1),
                report("broken", vec!["l2_guest: expected [], seen [x]".into()], 2),
            ],
            Userland::Host,
        );
        assert!(
            xml.contains("tests=\"3\"") && xml.contains("failures=\"1\""),
            "{xml}"
        );
        assert!(xml.contains("classname=\"scenario.libvirt\""), "{xml}");
        assert_eq!(xml.matches("<flakyFailure").count(), 1, "{xml}");
        assert_eq!(xml.matches("<rerunFailure").count(), 2, "{xml}");
        assert!(xml.contains("type=\"lab fault: L2 silent\""), "{xml}");
        assert!(
            xml.contains("/tmp/mflab-run-0"),
            "the kept attempt is named: {xml}"
        );
        assert!(
            xml.contains("<failure message=\"l2_guest: expected [], seen [x]\""),
            "{xml}"
        );
    }

    #[test]
    fn a_failure_on_a_lab_fault_with_no_retry_left_is_named_one_everywhere() {
        let mut r = report(
            "gave-up",
            vec!["error: expected none, seen: L2 powered off".into()],
            0,
        );
        r.gave_up = Some(FaultedAttempt {
            fault: LabFault::new(
                LabFaultKind::L2Reset,
                "L2 reset itself before its init spoke",
            ),
            elapsed: Duration::from_secs(6),
        });
        let xml = render(std::slice::from_ref(&r), Userland::Host);
        assert!(xml.contains("type=\"lab fault: L2 reset\""), "{xml}");
        let json = crate::host::report::json::object(&r);
        assert_eq!(json["lab_fault"]["kind"], "l2-reset", "{json}");
        let known: Vec<&str> = crate::host::topology::BUILTIN
            .iter()
            .map(|(n, _)| *n)
            .collect();
        let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../scenarios/gpu-audio-unassigned.toml");
        let scenario = crate::host::scenario::load(&file, &known).unwrap();
        let text = crate::host::report::text::render(&scenario, &r, Default::default());
        assert!(
            text.contains(
                "    lab fault, no retry left: L2 reset: L2 reset itself before its init spoke\n"
            ),
            "{text}"
        );
        // A failure of the system under test has no such type.
        r.gave_up = None;
        let xml = render(&[r], Userland::Host);
        assert!(!xml.contains("lab fault"), "{xml}");
    }

    #[test]
    fn the_suite_names_l0_s_qemu_and_l1_s_versions() {
        let mut r = report("clean", vec![], 0);
        r.outcome.l1_versions = Some(lab::protocol::L1Versions {
            kernel: "6.1.0-41-amd64".into(),
            qemu: "QEMU emulator version 7.2.22".into(),
            libvirt: "libvirtd (libvirt) 9.0.0".into(),
        });
        let xml = render(&[r], Userland::Host);
        assert!(
            xml.contains("<property name=\"l0_qemu\" value=\"QEMU 10.0.2 (backports)\"/>"),
            "{xml}"
        );
        assert!(
            xml.contains("<property name=\"l1_libvirt\" value=\"libvirtd (libvirt) 9.0.0\"/>"),
            "{xml}"
        );
        let mut rules = report("rules", vec![], 0);
        rules.l0_qemu = None;
        assert!(!render(&[rules], Userland::Host).contains("l0_qemu"));
    }

    #[test]
    fn repeated_rounds_are_cases_of_their_own() {
        let mut second = report("flaky", vec![], 0);
        second.repeat = 2;
        let xml = render(&[report("flaky", vec![], 0), second], Userland::Host);
        assert!(
            xml.contains("name=\"flaky #1\"") && xml.contains("name=\"flaky #2\""),
            "{xml}"
        );
    }

    #[test]
    fn a_release_other_than_the_host_s_is_in_the_name() {
        let release = Userland::parse("debian-13").unwrap();
        let xml = render(&[report("gpu-audio-unassigned", vec![], 0)], release);
        assert!(
            xml.contains("name=\"gpu-audio-unassigned [debian-13]\""),
            "{xml}"
        );
    }
}
