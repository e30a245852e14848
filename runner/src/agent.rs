//! The agent: what runs inside L1 for one scenario. A numbered sequence
//! whose teardown mirrors it (as libvirt's virhostdev.c does):
//! 1. read L1's PCI view, check and plan (nothing touched on error);
//! 2. detach the plan's functions to vfio-pci, against a journal;
//! 3. start L2 paused, add the assigned functions over QMP, query-pci,
//!    resume, read L2's own report;
//! 4. teardown: L2 is gone (kill on drop); reattach from the journal;
//!    compare every function's driver with step 1.

use std::path::Path;
use std::time::{Duration, Instant};

use lab::bind::{detach, Sysfs};
use lab::check::check_text;
use lab::host::read_host_view;
use lab::inner::{run_inner_guest, socket_path, InnerDepth, L2Config};
use lab::outcome::{function_rows, Backend, Depth, RunOutcome, RunRequest};
use lab::plan::plan;

use crate::accel::{decide, gather, Accel};

pub const SYSFS: &str = "/sys";

/// L2's RAM: the least that boots the distribution kernel with room to
/// spare. Every MiB is pinned and mapped through L1's IOMMU when the
/// first function is added, so less is faster.
const L2_MEMORY_MIB: u32 = 128;
pub fn run_in_l1(req: &RunRequest, work: &Path) -> RunOutcome {
    if req.backend == Backend::Libvirt {
        return crate::libvirt_run::run_with_libvirt(req, work);
    }
    let sysfs = Path::new(SYSFS);
    let mut out = RunOutcome::default();
    let rows = |out: &mut RunOutcome| {
        function_rows(sysfs).unwrap_or_else(|e| {
            out.error
                .get_or_insert(format!("reading L1's PCI view: {e}"));
            Vec::new()
        })
    };
    let kernel = Sysfs::new(SYSFS);
    // Step 0: the administrator's manual detach, before the run starts; it
    // is part of the host's state, so it is not undone.
    if let Err(e) = manual_detach(req, &kernel, work) {
        out.error = Some(e);
        return finish(out, sysfs);
    }
    out.l1_before = rows(&mut out);

    // Step 1: check and plan.
    let checked = check_text(&req.xml_name, &req.xml);
    let planned = if checked.has_errors() {
        Err(checked
            .diagnostics
            .into_iter()
            .filter(|d| d.is_error())
            .collect())
    } else {
        match read_host_view(sysfs) {
            Ok(host) => plan(&checked.domain, &host, req.policy),
            Err(e) => {
                out.error = Some(e.to_string());
                return finish(out, sysfs);
            }
        }
    };
    let plan = match planned {
        Ok(p) => p,
        Err(diagnostics) => {
            out.diagnostics = diagnostics;
            return finish(out, sysfs);
        }
    };
    out.plan = Some(serde_json::to_value(&plan).expect("plan serializes"));

    // Step 2: detach.
    let t = Instant::now();
    let detached = match detach(&plan, &kernel, sysfs, &work.join("journal.json")) {
        Ok(d) => d,
        Err(e) => {
            out.error = Some(format!("detach: {e}"));
            return finish(out, sysfs);
        }
    };
    out.timings.insert("bind".into(), t.elapsed().as_secs_f64());
    out.l1_during = rows(&mut out);

    // Step 3: the inner guest.
    let l2_can_start = req.depth >= Depth::Qmp
        && match crate::l1_kvm::ready_for_l2() {
            Ok(()) => true,
            Err(e) => {
                out.error = Some(e);
                false
            }
        };
    if l2_can_start {
        let choice = decide(&gather(Path::new("/")));
        out.l2_accel = match choice.accel {
            Accel::Kvm => "kvm".into(),
            Accel::Tcg => "tcg".into(),
        };
        let config = L2Config {
            qemu: crate::l1::QEMU.into(),
            accel: out.l2_accel.clone(),
            kernel: req.l2_kernel.clone(),
            initrd: req.l2_initrd.clone(),
            serial_log: work.join("l2-serial.log"),
            qmp_socket: socket_path(Path::new("/run")),
            memory_mib: L2_MEMORY_MIB,
            ram_file: crate::l2_ram::prepare(L2_MEMORY_MIB),
        };
        std::fs::write(
            work.join("l2-cmdline.txt"),
            crate::l1::shell_line(&config.qemu, &lab::inner::l2_args(&config)),
        )
        .ok();
        let depth = match (req.depth, req.kill_l2) {
            (Depth::Qmp, _) => InnerDepth::QmpOnly,
            (_, true) => InnerDepth::BootAndKill,
            _ => InnerDepth::Boot,
        };
        // L2 powers off 4-8 s after `cont` here; 60 s is ample under load,
        // and an L2 that never speaks is retried (a lab fault) sooner.
        let timeout = Duration::from_secs(if out.l2_accel == "kvm" { 60 } else { 300 });
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        let inner = runtime.block_on(run_inner_guest(&config, &plan, depth, timeout));
        std::fs::write(
            work.join("l2-qmp-transcript.log"),
            inner.transcript.join("\n"),
        )
        .ok();
        for (stage, secs) in &inner.timings {
            out.timings.insert(stage.clone(), *secs);
        }
        out.l2_qmp = inner.qmp_view;
        out.l2_guest = inner.guest_view;
        out.error = inner.error;
        out.lab_fault = inner.lab_fault;
    }

    // Step 4: teardown mirrors step 2.
    let t = Instant::now();
    if let Err(e) = detached.reattach(&kernel) {
        let text = format!("reattach: {e}");
        out.error = Some(match out.error.take() {
            Some(first) => format!("{first}; {text}"),
            None => text,
        });
    }
    out.timings
        .insert("teardown".into(), t.elapsed().as_secs_f64());
    finish(out, sysfs)
}

/// Binds `req.manual_detach` to vfio-pci as an administrator would
/// (`virsh nodedev-detach`), and leaves it so.
pub fn manual_detach(req: &RunRequest, kernel: &Sysfs, work: &Path) -> Result<(), String> {
    if req.manual_detach.is_empty() {
        return Ok(());
    }
    let by_hand = lab::plan::Plan::detach_only(req.manual_detach.clone());
    match detach(
        &by_hand,
        kernel,
        Path::new(SYSFS),
        &work.join("manual-journal.json"),
    ) {
        Ok(done) => {
            std::mem::forget(done);
            Ok(())
        }
        Err(e) => Err(format!("manual detach: {e}")),
    }
}

/// Reads L1's view after the run and says whether every driver came back.
pub fn finish(mut out: RunOutcome, sysfs: &Path) -> RunOutcome {
    out.l1_after = function_rows(sysfs).unwrap_or_default();
    out.restored = out.l1_before.iter().all(|b| {
        out.l1_after
            .iter()
            .any(|a| a.bdf == b.bdf && a.driver == b.driver)
    });
    out
}

/// `mflab agent serve`: one L1 for many scenarios. Waits for
/// `request-N.json` in `dir`, runs it in `dir/sN/`, writes `result-N.json`
/// with a health verdict: every function back on the driver it had when
/// L1 booted, and no L2 left. An unhealthy L1 stops serving (and powers
/// off), so the runner boots a fresh one: no scenario sees another's leftovers.
pub fn serve(dir: &Path) -> Result<(), String> {
    let boot_rows = function_rows(Path::new(SYSFS)).map_err(|e| e.to_string())?;
    for n in 1.. {
        let request = dir.join(format!("request-{n}.json"));
        loop {
            if request.exists() {
                break;
            }
            if dir.join("stop").exists() {
                return Ok(());
            }
            // Each look is a 9p round trip under emulation: not too often.
            std::thread::sleep(Duration::from_millis(25));
        }
        let text =
            std::fs::read_to_string(&request).map_err(|e| format!("{}: {e}", request.display()))?;
        let req: RunRequest =
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", request.display()))?;
        let work = dir.join(format!("s{n}"));
        std::fs::create_dir_all(&work).map_err(|e| e.to_string())?;
        let outcome = run_in_l1(&req, &work);
        // After a lab fault L1's KVM is not trusted with the next scenario.
        let health = match &outcome.lab_fault {
            Some(fault) => Err(fault.clone()),
            None => health(&boot_rows),
        };
        let result = ServedResult {
            outcome,
            healthy: health.is_ok(),
            why: health.err(),
        };
        let tmp = dir.join(format!(".result-{n}.tmp"));
        std::fs::write(
            &tmp,
            serde_json::to_string(&result).expect("result serializes"),
        )
        .map_err(|e| e.to_string())?;
        std::fs::rename(&tmp, dir.join(format!("result-{n}.json"))).map_err(|e| e.to_string())?;
        if !result.healthy {
            return Ok(());
        }
    }
    Ok(())
}

/// What `serve` answers for one request.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct ServedResult {
    pub outcome: RunOutcome,
    pub healthy: bool,
    pub why: Option<String>,
}

fn health(boot_rows: &[lab::outcome::FunctionRow]) -> Result<(), String> {
    let now = function_rows(Path::new(SYSFS)).map_err(|e| e.to_string())?;
    for b in boot_rows {
        let driver = now
            .iter()
            .find(|r| r.bdf == b.bdf)
            .and_then(|r| r.driver.clone());
        if driver != b.driver {
            return Err(format!(
                "{} is on {} (was {} at boot)",
                b.bdf,
                driver.as_deref().unwrap_or("no driver"),
                b.driver.as_deref().unwrap_or("no driver")
            ));
        }
    }
    for entry in std::fs::read_dir("/proc")
        .map_err(|e| e.to_string())?
        .flatten()
    {
        let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
        if comm.starts_with("qemu-system") {
            return Err(format!(
                "an L2 QEMU is still running (pid {})",
                entry.file_name().to_string_lossy()
            ));
        }
    }
    Ok(())
}
