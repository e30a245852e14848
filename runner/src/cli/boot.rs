//! `mflab boot --topology NAME`: boot L1, list its PCI functions, power off.

use std::time::Duration;

use clap::Args;

use super::{CliError, Format, Outcome};
use crate::host::images::kernel_check::require;
use crate::host::images::{prepare_l1, proof_guest};
use crate::host::l1::boot::{boot, tail};
use crate::host::l1::cmdline::{l1_args, L1Config};
use crate::host::topology::load;
use crate::host::workdir::WorkDir;
use lab::machine::accel::probe;
use lab::protocol::paths::L1_SERIAL_LOG as SERIAL_LOG;
use lab::protocol::FunctionRow;

#[derive(Args)]
pub struct BootArgs {
    /// The L1 topology.
    #[arg(long, default_value = "gpu-audio", conflicts_with = "host",
          value_parser = clap::builder::PossibleValuesParser::new(
              crate::host::topology::BUILTIN.iter().map(|(name, _)| *name)))]
    topology: String,
    /// A reporter's PCI listing: boot the topology mflab builds from it.
    #[arg(long)]
    host: Option<std::path::PathBuf>,
    /// An interactive shell in L1 instead of the self-check.
    #[arg(long)]
    shell: bool,
    #[arg(long, value_enum, default_value_t)]
    format: Format,
    /// Run this shell script in L1 (as root, in the host-root chroot, the work
    /// directory at /mflab) instead of the self-check: for trying things by hand.
    #[arg(long, conflicts_with = "shell")]
    script: Option<std::path::PathBuf>,
    /// Keep the work directory (serial log, command line) even on success.
    #[arg(long)]
    keep: bool,
    /// Seconds before L1 is killed.
    #[arg(long, default_value_t = 180)]
    timeout: u64,
}

const SELF_CHECK: &str = "exec /mflab/mflab agent self-check --out /mflab/selfcheck.json\n";
const SHELL: &str = "echo 'mflab: L1 shell; exit to power off'\nexec setsid -c /bin/sh -i </dev/ttyS0 >/dev/ttyS0 2>&1\n";

pub fn run(mut args: BootArgs) -> Result<Outcome, CliError> {
    if let Some(listing) = &args.host {
        crate::host::reported_host::LabHost::load(listing)?;
        args.topology = crate::host::reported_host::topology_name(listing);
    }
    let topology = load(&args.topology)?;
    let l1_kvm =
        lab::machine::accel::decide(&lab::machine::accel::gather(std::path::Path::new("/")))
            .l1_kvm_module;
    require(&[&topology], l1_kvm.as_deref(), &[])?;
    let images = prepare_l1()?;
    let accel = probe(&proof_guest(Some(&images)));
    crate::host::l0_qemu::choose_and_say(&accel)?;
    let work = WorkDir::new("mflab-boot-").map_err(CliError::WorkDir)?;
    let config = L1Config {
        interactive: args.shell,
        ..L1Config::new(&topology, &images, &accel, work.path())
    };
    let custom = match &args.script {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|source| CliError::File {
                path: path.clone(),
                source,
            })?;
            Some(format!("{text}\n{SELF_CHECK}"))
        }
        None => None,
    };
    let script = match (&custom, args.shell) {
        (Some(text), _) => text.as_str(),
        (None, true) => SHELL,
        (None, false) => SELF_CHECK,
    };
    let result = boot(&config, script, Duration::from_secs(args.timeout));
    if crate::interrupt::interrupted() {
        eprintln!("mflab: interrupted; QEMU stopped, work directory removed");
        return Ok(Outcome::Interrupted);
    }
    if args.shell {
        return Ok(report_kept(work, args.keep, result.is_ok()));
    }
    let rows: Option<Vec<FunctionRow>> =
        std::fs::read_to_string(work.path().join("selfcheck.json"))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok());
    Ok(match (result, rows) {
        (Ok(outcome), Some(rows)) => {
            match args.format {
                Format::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(&rows).expect("rows serialize")
                ),
                Format::Text => {
                    println!(
                        "L1 ({}, {:?}, cpu {}): agent ready after {}, powered off after {:.1}s; its PCI functions:",
                        topology.name,
                        accel.accel,
                        accel.cpu,
                        outcome.ready.map_or("?".into(), |r| format!("{:.1}s", r.as_secs_f64())),
                        outcome.elapsed.as_secs_f64()
                    );
                    for r in &rows {
                        println!(
                            "  {} [{}:{}] class {} group {:<3} {}",
                            r.bdf,
                            &r.vendor[2..],
                            &r.device[2..],
                            &r.class[2..],
                            r.iommu_group.map_or("-".into(), |g| g.to_string()),
                            r.driver.as_deref().unwrap_or("(no driver)")
                        );
                    }
                }
            }
            report_kept(work, args.keep, true)
        }
        (result, _) => {
            let why = match result {
                Err(e) => e.to_string(),
                Ok(_) => "L1 powered off but the agent wrote no selfcheck.json".into(),
            };
            eprintln!("mflab: boot of topology {} failed: {why}", args.topology);
            eprintln!(
                "--- last lines of the serial log ---\n{}",
                tail(&work.path().join(SERIAL_LOG), 25)
            );
            eprintln!(
                "--- QEMU's own output ---\n{}",
                tail(&work.path().join("l1-qemu.log"), 10)
            );
            eprintln!(
                "--- command line ---\n{}",
                crate::host::l0_qemu::chosen().shell_line(&l1_args(&config))
            );
            report_kept(work, true, false);
            Outcome::Failed
        }
    })
}

fn report_kept(mut work: WorkDir, keep: bool, ok: bool) -> Outcome {
    if keep {
        eprintln!("mflab: work directory kept: {}", work.keep().display());
    }
    if ok {
        Outcome::Clean
    } else {
        Outcome::Failed
    }
}
