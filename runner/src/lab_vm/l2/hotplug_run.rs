//! mflab's own hotplug: the steps of a scenario carried out on a running
//! L2 over QMP, each as a numbered sequence whose failure path undoes what
//! it did (as at start):
//! - attach: 1. read the host now and plan the step ([`lab::assign::hotplug`]:
//!   R11 at hotplug time, nothing touched on an error); 2. detach the
//!   step's functions against a journal of their own; 3. `device_add` each
//!   assigned function at its guest address (an unassigned one is held,
//!   never given to QEMU); on a refusal, `device_del` what was added and
//!   reattach step 2's functions;
//! - detach: 1. plan (only held functions; the group stays viable);
//!   2. `device_del` each assigned function and wait for QEMU's
//!   `DEVICE_DELETED` (the guest ejected it), with a deadline; 3. give the
//!   functions back to exactly their original drivers.
//!
//! After each step L2's init is asked to rescan and report again
//! ([`lab::protocol::guest_report`]), and L1's drivers are read.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::json;

use super::control::ControlPort;
use super::qmp::QmpSession;
use crate::lab_vm::error::{L1Error, StatusWait};
use lab::assign::bind::{detach, Detached, Sysfs};
use lab::assign::hotplug::{plan_attach, plan_detach, AttachPlan, Attached};
use lab::assign::plan::Assign;
use lab::pci::view::read_host_view;
use lab::protocol::{function_rows, LiveHostdev, StepAction, StepOutcome, StepRequest};
use lab::schema::check::check_text;
use lab::schema::diagnostic::Diagnostic;

/// How long the guest may take to release a device after `device_del`
/// (ACPI eject on the `pc` machine: well under a second here).
pub const DEVICE_DELETED_TIMEOUT: Duration = Duration::from_secs(20);

/// How long L2 may take from a reset to its init listening again: a
/// whole boot (about 10 s under nested KVM on TCG), with room.
pub const RESET_TIMEOUT: Duration = Duration::from_secs(90);

/// The steps of one run and what they hold between them.
pub struct StepsRun {
    pub requests: Vec<StepRequest>,
    pub sysfs: PathBuf,
    /// Where each step's journal goes.
    pub work: PathBuf,
    pub serial_log: PathBuf,
    pub attached: Attached,
    /// Journals of what was detached (the run's own first, then each
    /// attach step's); teardown reattaches them in reverse.
    pub detached: Vec<Detached>,
    pub outcomes: Vec<StepOutcome>,
}

impl StepsRun {
    /// Every step in order; one that fails is recorded and the next runs.
    pub async fn run_all(&mut self, qmp: &mut QmpSession, control: &mut ControlPort) {
        for (i, request) in self.requests.clone().iter().enumerate() {
            let n = i + 1;
            let mut out = StepOutcome::default();
            match request.action {
                StepAction::Attach => self.attach(n, request, qmp, &mut out).await,
                StepAction::Detach => self.detach(request, qmp, &mut out).await,
                StepAction::Reset => self.reset(qmp, &mut out).await,
                StepAction::Reboot => self.reboot(qmp, &mut out).await,
            }
            out.l1 = function_rows(&self.sysfs).unwrap_or_default();
            out.live = self.live();
            match control.ask_report(n) {
                Ok(view) => {
                    out.l2_guest = view;
                    out.l2_reported = true;
                }
                Err(e) => {
                    out.error.get_or_insert(e.to_string());
                }
            }
            self.outcomes.push(out);
        }
    }

    fn live(&self) -> Vec<LiveHostdev> {
        self.attached
            .held
            .iter()
            .map(|h| LiveHostdev {
                host: h.host,
                address_type: if h.guest.is_some() {
                    "pci"
                } else {
                    "unassigned"
                }
                .into(),
                guest: h.guest.as_ref().map(|g| g.0),
                alias: h.guest.as_ref().map(|g| g.1.clone()),
            })
            .collect()
    }

    fn plan_input(
        &self,
        request: &StepRequest,
        out: &mut StepOutcome,
    ) -> Option<(lab::schema::domain::Domain, lab::pci::view::HostView)> {
        let checked = check_text(&request.xml_name, &request.xml);
        if checked.has_errors() {
            out.diagnostics = errors(checked.diagnostics);
            return None;
        }
        match read_host_view(&self.sysfs) {
            Ok(host) => Some((checked.domain, host)),
            Err(e) => {
                out.error = Some(e.to_string());
                None
            }
        }
    }

    async fn attach(
        &mut self,
        n: usize,
        request: &StepRequest,
        qmp: &mut QmpSession,
        out: &mut StepOutcome,
    ) {
        // Step 1: plan against the host now; nothing touched on an error.
        let Some((domain, host)) = self.plan_input(request, out) else {
            return;
        };
        let step = match plan_attach(&domain, &host, &self.attached) {
            Ok(step) => step,
            Err(diagnostics) => {
                out.diagnostics = diagnostics;
                return;
            }
        };
        // Step 2: the step's functions to vfio-pci, against its own journal.
        let journal = self.work.join(format!("journal-step-{n}.json"));
        let kernel = Sysfs::new(&self.sysfs);
        let detached = match detach(&step.plan, &kernel, &self.sysfs, &journal) {
            Ok(d) => d,
            Err(e) => {
                out.error = Some(format!("detach: {e}"));
                return;
            }
        };
        // Step 3: device_add each assigned function; undo on a refusal.
        if let Err(e) = add_all(qmp, &step).await {
            out.error = Some(e.to_string());
            if let Err(e) = detached.reattach(&kernel) {
                out.error = Some(format!(
                    "{}; reattach: {e}",
                    out.error.take().unwrap_or_default()
                ));
            }
            return;
        }
        self.attached.record_attach(&step);
        self.detached.push(detached);
    }

    async fn detach(&mut self, request: &StepRequest, qmp: &mut QmpSession, out: &mut StepOutcome) {
        let Some((domain, host)) = self.plan_input(request, out) else {
            return;
        };
        let step = match plan_detach(&domain, &host, &self.attached) {
            Ok(step) => step,
            Err(diagnostics) => {
                out.diagnostics = diagnostics;
                return;
            }
        };
        // Step 2: the guest lets go of each assigned function.
        for (host_fn, id) in &step.device_del {
            if let Err(e) = device_del(qmp, *host_fn, id).await {
                // The step stops: this one is still QEMU's, and every
                // function of the step stays held on vfio-pci until
                // teardown reattaches it once L2 is gone.
                out.error = Some(e.to_string());
                return;
            }
        }
        // Step 3: back to exactly the drivers they had.
        let kernel = Sysfs::new(&self.sysfs);
        let giving_back: Vec<_> = step.reattach.iter().map(|r| r.host).collect();
        let mut failures = Vec::new();
        for d in self.detached.iter_mut().rev() {
            if let Err(e) = d.reattach_only(&kernel, &giving_back) {
                failures.push(e.to_string());
            }
        }
        if !failures.is_empty() {
            out.error = Some(format!("reattach: {}", failures.join("; ")));
        }
        self.attached.record_detach(&step);
    }

    /// A reset of the running L2: QMP `system_reset` with QEMU told to
    /// reset rather than exit (L2 runs with `-no-reboot`, so that a triple
    /// fault ends it; that is put back once L2 is up again), then the wait
    /// for L2's init; what QEMU and L1's kernel said goes to the outcome.
    async fn reset(&mut self, qmp: &mut QmpSession, out: &mut StepOutcome) {
        let watch = crate::lab_vm::reset_watch::ResetWatch::start(
            self.serial_log.with_extension("qemu.log"),
            self.serial_log
                .with_file_name(lab::protocol::paths::L2_REPORT_LOG),
        );
        let action = |reboot| qapi::qmp::set_action {
            reboot: Some(reboot),
            panic: None,
            shutdown: None,
            watchdog: None,
        };
        if let Err(e) = qmp.execute(&action(qapi::qmp::RebootAction::reset)).await {
            out.error = Some(format!("set-action reboot=reset: {e}"));
            return;
        }
        if let Err(e) = qmp.execute(&qapi::qmp::system_reset {}).await {
            out.error = Some(format!("system_reset: {e}"));
            return;
        }
        let timeout = RESET_TIMEOUT * crate::lab_vm::kvm::time_scale();
        if let Err(e) = watch.wait_rebooted(timeout) {
            out.error = Some(e.to_string());
        }
        if let Err(e) = qmp
            .execute(&action(qapi::qmp::RebootAction::shutdown))
            .await
        {
            out.error
                .get_or_insert(format!("set-action reboot=shutdown: {e}"));
        }
        out.reset_log = watch.log();
    }

    /// A reboot as libvirt does one: QEMU holds L2 when it powers off
    /// (`set-action shutdown=pause`, where libvirt runs it with
    /// `-no-shutdown`), the ACPI power button is pressed, L2's acpid powers
    /// it off, and the paused machine is reset and resumed
    /// (`qemuProcessFakeReboot`).
    async fn reboot(&mut self, qmp: &mut QmpSession, out: &mut StepOutcome) {
        let watch = crate::lab_vm::reset_watch::ResetWatch::start(
            self.serial_log.with_extension("qemu.log"),
            self.serial_log
                .with_file_name(lab::protocol::paths::L2_REPORT_LOG),
        );
        // Under -no-reboot a system_reset is a shutdown too: reboot=reset
        // as for a reset step.
        let action = |shutdown, reboot| qapi::qmp::set_action {
            reboot: Some(reboot),
            panic: None,
            shutdown: Some(shutdown),
            watchdog: None,
        };
        let during = action(
            qapi::qmp::ShutdownAction::pause,
            qapi::qmp::RebootAction::reset,
        );
        if let Err(e) = qmp.execute(&during).await {
            out.error = Some(format!("set-action shutdown=pause reboot=reset: {e}"));
            return;
        }
        let timeout = RESET_TIMEOUT * crate::lab_vm::kvm::time_scale();
        let start = std::time::Instant::now();
        let result: Result<(), L1Error> = async {
            qmp.execute(&qapi::qmp::system_powerdown {})
                .await
                .map_err(L1Error::qmp_command("system_powerdown"))?;
            wait_status(qmp, |s| s == qapi::qmp::RunState::shutdown, start, timeout)
                .await
                .map_err(|status| L1Error::NoAcpiPowerOff { timeout, status })?;
            // The reset is carried out by QEMU's main loop, after the reply:
            // `cont` before it is refused ("Resetting the Virtual Machine is
            // required"). After it, L2 waits in prelaunch.
            qmp.execute(&qapi::qmp::system_reset {})
                .await
                .map_err(L1Error::qmp_command("system_reset"))?;
            wait_status(qmp, |s| s != qapi::qmp::RunState::shutdown, start, timeout)
                .await
                .map_err(|status| L1Error::NotReset { timeout, status })?;
            qmp.execute(&qapi::qmp::cont {})
                .await
                .map_err(L1Error::qmp_command("cont"))?;
            watch.wait_rebooted(timeout)
        }
        .await;
        if let Err(e) = result {
            out.error = Some(e.to_string());
        }
        let after = action(
            qapi::qmp::ShutdownAction::poweroff,
            qapi::qmp::RebootAction::shutdown,
        );
        if let Err(e) = qmp.execute(&after).await {
            out.error
                .get_or_insert(format!("set-action shutdown=poweroff reboot=shutdown: {e}"));
        }
        out.reset_log = watch.log();
    }

    /// Teardown, once L2 is gone: every journal, newest first.
    pub fn reattach_all(self, kernel: &Sysfs) -> Result<(), L1Error> {
        let failures: Vec<_> = self
            .detached
            .into_iter()
            .rev()
            .filter_map(|d| d.reattach(kernel).err())
            .collect();
        match failures.is_empty() {
            true => Ok(()),
            false => Err(L1Error::Reattach(failures)),
        }
    }
}

fn errors(list: Vec<Diagnostic>) -> Vec<Diagnostic> {
    list.into_iter().filter(Diagnostic::is_error).collect()
}

/// Polls `query-status` until `wanted` holds of L2's run state; Err with
/// the last state (or the QMP error) once `timeout` has passed since `start`.
async fn wait_status(
    qmp: &mut QmpSession,
    wanted: impl Fn(qapi::qmp::RunState) -> bool,
    start: std::time::Instant,
    timeout: std::time::Duration,
) -> Result<(), StatusWait> {
    loop {
        let status = qmp
            .execute(&qapi::qmp::query_status {})
            .await
            .map_err(StatusWait::Query)?;
        if wanted(status.status) {
            return Ok(());
        }
        if start.elapsed() > timeout {
            return Err(StatusWait::Still(status.status));
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// `device_add` for one assigned function, at its guest address.
pub fn device_add(a: &Assign, id: &str) -> qapi::qmp::device_add {
    let mut arguments = qapi::Dictionary::new();
    arguments.insert("host".into(), json!(a.host.to_string()));
    arguments.insert("addr".into(), json!(a.guest.qemu_addr()));
    if a.multifunction {
        // A JSON boolean: QEMU 10's device_add is typed ("Invalid parameter
        // type for 'multifunction', expected: boolean" for "on"); 7.2 takes
        // the boolean too.
        arguments.insert("multifunction".into(), json!(true));
    }
    qapi::qmp::device_add {
        driver: "vfio-pci".into(),
        bus: Some("pci.0".into()),
        id: Some(id.to_string()),
        arguments,
    }
}

async fn add_all(qmp: &mut QmpSession, step: &AttachPlan) -> Result<(), L1Error> {
    let mut added: Vec<(&Assign, &String)> = Vec::new();
    for (a, id) in &step.assign {
        if let Err(source) = qmp.execute(&device_add(a, id)).await {
            let mut undoing = Vec::new();
            for (a, id) in added.iter().rev() {
                if let Err(undo) = device_del(qmp, a.host, id).await {
                    undoing.push(undo);
                }
            }
            return Err(L1Error::DeviceAdd { source, undoing });
        }
        added.push((a, id));
    }
    Ok(())
}

/// `device_del` and the guest's release of the device, with a deadline.
async fn device_del(qmp: &mut QmpSession, host: lab::PciAddress, id: &str) -> Result<(), L1Error> {
    qmp.execute(&qapi::qmp::device_del { id: id.to_string() })
        .await?;
    qmp.wait_event(
        "DEVICE_DELETED",
        |d| d["device"] == id,
        DEVICE_DELETED_TIMEOUT,
    )
    .await
    .map(|_| ())
    .map_err(|_| L1Error::NotReleased {
        id: id.to_string(),
        host,
        waited: DEVICE_DELETED_TIMEOUT,
    })
}
