//! One L1 per topology, shared by the scenarios that use it: the agent
//! serves requests (`mflab agent serve`) and checks between two scenarios
//! that every function is back on its boot-time driver and no L2 is left.
//! When that check fails, or the L1 dies, it is dropped (QEMU killed) and
//! the next scenario boots a fresh one.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use lab::outcome::{RunOutcome, RunRequest};

use crate::accel::AccelChoice;
use crate::agent::ServedResult;
use crate::images::L1Images;
use crate::l1::{
    not_ready, start_l1, tail, L1Config, WorkDir, READY_FILE, READY_TIMEOUT, SERIAL_LOG,
};
use crate::topology;
use crate::vm::QemuProcess;

const SERVE: &str = "exec /mflab/mflab agent serve --dir /mflab\n";

pub struct SharedL1 {
    process: QemuProcess,
    work: WorkDir,
    next: u32,
}

/// A scenario's outcome from a shared L1, and where its files are.
pub struct Served {
    pub outcome: RunOutcome,
    /// The scenario's own directory inside the L1's work directory.
    pub dir: PathBuf,
}

impl SharedL1 {
    fn start(
        topology_name: &str,
        images: &L1Images,
        accel: &AccelChoice,
    ) -> Result<SharedL1, String> {
        let topology = topology::load(topology_name).map_err(|e| e.to_string())?;
        let work = WorkDir::new("mflab-l1-").map_err(|e| e.to_string())?;
        let config = L1Config::new(&topology, images, accel, work.path());
        let mut process = start_l1(&config, SERVE).map_err(|e| e.to_string())?;
        let start = Instant::now();
        while !work.path().join(READY_FILE).exists() {
            if process.exited() || crate::interrupt::interrupted() {
                return Err(format!(
                    "L1 ({topology_name}) stopped before its agent was ready; serial log:\n{}",
                    tail(&work.path().join(SERIAL_LOG), 15)
                ));
            }
            if start.elapsed() > READY_TIMEOUT {
                return Err(format!("L1 ({topology_name}): {}", not_ready(work.path())));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(SharedL1 {
            process,
            work,
            next: 1,
        })
    }

    /// Runs one request; `Err` means this L1 is no longer usable.
    fn serve(&mut self, request: &RunRequest, timeout: Duration) -> Result<(Served, bool), String> {
        let n = self.next;
        self.next += 1;
        let dir = self.work.path();
        let tmp = dir.join(format!(".request-{n}.tmp"));
        std::fs::write(
            &tmp,
            serde_json::to_string(request).expect("request serializes"),
        )
        .map_err(|e| e.to_string())?;
        std::fs::rename(&tmp, dir.join(format!("request-{n}.json"))).map_err(|e| e.to_string())?;
        let result = dir.join(format!("result-{n}.json"));
        let start = Instant::now();
        while !result.exists() {
            if self.process.exited() {
                return Err(format!(
                    "L1 stopped during the scenario; serial log:\n{}",
                    tail(&dir.join(SERIAL_LOG), 15)
                ));
            }
            if start.elapsed() > timeout {
                return Err(format!("no result within {timeout:?}"));
            }
            if crate::interrupt::interrupted() {
                return Err("interrupted".into());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let text = std::fs::read_to_string(&result).map_err(|e| e.to_string())?;
        let served: ServedResult = serde_json::from_str(&text).map_err(|e| e.to_string())?;
        if let Some(why) = &served.why {
            tracing::info!("L1 retired after scenario {n}: {why}");
        }
        Ok((
            Served {
                outcome: served.outcome,
                dir: dir.join(format!("s{n}")),
            },
            served.healthy,
        ))
    }

    pub fn work_dir(&self) -> &Path {
        self.work.path()
    }
}

impl Drop for SharedL1 {
    fn drop(&mut self) {
        // Ask the agent to stop; QEMU is killed by QemuProcess's own drop.
        let _ = std::fs::write(self.work.path().join("stop"), "");
    }
}

/// The L1 of one worker (kept by topology; one at a time).
#[derive(Default)]
pub struct L1Pool {
    l1s: HashMap<String, SharedL1>,
    pub boots: u32,
}

impl L1Pool {
    /// Runs `request` on the pool's L1 for `topology`, booting one if
    /// needed. On failure the L1 is dropped; the error says why, and the
    /// directory given back holds what is left to look at.
    pub fn run(
        &mut self,
        topology_name: &str,
        images: &L1Images,
        accel: &AccelChoice,
        request: &RunRequest,
        timeout: Duration,
    ) -> Result<Served, (String, Option<PathBuf>)> {
        // One L1 at a time per worker: an idle L1 still costs a TCG core.
        self.l1s.retain(|name, _| name == topology_name);
        if !self.l1s.contains_key(topology_name) {
            let l1 = SharedL1::start(topology_name, images, accel).map_err(|e| (e, None))?;
            self.boots += 1;
            self.l1s.insert(topology_name.to_string(), l1);
        }
        let l1 = self.l1s.get_mut(topology_name).expect("inserted above");
        match l1.serve(request, timeout) {
            Ok((served, true)) => Ok(served),
            Ok((served, false)) => {
                // The scenario is done; the L1 is not fit for the next one.
                self.l1s.remove(topology_name);
                Ok(served)
            }
            Err(e) => {
                let dir = l1.work_dir().to_path_buf();
                let kept = self.l1s.remove(topology_name).map(|mut l1| l1.work.keep());
                Err((e, kept.or(Some(dir))))
            }
        }
    }
}
