//! A suite's runs spread over `jobs` workers, each with its own shared L1
//! (one at a time, kept while its scenarios use the same topology).
//! Reports come back in scenario order, whatever the order they ran in.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use lab::machine::accel::AccelChoice;
use lab::protocol::Backend;

use super::attempt::{run_scenario, RunOptions, ScenarioReport, Watch};
use crate::host::images::L1Images;
use crate::host::l1::shared::L1Slot;
use crate::host::progress::{Event, Observer};
use crate::host::scenario::Scenario;

/// One run of the suite: a scenario (by index) under one backend, in one
/// `--repeat` round (from 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RunKey {
    pub scenario: usize,
    pub backend: Backend,
    pub repeat: usize,
}

pub struct Suite<'a> {
    pub scenarios: &'a [Scenario],
    /// The runs, in the order to start them.
    pub runs: Vec<RunKey>,
    pub jobs: usize,
    /// One L1 per scenario instead of a shared one per topology.
    pub fresh_l1: bool,
    /// `None` when no run needs a VM.
    pub images: Option<&'a L1Images>,
    pub accel: &'a AccelChoice,
    pub libvirt_bin: Option<PathBuf>,
    pub keep: bool,
    /// Lab-fault retries per run.
    pub retries: usize,
}

pub struct SuiteResult {
    /// In scenario order, then by repeat (mflab before libvirt), only the
    /// runs that finished.
    pub reports: Vec<ScenarioReport>,
    pub boots: u32,
    pub wall: Duration,
    pub interrupted: bool,
}

impl Suite<'_> {
    /// Runs the suite; `on_report` hears each run as it finishes.
    pub fn run(
        &self,
        observer: &dyn Observer,
        on_report: &(dyn Fn(&Scenario, &ScenarioReport) + Sync),
    ) -> SuiteResult {
        let queue = Mutex::new(
            self.runs
                .iter()
                .copied()
                .enumerate()
                .collect::<VecDeque<_>>(),
        );
        let done: Mutex<Vec<Option<ScenarioReport>>> =
            Mutex::new((0..self.runs.len()).map(|_| None).collect());
        let boots = AtomicU32::new(0);
        let wall = Instant::now();
        let tag_backend = self.runs.iter().any(|r| r.backend == Backend::Libvirt);
        let tag_repeat = self.runs.iter().any(|r| r.repeat > 1);
        std::thread::scope(|scope| {
            for _ in 0..self.jobs.max(1) {
                scope.spawn(|| {
                    let mut slot = L1Slot::default();
                    loop {
                        let next = queue.lock().expect("queue").pop_front();
                        let Some((n, key)) = next else { break };
                        if crate::interrupt::interrupted() {
                            break;
                        }
                        let s = &self.scenarios[key.scenario];
                        let mut label = s.name.clone();
                        if tag_backend {
                            label.push_str(&format!(" [{}]", key.backend));
                        }
                        if tag_repeat {
                            label.push_str(&format!(" #{}", key.repeat));
                        }
                        observer.event(Event::Started {
                            run: n,
                            label: &label,
                        });
                        let report = self.run_one(s, key, &mut slot, Watch { observer, run: n });
                        observer.event(Event::Finished {
                            run: n,
                            passed: report.passed(),
                            elapsed: report.elapsed,
                        });
                        // A run cut short by an interrupt has no report
                        // to give (its directories are gone); one that
                        // finished before it has (a kept directory is named).
                        if crate::interrupt::interrupted() && report.kept.is_none() {
                            break;
                        }
                        on_report(s, &report);
                        done.lock().expect("results")[n] = Some(report);
                    }
                    boots.fetch_add(slot.boots, Ordering::SeqCst);
                });
            }
        });
        let mut done = done.into_inner().expect("results");
        let mut order: Vec<usize> = (0..self.runs.len()).collect();
        order.sort_by_key(|&k| {
            (
                self.runs[k].scenario,
                self.runs[k].repeat,
                self.runs[k].backend == Backend::Libvirt,
            )
        });
        SuiteResult {
            reports: order.iter().filter_map(|&k| done[k].take()).collect(),
            boots: boots.load(Ordering::SeqCst),
            wall: wall.elapsed(),
            interrupted: crate::interrupt::interrupted(),
        }
    }

    fn run_one(
        &self,
        s: &Scenario,
        key: RunKey,
        slot: &mut L1Slot,
        watch: Watch,
    ) -> ScenarioReport {
        let options = RunOptions {
            backend: key.backend,
            libvirt_bin: self.libvirt_bin.clone(),
            keep: self.keep,
            retries: self.retries,
            repeat: key.repeat,
        };
        // Rules depth never touches the images.
        let none = L1Images::none();
        let images = self.images.unwrap_or(&none);
        let slot = (!self.fresh_l1).then_some(slot);
        run_scenario(s, images, self.accel, &options, slot, watch)
    }
}
