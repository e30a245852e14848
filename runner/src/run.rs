//! Running one scenario from the host (L0): boot L1 on its topology with
//! the agent, collect the agent's outcome, compare with the expectations.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use lab::check::check_text;
use lab::outcome::{Backend, Depth, GuestFunction, RunOutcome, RunRequest};

use crate::accel::AccelChoice;
use crate::images::L1Images;
use crate::l1::{boot, tail, L1Config, WorkDir, SERIAL_LOG};
use crate::scenario::{Expect, Scenario};
use crate::shared_l1::L1Pool;
use crate::topology;

/// The longest one scenario may take, L1's boot included: L2 itself is
/// given 60 s inside L1 (nested KVM), each virsh call 60 s, the rest takes
/// seconds. The backstop for what those do not catch (a hung L1).
const SCENARIO_TIMEOUT: Duration = Duration::from_secs(240);

/// Runs of one scenario at most when the lab fails (see `run_scenario`).
const ATTEMPTS: usize = 3;

/// What one scenario did and whether it held.
pub struct ScenarioReport {
    pub name: String,
    /// What the lab had to do beside the scenario (a retry on a fresh L1).
    pub notes: Vec<String>,
    pub backend: Backend,
    pub depth: Depth,
    pub elapsed: Duration,
    /// Each expectation that did not hold, as "expected … / seen …".
    pub mismatches: Vec<String>,
    pub outcome: RunOutcome,
    /// The work directory, when kept (a failure, or --keep).
    pub kept: Option<PathBuf>,
}

impl ScenarioReport {
    pub fn passed(&self) -> bool {
        self.mismatches.is_empty()
    }
}

const AGENT_SCRIPT: &str =
    "exec /mflab/mflab agent run --request /mflab/request.json --out /mflab/result.json\n";

/// How to run: which backend, and another libvirt build if wanted.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    pub backend: Backend,
    pub libvirt_bin: Option<PathBuf>,
    pub keep: bool,
}

/// Runs one scenario. With a pool, on the pool's shared L1 for the
/// scenario's topology; without, on an L1 of its own.
pub fn run_scenario(
    s: &Scenario,
    images: &L1Images,
    accel: &AccelChoice,
    options: &RunOptions,
    mut pool: Option<&mut L1Pool>,
) -> ScenarioReport {
    let mut notes = Vec::new();
    let keep = options.keep;
    let start = Instant::now();
    let (outcome, work) = if s.depth == Depth::Rules {
        let checked = check_text(&s.xml_name, &s.xml);
        let outcome = RunOutcome {
            diagnostics: checked
                .diagnostics
                .into_iter()
                .filter(|d| d.is_error())
                .collect(),
            restored: true,
            ..Default::default()
        };
        (outcome, None)
    } else {
        // No outcome from L1, or an outcome that blames the lab, means the
        // lab failed, not the system under test (seen: QEMU 7.2's TCG
        // segfaulting under nested SVM, L1's idle task finding its stack
        // corrupted, an L2 reset before its init; once two in a row): again
        // on a fresh L1, and say so.
        let mut attempt = run_in_vm(s, images, accel, options, pool.as_deref_mut());
        for _ in 1..ATTEMPTS {
            let Some(fault) = lab_failure(&attempt) else {
                break;
            };
            if crate::interrupt::interrupted() {
                break;
            }
            let kept = match attempt {
                Ok((_, mut w)) | Err((_, Some(mut w))) => w.keep().display().to_string(),
                Err((_, None)) => "(none)".into(),
            };
            notes.push(format!(
                "{fault}; ran again on a fresh L1 (that attempt kept in {kept})"
            ));
            attempt = run_in_vm(s, images, accel, options, pool.as_deref_mut());
        }
        match attempt {
            Ok((o, w)) => (o, Some(w)),
            Err((e, w)) => {
                let outcome = RunOutcome {
                    error: Some(e),
                    ..Default::default()
                };
                (outcome, w)
            }
        }
    };
    let mut mismatches = compare(&s.expect.for_backend(options.backend), &outcome);
    if outcome.l1_before.is_empty() && s.depth != Depth::Rules {
        if let Some(w) = &work {
            mismatches.push(format!(
                "L1 gave no outcome; last lines of its serial log:\n{}",
                tail(&w.path().join(SERIAL_LOG), 20)
            ));
        }
    }
    let kept = match work {
        // An interrupted run is not a failure to keep: its directory goes.
        Some(mut w) if (keep || !mismatches.is_empty()) && !crate::interrupt::interrupted() => {
            Some(w.keep())
        }
        _ => None,
    };
    ScenarioReport {
        name: s.name.clone(),
        notes,
        backend: options.backend,
        depth: s.depth,
        elapsed: start.elapsed(),
        mismatches,
        outcome,
        kept,
    }
}

type VmResult = Result<(RunOutcome, WorkDir), (String, Option<WorkDir>)>;

/// Why an attempt failed for the lab's sake, when it did.
fn lab_failure(attempt: &VmResult) -> Option<String> {
    match attempt {
        Err((e, _)) => Some(format!(
            "L1 failed ({})",
            e.lines().next().unwrap_or_default()
        )),
        Ok((outcome, _)) => outcome.lab_fault.clone(),
    }
}

fn run_in_vm(
    s: &Scenario,
    images: &L1Images,
    accel: &AccelChoice,
    options: &RunOptions,
    pool: Option<&mut L1Pool>,
) -> VmResult {
    let topology = topology::load(&s.topology).map_err(|e| (e.to_string(), None))?;
    let work = WorkDir::new("mflab-run-").map_err(|e| (e.to_string(), None))?;
    let fail = |e: String, w: WorkDir| Err((e, Some(w)));
    // L1's init binds L2's kernel and initramfs at /l2 (see l1.rs).
    let request = RunRequest {
        xml_name: s.xml_name.clone(),
        xml: s.xml.clone(),
        policy: s.policy,
        depth: s.depth,
        kill_l2: s.kill_l2,
        manual_detach: s.manual_detach.clone(),
        l2_kernel: "/l2/vmlinux".into(),
        l2_initrd: "/l2/initrd".into(),
        backend: options.backend,
        libvirt_bin: options.libvirt_bin.clone(),
    };
    if let Err(e) = std::fs::write(
        work.path().join("request.json"),
        serde_json::to_string_pretty(&request).expect("request serializes"),
    ) {
        return fail(e.to_string(), work);
    }
    if let Some(pool) = pool {
        return match pool.run(&s.topology, images, accel, &request, SCENARIO_TIMEOUT) {
            Ok(served) => {
                gather_into(&served.dir, &work);
                Ok((served.outcome, work))
            }
            Err((e, l1_dir)) => {
                if let Some(dir) = l1_dir {
                    gather_into(&dir, &work);
                }
                fail(format!("L1: {e}"), work)
            }
        };
    }
    let config = L1Config::new(&topology, images, accel, work.path());
    if let Err(e) = boot(&config, AGENT_SCRIPT, SCENARIO_TIMEOUT) {
        return fail(format!("L1: {e}"), work);
    }
    let result = work.path().join("result.json");
    match std::fs::read_to_string(&result)
        .map_err(|e| e.to_string())
        .and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string()))
    {
        Ok(outcome) => Ok((outcome, work)),
        Err(e) => fail(
            format!("the agent left no readable result.json ({e})"),
            work,
        ),
    }
}

/// Copies a scenario's files (and the shared L1's serial log and command
/// line, from the directory above) into the scenario's own work directory,
/// so that a kept directory holds everything about that one scenario.
fn gather_into(from: &std::path::Path, work: &WorkDir) {
    let parent = from.parent();
    let shared = [
        crate::l1::SERIAL_LOG,
        crate::l1::CMDLINE_FILE,
        "l1-qemu.log",
    ];
    let files = std::fs::read_dir(from)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path());
    let l1_files = shared.iter().filter_map(|f| parent.map(|p| p.join(f)));
    for path in files.chain(l1_files) {
        if let Some(name) = path.file_name() {
            let _ = std::fs::copy(&path, work.path().join(name));
        }
    }
}

/// What a scenario asserts of L2's view: the functions it was given. The
/// machine's own are left out: bus 0 slots 0 and 1 (i440fx and PIIX on
/// mflab's `pc` L2), slot 0x1f (ICH9 on libvirt's q35), and every bridge
/// (libvirt's pcie-root-ports).
pub fn assigned_view(list: &[GuestFunction]) -> Vec<String> {
    let own = |f: &GuestFunction| {
        let chipset = ["0000:00:00.", "0000:00:01.", "0000:00:1f."]
            .iter()
            .any(|p| f.bdf.starts_with(p));
        let bridge = f.class.starts_with("0x0604");
        chipset || bridge
    };
    let mut keys: Vec<String> = list
        .iter()
        .filter(|f| !own(f))
        .map(GuestFunction::key)
        .collect();
    keys.sort();
    keys
}

pub fn compare(e: &Expect, o: &RunOutcome) -> Vec<String> {
    let mut m = Vec::new();
    let seen_rules: Vec<String> = o.diagnostics.iter().map(|d| d.rule.to_string()).collect();
    let want_rules: Vec<String> = e.rules.iter().flatten().map(|r| r.to_string()).collect();
    if seen_rules != want_rules {
        let detail: Vec<String> = o.diagnostics.iter().map(|d| d.to_string()).collect();
        m.push(format!(
            "rule errors: expected {want_rules:?}, seen {seen_rules:?}\n{}",
            detail.join("\n")
        ));
    }
    match (&e.error, &o.error) {
        (None, Some(seen)) => m.push(format!("error: expected none, seen: {seen}")),
        (Some(want), None) => m.push(format!(
            "error: expected a failure containing {want:?}, seen none"
        )),
        (Some(want), Some(seen)) if !seen.contains(want.as_str()) => m.push(format!(
            "error: expected a failure containing {want:?}, seen: {seen}"
        )),
        _ => {}
    }
    let want_restored = e.restored.unwrap_or(true);
    if o.restored != want_restored {
        m.push(format!(
            "restored: expected {want_restored}, seen {} (drivers after: {:?})",
            o.restored,
            drivers(&o.l1_after)
        ));
    }
    if let Some(plan) = &e.plan {
        match serde_json::from_str::<serde_json::Value>(plan) {
            Ok(want) if Some(&want) != o.plan.as_ref() => m.push(format!(
                "plan: expected {want}, seen {}",
                o.plan.as_ref().map_or("none".into(), |p| p.to_string())
            )),
            Err(err) => m.push(format!("expect.plan is not JSON: {err}")),
            _ => {}
        }
    }
    for (label, want, rows) in [
        ("l1_during", &e.l1_during, &o.l1_during),
        ("l1_after", &e.l1_after, &o.l1_after),
    ] {
        let Some(want) = want else { continue };
        for (bdf, driver) in want {
            let seen = rows
                .iter()
                .find(|r| &r.bdf == bdf)
                .map(|r| r.driver.clone().unwrap_or_else(|| "none".into()));
            if seen.as_deref() != Some(driver.as_str()) {
                m.push(format!(
                    "{label}: {bdf} expected on {driver}, seen on {}",
                    seen.unwrap_or_else(|| "(absent)".into())
                ));
            }
        }
    }
    for (label, want, seen) in [
        ("l2_qmp", &e.l2_qmp, &o.l2_qmp),
        ("l2_guest", &e.l2_guest, &o.l2_guest),
    ] {
        let Some(want) = want else { continue };
        let mut want = want.clone();
        want.sort();
        let seen = assigned_view(seen);
        if want != seen {
            m.push(format!("{label}: expected {want:?}, seen {seen:?}"));
        }
    }
    m
}

fn drivers(rows: &[lab::outcome::FunctionRow]) -> Vec<String> {
    rows.iter()
        .map(|r| format!("{}={}", r.bdf, r.driver.as_deref().unwrap_or("none")))
        .collect()
}

/// What L2's kernel saw, in words: each assigned function seen or not,
/// each unassigned one absent or (wrongly) present.
pub fn describe_l2(o: &RunOutcome) -> Vec<String> {
    let mut lines = Vec::new();
    let Some(plan) = &o.plan else { return lines };
    let ids = |bdf: &str| {
        o.l1_before.iter().find(|r| r.bdf == bdf).map(|r| {
            (
                r.vendor.trim_start_matches("0x").to_string(),
                r.device.trim_start_matches("0x").to_string(),
            )
        })
    };
    let guest = assigned_view(&o.l2_guest);
    let seen_ids = |v: &str, d: &str| {
        guest
            .iter()
            .find(|k| k.starts_with(&format!("{v}:{d}@")))
            .cloned()
    };
    for a in plan["assign"].as_array().into_iter().flatten() {
        let host = a["host"].as_str().unwrap_or("?");
        if let Some((v, d)) = ids(host) {
            match seen_ids(&v, &d) {
                Some(k) => lines.push(format!(
                    "L2's kernel saw {host} [{v}:{d}] (assigned) at {}",
                    k.split('@').nth(1).unwrap_or("?")
                )),
                None => lines.push(format!(
                    "L2's kernel did NOT see {host} [{v}:{d}] (assigned)"
                )),
            }
        }
    }
    for u in plan["unassigned"].as_array().into_iter().flatten() {
        let host = u.as_str().unwrap_or("?");
        if let Some((v, d)) = ids(host) {
            match seen_ids(&v, &d) {
                None => lines.push(format!(
                    "L2's kernel did not see {host} [{v}:{d}] (unassigned)"
                )),
                Some(k) => lines.push(format!(
                    "L2's kernel SAW {host} [{v}:{d}] (unassigned!) at {}",
                    k.split('@').nth(1).unwrap_or("?")
                )),
            }
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_labs_own_failures_are_run_again() {
        let work = || WorkDir::new("mflab-test-").expect("temp dir");
        let no_l1: VmResult = Err(("L1: did not become ready\nserial...".into(), None));
        assert_eq!(
            lab_failure(&no_l1).as_deref(),
            Some("L1 failed (L1: did not become ready)")
        );
        let silent_l2 = RunOutcome {
            error: Some(lab::inner::REPORT_CUT_SHORT.into()),
            lab_fault: lab::inner::lab_fault_of_silent_guest(""),
            ..Default::default()
        };
        assert!(lab_failure(&Ok((silent_l2, work()))).is_some());
        // A failure of the system under test is the scenario's result.
        let refused = RunOutcome {
            error: Some("vfio 0000:00:06.1: group 7 is not viable".into()),
            ..Default::default()
        };
        assert_eq!(lab_failure(&Ok((refused, work()))), None);
    }
}
