//! L1's PCI state around a run, the same for both backends: the
//! administrator's manual detach before it, the view before, and after
//! teardown whether every function is back on the driver it had.

use std::ops::ControlFlow;
use std::path::Path;

use lab::assign::bind::{detach, Sysfs};
use lab::assign::plan::Plan;
use lab::protocol::paths::MANUAL_JOURNAL;
use lab::protocol::{function_rows, FunctionRow, RunOutcome, RunRequest};

use super::L1Error;

/// L1's own sysfs (L1 mounts its own; the host's is not visible).
pub const SYSFS: &str = "/sys";

pub fn sysfs() -> &'static Path {
    Path::new(SYSFS)
}

/// Every function of L1 now; a failure to read is recorded in `out`.
pub fn rows(out: &mut RunOutcome) -> Vec<FunctionRow> {
    function_rows(sysfs()).unwrap_or_else(|e| {
        out.error
            .get_or_insert(format!("reading L1's PCI view: {e}"));
        Vec::new()
    })
}

/// Binds `req.manual_detach` to vfio-pci as an administrator would
/// (`virsh nodedev-detach`), and leaves it so: it is part of the host's
/// state before the run, so teardown does not undo it.
pub fn manual_detach(req: &RunRequest, work: &Path) -> Result<(), L1Error> {
    if req.manual_detach.is_empty() {
        return Ok(());
    }
    let by_hand = Plan::detach_only(req.manual_detach.clone());
    match detach(
        &by_hand,
        &Sysfs::new(SYSFS),
        sysfs(),
        &work.join(MANUAL_JOURNAL),
    ) {
        Ok(done) => {
            std::mem::forget(done);
            Ok(())
        }
        Err(e) => Err(L1Error::ManualDetach(e)),
    }
}

/// The start both backends share: the administrator's manual detach,
/// then L1's view before the run. `Break` is the run's finished outcome
/// when the manual detach failed.
pub fn begin(req: &RunRequest, work: &Path) -> ControlFlow<RunOutcome, RunOutcome> {
    let mut out = RunOutcome::default();
    if let Err(e) = manual_detach(req, work) {
        out.error = Some(e.to_string());
        return ControlFlow::Break(finish(out));
    }
    out.l1_before = rows(&mut out);
    ControlFlow::Continue(out)
}

/// Reads L1's view after the run and says whether every driver came back.
pub fn finish(mut out: RunOutcome) -> RunOutcome {
    out.l1_after = function_rows(sysfs()).unwrap_or_default();
    out.restored = out.l1_before.iter().all(|b| {
        out.l1_after
            .iter()
            .any(|a| a.bdf == b.bdf && a.driver == b.driver)
    });
    out
}
