//! The agent's heartbeat: a thread that rewrites a counter into the work
//! directory every second for as long as the agent lives, so that the
//! runner on L0 can tell an L1 that stopped as a whole from one that is
//! busy (see `host::l1::heartbeat`).

use std::path::Path;
use std::time::Duration;

use lab::protocol::paths::{HEARTBEAT_EVERY_MS, HEARTBEAT_FILE};

/// Starts beating into `dir`; the thread ends with the process.
pub fn start(dir: &Path) {
    let path = dir.join(HEARTBEAT_FILE);
    let spawned = std::thread::Builder::new()
        .name("heartbeat".into())
        .spawn(move || {
            for n in 1u64.. {
                // A failed write is a missed beat: the runner sees it as such.
                let _ = std::fs::write(&path, n.to_string());
                std::thread::sleep(Duration::from_millis(HEARTBEAT_EVERY_MS));
            }
        });
    if let Err(e) = spawned {
        tracing::warn!("no heartbeat thread: {e}");
    }
}
