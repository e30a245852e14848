//! One scenario run from the host: on a shared L1 (or one of its own),
//! retried on a fresh L1 when the lab, not the system under test, failed,
//! then compared with the scenario's expectations.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use lab::lab_fault::{LabFault, LabFaultKind};
use lab::machine::accel::AccelChoice;
use lab::protocol::paths::{
    L1_CMDLINE, L1_QEMU_LOG, L1_SERIAL_LOG, L2_INITRD, L2_KERNEL, LIBVIRTD_LOG, SINGLE_REQUEST,
    SINGLE_RESULT, WORK_MOUNT,
};
use lab::protocol::{Backend, Depth, Progress, RunOutcome, RunRequest};
use lab::schema::check::check_text;

use super::expect::compare;
use crate::host::images::L1Images;
use crate::host::l1::boot::{boot, tail, BootError};
use crate::host::l1::cmdline::L1Config;
use crate::host::l1::process::VmError;
use crate::host::l1::shared::L1Slot;
use crate::host::progress::{Event, Observer};
use crate::host::run_error::RunError;
use crate::host::scenario::Scenario;
use crate::host::topology;
use crate::host::workdir::WorkDir;

/// The longest one scenario may take, L1's boot included: L2 itself is
/// given 60 s inside L1 (nested KVM), each virsh call 60 s, the rest takes
/// seconds. The backstop for what those do not catch (a hung L1).
const SCENARIO_TIMEOUT: Duration = Duration::from_secs(240);

/// What each step on a running L2 adds to that: its own waits
/// (`DEVICE_DELETED` 20 s, L2's reports 64 s at most, virsh calls) are shorter;
/// a libvirt step took 10-25 s here on a loaded machine.
const STEP_TIMEOUT: Duration = Duration::from_secs(90);

/// A scenario's deadline: its steps add to it, and a slow KVM (an
/// emulated one, see `Accel::time_scale`) multiplies it.
fn scenario_timeout(s: &Scenario, accel: &AccelChoice) -> Duration {
    (SCENARIO_TIMEOUT + STEP_TIMEOUT * s.steps.len() as u32) * accel.time_scale.max(1)
}

/// Lab-fault retries of one run when `--retries` is not given: three
/// runs at most.
pub const DEFAULT_RETRIES: usize = 2;

/// One attempt the lab, not the system under test, spoiled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FaultedAttempt {
    pub fault: LabFault,
    /// What the attempt cost, from its start to the fault.
    pub elapsed: Duration,
}

/// What one scenario did and whether it held.
pub struct ScenarioReport {
    pub name: String,
    /// Which of the `--repeat` runs of this scenario and backend this is, from 1.
    pub repeat: usize,
    /// What the lab had to do beside the scenario (a retry on a fresh L1).
    pub notes: Vec<String>,
    /// The lab faults that were retried, in order.
    pub retried: Vec<FaultedAttempt>,
    /// The last attempt's lab fault, when the retries ran out on one: the
    /// run failed for the lab's reason, not the system's under test.
    pub gave_up: Option<FaultedAttempt>,
    pub backend: Backend,
    pub depth: Depth,
    pub elapsed: Duration,
    /// Each expectation that did not hold, as "expected … / seen …".
    pub mismatches: Vec<String>,
    pub outcome: RunOutcome,
    /// The work directory, when kept (a failure, or --keep).
    pub kept: Option<PathBuf>,
    /// The QEMU that ran L1 ("QEMU 10.0.2 (backports)"); None at rules depth.
    pub l0_qemu: Option<String>,
}

impl ScenarioReport {
    pub fn passed(&self) -> bool {
        self.mismatches.is_empty()
    }
}

fn single_script() -> String {
    format!(
        "exec {WORK_MOUNT}/mflab agent run --request {WORK_MOUNT}/{SINGLE_REQUEST} --out {WORK_MOUNT}/{SINGLE_RESULT}\n"
    )
}

/// How to run: which backend, and another libvirt build if wanted.
#[derive(Clone, Debug)]
pub struct RunOptions {
    pub backend: Backend,
    pub libvirt_bin: Option<PathBuf>,
    pub keep: bool,
    /// Runs again on a fresh L1 after a lab fault, at most (0: none).
    pub retries: usize,
    /// The `--repeat` round, from 1 (for the report).
    pub repeat: usize,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            backend: Backend::default(),
            libvirt_bin: None,
            keep: false,
            retries: DEFAULT_RETRIES,
            repeat: 1,
        }
    }
}

/// Who hears where a run is: an observer, and the run's number in the suite.
#[derive(Clone, Copy)]
pub struct Watch<'a> {
    pub observer: &'a dyn Observer,
    pub run: usize,
}

impl Watch<'_> {
    pub fn reached(&self, step: Progress) {
        self.observer.event(Event::Reached {
            run: self.run,
            step,
        });
    }
}

/// Runs one scenario. With a slot, on the slot's shared L1 for the
/// scenario's topology; without, on an L1 of its own.
pub fn run_scenario(
    s: &Scenario,
    images: &L1Images,
    accel: &AccelChoice,
    options: &RunOptions,
    mut slot: Option<&mut L1Slot>,
    watch: Watch,
) -> ScenarioReport {
    let progress = &|step| watch.reached(step);
    let mut notes = Vec::new();
    let mut retried = Vec::new();
    let mut gave_up = None;
    // The directories of the attempts that were retried: kept at the end,
    // unless the run was interrupted.
    let start = Instant::now();
    let (outcome, work) = if s.depth == Depth::Rules {
        (rules_outcome(s), None)
    } else {
        // No outcome from L1, or an outcome that blames the lab, means the
        // lab failed, not the system under test: again on a fresh L1, and
        // say so.
        let mut began = Instant::now();
        let mut attempt = run_in_vm(s, images, accel, options, slot.as_deref_mut(), progress);
        let mut retries_left = options.retries;
        while let Some(fault) = lab_failure(&attempt) {
            let faulted = FaultedAttempt {
                fault,
                elapsed: began.elapsed(),
            };
            if retries_left == 0 || crate::interrupt::interrupted() {
                gave_up = Some(faulted);
                break;
            }
            retries_left -= 1;
            // Kept now, as the note says: a fault seen once in 25 runs is
            // evidence, and an interrupt later must not take it.
            let kept = match attempt {
                Ok((_, mut w)) | Err((_, Some(mut w))) => {
                    w.keep();
                    w.describe()
                }
                Err((_, None)) => "(none)".into(),
            };
            let note = format!(
                "{}: {}; ran again on a fresh L1 (that attempt kept in {kept})",
                faulted.fault.kind.name(),
                faulted.fault
            );
            watch.observer.event(Event::Retrying {
                run: watch.run,
                why: &note,
            });
            notes.push(note);
            retried.push(faulted);
            began = Instant::now();
            attempt = run_in_vm(s, images, accel, options, slot.as_deref_mut(), progress);
        }
        match attempt {
            Ok((o, w)) => (o, Some(w)),
            Err((e, w)) => {
                let outcome = RunOutcome {
                    error: Some(format!("L1: {e}")),
                    ..Default::default()
                };
                (outcome, w)
            }
        }
    };
    let libvirt_major = outcome
        .l1_versions
        .as_ref()
        .and_then(|v| v.libvirt_number()?.split('.').next()?.parse().ok());
    let expect = s.expect.for_run(options.backend, libvirt_major);
    let mut mismatches = compare(&expect, &outcome);
    if let Some(host) = s.host.as_ref().filter(|_| !outcome.l1_before.is_empty()) {
        mismatches.extend(crate::host::reported_host::groups::verdict(
            host,
            &outcome.l1_before,
            expect.groups_differ.unwrap_or(false),
            &mut notes,
        ));
    }
    mismatches.extend(super::expect_steps::compare_steps(
        &s.steps,
        options.backend,
        &outcome,
    ));
    if outcome.l1_before.is_empty() && s.depth != Depth::Rules {
        if let Some(w) = &work {
            mismatches.push(format!(
                "L1 gave no outcome; last lines of its serial log:\n{}",
                tail(&w.path().join(L1_SERIAL_LOG), 20)
            ));
        }
    }
    let kept = match work {
        Some(mut w)
            if (options.keep || !mismatches.is_empty()) && !crate::interrupt::interrupted() =>
        {
            Some(w.keep())
        }
        _ => None,
    };
    ScenarioReport {
        name: s.name.clone(),
        repeat: options.repeat,
        notes,
        retried,
        gave_up,
        backend: options.backend,
        depth: s.depth,
        elapsed: start.elapsed(),
        mismatches,
        l0_qemu: (s.depth != Depth::Rules)
            .then(crate::host::l0_qemu::described)
            .flatten(),
        outcome,
        kept,
    }
}

/// Rules depth: the static rules alone, no VM.
fn rules_outcome(s: &Scenario) -> RunOutcome {
    let checked = check_text(&s.xml_name, &s.xml);
    RunOutcome {
        diagnostics: checked
            .diagnostics
            .into_iter()
            .filter(|d| d.is_error())
            .collect(),
        restored: true,
        ..Default::default()
    }
}

type VmResult = Result<(RunOutcome, WorkDir), (RunError, Option<WorkDir>)>;

/// The lab fault of an attempt, when the lab is to blame for it.
fn lab_failure(attempt: &VmResult) -> Option<LabFault> {
    match attempt {
        Err((e, _)) => e.lab_fault().cloned(),
        Ok((outcome, _)) => outcome.lab_fault.clone(),
    }
}

fn run_in_vm(
    s: &Scenario,
    images: &L1Images,
    accel: &AccelChoice,
    options: &RunOptions,
    slot: Option<&mut L1Slot>,
    progress: &dyn Fn(Progress),
) -> VmResult {
    let topology =
        topology::load(&s.topology).map_err(|e| (RunError::Setup(e.to_string()), None))?;
    let work = WorkDir::new("mflab-run-").map_err(|e| (RunError::from(e), None))?;
    let request = RunRequest {
        xml_name: s.xml_name.clone(),
        xml: s.xml.clone(),
        policy: s.policy,
        depth: s.depth,
        kill_l2: s.kill_l2,
        manual_detach: s.manual_detach.clone(),
        l2_kernel: L2_KERNEL.into(),
        l2_initrd: L2_INITRD.into(),
        backend: options.backend,
        libvirt_bin: options.libvirt_bin.clone(),
        steps: s.steps.iter().map(|step| step.request()).collect(),
        link: s.link.clone(),
    };
    if let Err(e) = std::fs::write(
        work.path().join(SINGLE_REQUEST),
        serde_json::to_string_pretty(&request).expect("request serializes"),
    ) {
        return Err((e.into(), Some(work)));
    }
    if let Some(slot) = slot {
        return match slot.run(
            &s.topology,
            images,
            accel,
            &request,
            scenario_timeout(s, accel),
            progress,
        ) {
            Ok(served) => {
                gather_into(&served.dir, &work);
                Ok((served.outcome, work))
            }
            Err((e, failed)) => {
                // The scenario's files are copied; the L1's directory
                // (its logs from boot on) goes, or stays, with them.
                let mut work = work;
                if let Some(failed) = failed {
                    gather_into(&failed.scenario_dir, &work);
                    work.adopt(failed.l1_dir);
                }
                Err((e, Some(work)))
            }
        };
    }
    progress(Progress::L1Booting);
    let config = L1Config::new(&topology, images, accel, work.path());
    if let Err(e) = boot(&config, &single_script(), scenario_timeout(s, accel)) {
        let log = std::fs::read_to_string(work.path().join(L1_SERIAL_LOG)).unwrap_or_default();
        let serial = tail(&work.path().join(L1_SERIAL_LOG), 15);
        let error = match e {
            _ if e.interrupted() => RunError::Interrupted,
            BootError::Vm(VmError::L1Stalled(fault)) => RunError::lab(fault, serial),
            _ => crate::host::l1::shared::l1_exit_error(
                &log,
                &std::fs::read_to_string(work.path().join(L1_QEMU_LOG)).unwrap_or_default(),
                &e.to_string(),
                serial,
            ),
        };
        return Err((error, Some(work)));
    }
    let result = work.path().join(SINGLE_RESULT);
    match lab::protocol::mailbox::read_json_if_present::<RunOutcome>(&result) {
        Some(Ok(outcome)) => Ok((outcome, work)),
        Some(Err(e)) => Err((bad_result(e.to_string()), Some(work))),
        None => Err((
            bad_result("the agent left no result.json".into()),
            Some(work),
        )),
    }
}

fn bad_result(why: String) -> RunError {
    RunError::lab(LabFault::new(LabFaultKind::L1BadResult, why), "")
}

/// Copies a scenario's files (and the shared L1's serial log and command
/// line, from the directory above) into the scenario's own work directory,
/// so that a kept directory holds everything about that one scenario.
fn gather_into(from: &std::path::Path, work: &WorkDir) {
    let parent = from.parent();
    let shared = [L1_SERIAL_LOG, L1_CMDLINE, L1_QEMU_LOG, LIBVIRTD_LOG];
    let files = std::fs::read_dir(from)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file());
    let l1_files = shared.iter().filter_map(|f| parent.map(|p| p.join(f)));
    for path in files.chain(l1_files) {
        if let Some(name) = path.file_name() {
            let _ = std::fs::copy(&path, work.path().join(name));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lab::lab_fault::of_silent_guest;

    #[test]
    fn only_the_labs_own_failures_are_run_again() {
        let work = || WorkDir::new("mflab-test-").expect("temp dir");
        let no_l1: VmResult = Err((
            RunError::lab(
                LabFault::new(LabFaultKind::L1NotReady, "L1 (gpu-audio): not ready"),
                "serial...",
            ),
            None,
        ));
        assert_eq!(lab_failure(&no_l1).unwrap().kind, LabFaultKind::L1NotReady);
        let silent_l2 = RunOutcome {
            error: Some(lab::protocol::guest_report::REPORT_CUT_SHORT.into()),
            lab_fault: of_silent_guest(""),
            ..Default::default()
        };
        assert_eq!(
            lab_failure(&Ok((silent_l2, work()))).unwrap().kind,
            LabFaultKind::L2Silent
        );
        // A failure of the system under test is the scenario's result.
        let refused = RunOutcome {
            error: Some("vfio 0000:00:06.1: group 7 is not viable".into()),
            ..Default::default()
        };
        assert_eq!(lab_failure(&Ok((refused, work()))), None);
        // So are an interrupt and a setup failure: neither is retried.
        assert_eq!(lab_failure(&Err((RunError::Interrupted, None))), None);
        assert_eq!(
            lab_failure(&Err((RunError::Setup("disk full".into()), None))),
            None
        );
    }

    #[test]
    fn a_scenario_s_files_and_its_l1_s_logs_are_gathered_not_the_l1_s_binary() {
        let l1 = WorkDir::new("mflab-test-").expect("temp dir");
        std::fs::write(l1.path().join(L1_SERIAL_LOG), "L1 booted").unwrap();
        std::fs::write(l1.path().join("mflab"), "the agent binary").unwrap();
        let scenario = l1.path().join("s3");
        std::fs::create_dir(&scenario).unwrap();
        std::fs::write(scenario.join("progress"), "\"bind-done\"").unwrap();
        let work = WorkDir::new("mflab-test-").expect("temp dir");
        gather_into(&scenario, &work);
        let read = |name: &str| std::fs::read_to_string(work.path().join(name)).ok();
        assert_eq!(read("progress").as_deref(), Some("\"bind-done\""));
        assert_eq!(read(L1_SERIAL_LOG).as_deref(), Some("L1 booted"));
        assert_eq!(read("mflab"), None);
    }
}
