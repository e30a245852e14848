//! The agent's loop: `mflab agent serve` answers the runner's requests
//! through the [`Mailbox`] of one shared L1, one scenario after another,
//! and checks between two that every function is back on the driver it
//! had when L1 booted and no L2 is left. An unhealthy L1 stops serving
//! (and powers off), so the runner boots a fresh one: no scenario sees
//! another's leftovers.

use std::path::Path;
use std::time::Duration;

use lab::machine::libvirt_binaries::LibvirtBinaries;
use lab::protocol::mailbox::Mailbox;
use lab::protocol::{
    function_rows, Backend, FunctionRow, Progress, RunOutcome, RunRequest, ServedResult,
};

use super::l1_state::sysfs;
use super::libvirtd::DaemonSlot;
use super::L1Error;

/// Runs one request with its backend, in `work`; a libvirt request uses
/// (and may start) the L1's daemon in `daemons`.
pub fn run_request(
    req: &RunRequest,
    work: &Path,
    progress: &dyn Fn(Progress),
    daemons: &mut DaemonSlot,
) -> RunOutcome {
    let trace = super::kvm_trace::KvmTrace::arm();
    let mut outcome = match req.backend {
        Backend::Mflab => super::mflab_backend::run(req, work, progress),
        Backend::Libvirt => super::libvirt_backend::run(req, work, progress, daemons),
    };
    if let Some(trace) =
        trace.filter(|_| super::kvm_trace::worth_keeping(outcome.lab_fault.as_ref()))
    {
        trace.keep(work);
    }
    let mut versions = super::versions::l1_versions();
    if req.backend == Backend::Libvirt && req.libvirt_bin.is_some() {
        if let Ok(binaries) = LibvirtBinaries::resolve(req.libvirt_bin.as_deref()) {
            versions.libvirt = super::versions::libvirt_version(&binaries);
        }
    }
    outcome.l1_versions = Some(versions);
    outcome
}

/// Serves the requests of `dir`'s mailbox until told to stop or L1 is
/// no longer healthy.
pub fn serve_mailbox(dir: &Path) -> Result<(), L1Error> {
    let mailbox = Mailbox::new(dir);
    let boot_rows = function_rows(sysfs())?;
    let mut daemons = DaemonSlot::new(dir);
    for n in 1.. {
        let req = loop {
            if let Some(req) = mailbox.take_request(n) {
                break req?;
            }
            if mailbox.stop_requested() {
                return Ok(());
            }
            // Each look is a 9p round trip under emulation: not too often.
            std::thread::sleep(Duration::from_millis(25));
        };
        let work = mailbox.scenario_dir(n);
        std::fs::create_dir_all(&work)?;
        let outcome = run_request(&req, &work, &|step| mailbox.report(n, step), &mut daemons);
        // After a lab fault L1's KVM is not trusted with the next scenario.
        let why = match &outcome.lab_fault {
            Some(fault) => Some(fault.to_string()),
            None => health(&boot_rows)
                .and_then(|()| daemons.healthy())
                .err()
                .map(|e| e.to_string()),
        };
        let result = ServedResult {
            outcome,
            healthy: why.is_none(),
            why,
        };
        mailbox.post_result(n, &result)?;
        if !result.healthy {
            return Ok(());
        }
    }
    Ok(())
}

fn health(boot_rows: &[FunctionRow]) -> Result<(), L1Error> {
    let now = function_rows(sysfs())?;
    for b in boot_rows {
        let driver = now
            .iter()
            .find(|r| r.bdf == b.bdf)
            .and_then(|r| r.driver.clone());
        if driver != b.driver {
            return Err(L1Error::DriverChanged {
                function: b.bdf,
                now: driver,
                boot: b.driver.clone(),
            });
        }
    }
    for entry in std::fs::read_dir("/proc")?.flatten() {
        let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
        if comm.starts_with("qemu-system") {
            return Err(L1Error::QemuLeft {
                pid: entry.file_name().to_string_lossy().into_owned(),
            });
        }
    }
    Ok(())
}
