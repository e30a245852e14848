//! The agent's heartbeat as the runner reads it: an L1 whose heartbeat
//! file stands still for [`STALL_LIMIT`] has stopped as a whole (its
//! vCPUs, or the 9p transport under them), and is named a lab fault at
//! once, with where L0's QEMU threads wait, instead of after the
//! scenario's 240 s timeout. A task stuck inside L1's kernel while the
//! rest runs is L1's own hung-task detector's (`hung_task_panic`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use lab::lab_fault::{LabFault, LabFaultKind};
use lab::protocol::paths::HEARTBEAT_FILE;

/// How long the heartbeat may stand still. The agent beats every second;
/// a busy L1 under TCG (L2 booting on both vCPUs) was seen late by at
/// most a few seconds.
pub const STALL_LIMIT: Duration = Duration::from_secs(30);

/// How often the file is read.
const READ_EVERY: Duration = Duration::from_millis(500);

pub struct HeartbeatWatch {
    path: PathBuf,
    limit: Duration,
    last: Option<String>,
    changed: Instant,
    read: Option<Instant>,
}

impl HeartbeatWatch {
    /// A watch on the heartbeat in `work_dir`, `limit` times the
    /// accelerator's time scale.
    pub fn new(work_dir: &Path, time_scale: u32) -> Self {
        HeartbeatWatch {
            path: work_dir.join(HEARTBEAT_FILE),
            limit: STALL_LIMIT * time_scale.max(1),
            last: None,
            changed: Instant::now(),
            read: None,
        }
    }

    /// How long the heartbeat has stood still, once that is past the
    /// limit; None while it beats or before its first beat.
    pub fn stalled(&mut self) -> Option<Duration> {
        self.stalled_at(Instant::now())
    }

    fn stalled_at(&mut self, now: Instant) -> Option<Duration> {
        if self
            .read
            .is_some_and(|r| now.duration_since(r) < READ_EVERY)
        {
            return self.silent_past_limit(now);
        }
        self.read = Some(now);
        let beat = std::fs::read_to_string(&self.path).ok();
        if beat.is_some() && beat != self.last {
            self.last = beat;
            self.changed = now;
        }
        self.silent_past_limit(now)
    }

    fn silent_past_limit(&self, now: Instant) -> Option<Duration> {
        let silence = now.duration_since(self.changed);
        (self.last.is_some() && silence > self.limit).then_some(silence)
    }
}

/// The lab fault for an L1 whose heartbeat stood still for `silence`,
/// with where its QEMU (`pid` on L0) waits.
pub fn stalled_fault(silence: Duration, pid: Option<u32>) -> LabFault {
    let waits = pid
        .map(lab::machine::process_wait::waiting_in)
        .unwrap_or_else(|| "(QEMU already gone)".into());
    LabFault::new(
        LabFaultKind::L1Stalled,
        format!(
            "L1 stalled: its agent's heartbeat stood still for {}s; L0's QEMU threads wait in {waits}",
            silence.as_secs()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_heartbeat_that_stands_still_past_the_limit_is_a_stall() {
        let t = tempfile::tempdir().unwrap();
        let mut w = HeartbeatWatch::new(t.path(), 1);
        let start = Instant::now();
        // No beat yet: the ready timeout's business, not a stall.
        assert_eq!(w.stalled_at(start + Duration::from_secs(100)), None);
        std::fs::write(t.path().join(HEARTBEAT_FILE), "1").unwrap();
        let t0 = start + Duration::from_secs(101);
        assert_eq!(w.stalled_at(t0), None);
        std::fs::write(t.path().join(HEARTBEAT_FILE), "2").unwrap();
        let t1 = t0 + Duration::from_secs(20);
        assert_eq!(w.stalled_at(t1), None, "it beat again");
        assert_eq!(w.stalled_at(t1 + Duration::from_secs(29)), None);
        assert_eq!(
            w.stalled_at(t1 + Duration::from_secs(31)),
            Some(Duration::from_secs(31))
        );
    }

    #[test]
    fn a_slower_accelerator_gets_a_longer_limit() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join(HEARTBEAT_FILE), "1").unwrap();
        let mut w = HeartbeatWatch::new(t.path(), 3);
        let t0 = Instant::now();
        assert_eq!(w.stalled_at(t0), None);
        assert_eq!(w.stalled_at(t0 + Duration::from_secs(89)), None);
        assert!(w.stalled_at(t0 + Duration::from_secs(91)).is_some());
    }

    #[test]
    fn the_fault_names_where_l0_s_qemu_waits() {
        let f = stalled_fault(Duration::from_secs(31), Some(std::process::id()));
        assert_eq!(f.kind, LabFaultKind::L1Stalled);
        assert!(
            f.detail.starts_with(
                "L1 stalled: its agent's heartbeat stood still for 31s; L0's QEMU threads wait in "
            ),
            "{}",
            f.detail
        );
        assert!(
            !f.detail.ends_with("(nothing readable in /proc)"),
            "{}",
            f.detail
        );
        assert!(stalled_fault(Duration::from_secs(31), None)
            .detail
            .ends_with("(QEMU already gone)"));
    }
}
