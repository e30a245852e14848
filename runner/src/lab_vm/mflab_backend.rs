//! One scenario carried out by mflab's own logic, in steps whose teardown
//! mirrors the preparation (as libvirt's `virHostdevPreparePCIDevices` and
//! `virHostdevReAttachPCIDevices` do):
//! 1. [`prepare`]: check and plan (nothing is touched on an error), then
//!    detach the plan's functions to vfio-pci against a journal;
//! 2. [`run_l2`]: start L2 paused, add the assigned functions over QMP,
//!    record `query-pci`, resume, read L2's own report (`crate::lab_vm::l2::guest`);
//! 3. [`teardown`]: L2 is gone; reattach from the journal, undoing step 1.
//!
//! [`run`] strings them together; the view before and after, and whether
//! every driver came back, are [`super::l1_state`]'s.

use std::ops::ControlFlow;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::lab_vm::l2::guest::{l2_args, run_inner_guest, socket_path, InnerDepth, L2Config};
use lab::assign::bind::{detach, Detached, Sysfs};
use lab::assign::plan::{plan, Plan};
use lab::machine::accel::Accel;
use lab::machine::qemu_cmdline::{shell_line, QEMU};
use lab::pci::view::read_host_view;
use lab::protocol::paths::{JOURNAL, L2_CMDLINE, L2_QMP_TRANSCRIPT, L2_SERIAL_LOG};
use lab::protocol::{Depth, Progress, RunOutcome, RunRequest, Stage};
use lab::schema::check::check_text;

use super::l1_state::{begin, finish, rows, sysfs, SYSFS};
use super::steps::L2_CONTROL_SOCKET;

/// L2's RAM: the least that boots the distribution kernel with room to
/// spare. Every MiB is pinned and mapped through L1's IOMMU when the
/// first function is added, so less is faster.
const L2_MEMORY_MIB: u32 = 128;

/// How long L2 may take from `cont` to power-off: it takes 4-8 s here
/// under nested KVM, so 60 s is ample under load, and an L2 that never
/// speaks is retried (a lab fault) sooner. L2 under TCG inside a TCG L1
/// takes about 60 s: three times that, and still under the runner's
/// scenario timeout (240 s, L1's boot and the bind included), so a slow
/// L2 is reported by the agent, with its serial log, not cut off by the host.
/// Both times this L1's time scale (see `super::kvm::time_scale`).
pub fn l2_timeout(accel: Accel) -> Duration {
    Duration::from_secs(match accel {
        Accel::Kvm => 60,
        Accel::Tcg => 180,
    }) * super::kvm::time_scale()
}

pub fn run(req: &RunRequest, work: &Path, progress: &dyn Fn(Progress)) -> RunOutcome {
    let mut out = match begin(req, work) {
        ControlFlow::Continue(out) => out,
        ControlFlow::Break(done) => return done,
    };
    let Some((plan, detached)) = prepare(req, work, &mut out) else {
        return finish(out);
    };
    progress(Progress::BindDone);
    if !req.steps.is_empty() && req.depth == Depth::Guest {
        // Steps on the running L2 (`super::steps`); teardown reattaches
        // the run's journal and every step's, newest first.
        let mut steps = super::steps::mflab_steps(req, work, &plan, detached);
        run_l2(req, work, &plan, &mut out, progress, Some(&mut steps));
        progress(Progress::Teardown);
        super::steps::mflab_teardown(steps, &mut out);
        return finish(out);
    }
    // The link proof's far end comes up before L2 and goes down after
    // the restored functions were used (`super::link_proof`).
    let peer = match req.link.as_ref().filter(|_| req.depth == Depth::Guest) {
        Some(link) => match super::link_proof::PeerLink::up(link) {
            Ok(peer) => Some(peer),
            Err(e) => {
                out.error = Some(e.to_string());
                progress(Progress::Teardown);
                teardown(detached, &mut out);
                return finish(out);
            }
        },
        None => None,
    };
    let assigned: Vec<lab::PciAddress> = plan.assign.iter().map(|a| a.host).collect();
    let iommu_domain = super::link_proof::iommu_domain(&assigned);
    if req.depth >= Depth::Qmp {
        run_l2(req, work, &plan, &mut out, progress, None);
    }
    let link = peer.as_ref().map(|p| {
        let report = lab::protocol::guest_report::read_l2_output(&work.join(L2_SERIAL_LOG));
        super::link_proof::after_l2(p, iommu_domain, &report)
    });
    progress(Progress::Teardown);
    teardown(detached, &mut out);
    if let (Some(peer), Some(link)) = (peer, link) {
        let restored = super::link_proof::taken_from_host(&out);
        super::link_proof::conclude(peer, link, &restored, &mut out);
    }
    finish(out)
}

/// Step 1: check, plan, detach. `None` when the run stops here: rule
/// errors (in `out.diagnostics`) or a failure (in `out.error`), with
/// nothing left changed.
pub fn prepare(req: &RunRequest, work: &Path, out: &mut RunOutcome) -> Option<(Plan, Detached)> {
    let checked = check_text(&req.xml_name, &req.xml);
    if checked.has_errors() {
        out.diagnostics = checked
            .diagnostics
            .into_iter()
            .filter(|d| d.is_error())
            .collect();
        return None;
    }
    let host = match read_host_view(sysfs()) {
        Ok(host) => host,
        Err(e) => {
            out.error = Some(e.to_string());
            return None;
        }
    };
    let plan = match plan(&checked.domain, &host, req.policy) {
        Ok(p) => p,
        Err(diagnostics) => {
            out.diagnostics = diagnostics;
            return None;
        }
    };
    out.plan = Some(plan.clone());
    let t = Instant::now();
    let detached = match detach(&plan, &Sysfs::new(SYSFS), sysfs(), &work.join(JOURNAL)) {
        Ok(d) => d,
        Err(e) => {
            out.error = Some(format!("detach: {e}"));
            return None;
        }
    };
    out.timings.insert(Stage::Bind, t.elapsed().as_secs_f64());
    out.l1_during = rows(out);
    Some((plan, detached))
}

/// Step 2: L2 with the plan's assigned functions, as far as the depth goes.
pub fn run_l2(
    req: &RunRequest,
    work: &Path,
    plan: &Plan,
    out: &mut RunOutcome,
    progress: &dyn Fn(Progress),
    steps: Option<&mut crate::lab_vm::l2::hotplug_run::StepsRun>,
) {
    if let Err(e) = super::kvm::ready_for_l2() {
        out.error = Some(e.to_string());
        return;
    }
    let accel = super::kvm::l2_accel();
    out.l2_accel = Some(accel);
    let config = L2Config {
        qemu: QEMU.into(),
        accel,
        kernel: req.l2_kernel.clone(),
        initrd: req.l2_initrd.clone(),
        serial_log: work.join(L2_SERIAL_LOG),
        qmp_socket: socket_path(Path::new("/run")),
        memory_mib: L2_MEMORY_MIB,
        ram_file: super::l2_ram::prepare(L2_MEMORY_MIB),
        control_socket: steps
            .is_some()
            .then(|| Path::new("/run").join(L2_CONTROL_SOCKET)),
        extra_cmdline: req
            .link
            .iter()
            .map(|l| l.l2_cmdline_word())
            .chain(
                req.steps
                    .iter()
                    .any(|s| s.action == lab::protocol::StepAction::Reboot)
                    .then(|| lab::protocol::guest_report::ACPI_KERNEL_ARG.to_string()),
            )
            .collect(),
        trace_resets: req.steps.iter().any(|s| s.action.reboots()),
    };
    std::fs::write(
        work.join(L2_CMDLINE),
        shell_line(&config.qemu, &l2_args(&config)),
    )
    .ok();
    let depth = match (req.depth, req.kill_l2) {
        (Depth::Qmp, _) => InnerDepth::QmpOnly,
        (_, true) => InnerDepth::BootAndKill,
        _ => InnerDepth::Boot,
    };
    progress(Progress::L2Starting);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let inner = runtime.block_on(run_inner_guest(
        &config,
        plan,
        depth,
        l2_timeout(accel),
        steps,
    ));
    if inner.resumed {
        progress(Progress::L2Booted);
    }
    std::fs::write(work.join(L2_QMP_TRANSCRIPT), inner.transcript.join("\n")).ok();
    out.timings.extend(inner.timings);
    out.l2_qmp = inner.qmp_view;
    out.l2_guest = inner.guest_view;
    out.error = inner.error;
    out.lab_fault = inner.lab_fault;
}

/// Step 3, mirroring step 1: every detached function back to the driver
/// the journal recorded for it.
pub fn teardown(detached: Detached, out: &mut RunOutcome) {
    let t = Instant::now();
    if let Err(e) = detached.reattach(&Sysfs::new(SYSFS)) {
        let text = format!("reattach: {e}");
        out.error = Some(match out.error.take() {
            Some(first) => format!("{first}; {text}"),
            None => text,
        });
    }
    out.timings
        .insert(Stage::Teardown, t.elapsed().as_secs_f64());
}
