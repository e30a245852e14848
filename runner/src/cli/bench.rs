//! `mflab bench`: where the time goes, in one run, as figures and ratios.
//! Nothing here is asserted; tests never time anything.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use clap::Args;
use lab::machine::accel::{probe, AccelChoice};
use lab::machine::qemu_cmdline::DirectBoot;
use lab::protocol::{Backend, Depth, Stage};

use super::{CliError, Outcome};
use crate::host::images::{
    cache_dir, floor_initramfs, prepare_l1, proof_guest, ImageError, L1Images,
};
use crate::host::l0_qemu::QemuError;
use crate::host::l1::boot::{boot, BootError};
use crate::host::l1::cmdline::L1Config;
use crate::host::l1::process::{QemuProcess, VmError};
use crate::host::l1::shared::L1Slot;
use crate::host::progress::Quiet;
use crate::host::scenario::{discover, load, ScenarioError};
use crate::host::suite::attempt::{run_scenario, RunOptions, Watch};
use crate::host::topology::{self, TopologyError, BUILTIN};
use crate::host::workdir::WorkDir;

#[derive(Args)]
pub struct BenchArgs {
    /// Runs per measurement (the median is printed).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Also run the whole scenario suite once and print its wall time.
    #[arg(long)]
    suite: bool,
    /// With --suite: the second suite run uses this many jobs (the first, one).
    #[arg(long, default_value_t = 2)]
    jobs: usize,
    /// The scenario timed at each depth.
    #[arg(long, default_value = "scenarios/gpu-audio-unassigned.toml")]
    scenario: PathBuf,
    /// Instead of the whole bench: the figures that L0's QEMU moves (the
    /// floor, L1's boot, the scenario at guest depth on a shared L1 on
    /// both backends; the suite with --suite), under the chosen QEMU and
    /// under this one (`host`, `backports`, `debian-13` or a path), side
    /// by side with their ratio.
    #[arg(long, value_name = "QEMU")]
    against_qemu: Option<String>,
}

/// Why a measurement could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("interrupted")]
    Interrupted,
    #[error(transparent)]
    Qemu(#[from] QemuError),
    #[error(transparent)]
    Images(#[from] ImageError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Scenario(#[from] ScenarioError),
    #[error(transparent)]
    Topology(#[from] TopologyError),
    #[error(transparent)]
    Vm(#[from] VmError),
    #[error(transparent)]
    Boot(#[from] BootError),
    #[error("the agent never became ready")]
    NeverReady,
}

/// Between two measurements: stop if Ctrl-C or SIGTERM came (each
/// measurement has already cleaned up after itself).
fn checkpoint() -> Result<(), BenchError> {
    if crate::interrupt::interrupted() {
        return Err(BenchError::Interrupted);
    }
    Ok(())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// `runs` runs of `s` on the slot's shared L1: the median seconds, and
/// each stage's seconds (measured inside L1) run by run.
fn shared_runs(
    s: &crate::host::scenario::Scenario,
    images: &L1Images,
    accel: &AccelChoice,
    options: &RunOptions,
    slot: &mut L1Slot,
    runs: usize,
) -> (f64, BTreeMap<Stage, Vec<f64>>) {
    let quiet = Watch {
        observer: &Quiet,
        run: 0,
    };
    let mut stages: BTreeMap<Stage, Vec<f64>> = BTreeMap::new();
    let secs: Vec<f64> = (0..runs)
        .map(|_| {
            let run = run_scenario(s, images, accel, options, Some(slot), quiet);
            for (stage, secs) in &run.outcome.timings {
                stages.entry(*stage).or_default().push(*secs);
            }
            run.elapsed.as_secs_f64()
        })
        .collect();
    (median(secs), stages)
}

/// Where a shared-L1 run's time goes, stage by stage (inside L1).
fn print_stages(stages: BTreeMap<Stage, Vec<f64>>) {
    for (stage, secs) in stages {
        println!("    {:<42} {:>7.2} s", stage.name(), median(secs));
    }
}

fn line(label: &str, secs: f64, floor: f64) {
    println!("  {label:<44} {secs:>7.2} s   {:>5.1}x floor", secs / floor);
}

pub fn run(args: BenchArgs) -> Result<Outcome, CliError> {
    match bench(&args) {
        Ok(()) => Ok(Outcome::Clean),
        // Whatever failed, it failed because the measurement was cut off.
        Err(_) if crate::interrupt::interrupted() => Ok(Outcome::Interrupted),
        Err(e) => Err(e.into()),
    }
}

fn bench(args: &BenchArgs) -> Result<(), BenchError> {
    let accel = probe(&proof_guest(prepare_l1().ok().as_ref()));
    let qemu = crate::host::l0_qemu::choose_and_say(&accel)?;
    if let Some(other) = &args.against_qemu {
        return qemu_side_by_side(args, &accel, qemu, other);
    }
    println!(
        "mflab bench: {:?} ({}), {} run(s) each, median",
        accel.accel, accel.reason, args.runs
    );

    // Images: cold (a fresh cache that shares only the unpacked kernel) and cached.
    let real_cache = cache_dir();
    prepare_l1()?;
    let cold_cache = tempfile::tempdir()?;
    std::os::unix::fs::symlink(
        real_cache.join("kernels"),
        cold_cache.path().join("kernels"),
    )?;
    std::env::set_var("MFLAB_CACHE", cold_cache.path());
    let t = Instant::now();
    prepare_l1()?;
    let cold = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let images = prepare_l1()?;
    let cached = t.elapsed().as_secs_f64();
    std::env::set_var("MFLAB_CACHE", &real_cache);
    println!("images (L1 + L2 initramfs; kernel already unpacked):");
    println!("  {:<44} {cold:>7.2} s", "build, cold");
    println!("  {:<44} {cached:>7.3} s", "build, cached");

    let floor_bz = median(
        (0..args.runs)
            .map(|_| {
                checkpoint().and_then(|()| floor_boot(&images, &images.kernel.vmlinuz, &accel))
            })
            .collect::<Result<Vec<_>, _>>()?,
    );
    let floor = median(
        (0..args.runs)
            .map(|_| checkpoint().and_then(|()| floor_boot(&images, &images.boot_kernel, &accel)))
            .collect::<Result<Vec<_>, _>>()?,
    );
    let mut ready = Vec::new();
    let mut off = Vec::new();
    for _ in 0..args.runs {
        checkpoint()?;
        let (r, o) = l1_boot(&images, &accel)?;
        ready.push(r);
        off.push(o);
    }
    println!(
        "boot (L0's {} kernel {}):",
        qemu.describe(),
        images.kernel.version
    );
    line("floor: bare bzImage, init powers off", floor_bz, floor);
    line(
        "floor: PVH ELF (what mflab boots), init powers off",
        floor,
        floor,
    );
    line(
        "L1 (gpu-audio): runner start to agent ready",
        median(ready),
        floor,
    );
    line(
        "L1 (gpu-audio): ... to KVM loaded, powered off",
        median(off),
        floor,
    );
    match virtme_ng(&images, args.runs) {
        Some((v, status)) => {
            line("virtme-ng: vng --run --disable-kvm --exec true", v, floor);
            if status != Some(0) {
                println!("  {:<44} (vng exited {status:?})", "");
            }
        }
        None => println!(
            "  {:<44} not installed (pip install virtme-ng; needs kmod)",
            "virtme-ng"
        ),
    }

    let known: Vec<&str> = BUILTIN.iter().map(|(n, _)| *n).collect();
    let base = load(&args.scenario, &known)?;
    println!(
        "one scenario ({}) per depth, its own L1 / on a shared L1 that is up:",
        base.name
    );
    let mut pool = L1Slot::default();
    let quiet = Watch {
        observer: &Quiet,
        run: 0,
    };
    for depth in [Depth::Rules, Depth::Plan, Depth::Qmp, Depth::Guest] {
        checkpoint()?;
        let mut s = base.clone();
        s.depth = depth;
        s.expect = Default::default();
        let fresh: Vec<f64> = (0..args.runs)
            .map(|_| {
                run_scenario(&s, &images, &accel, &RunOptions::default(), None, quiet)
                    .elapsed
                    .as_secs_f64()
            })
            .collect();
        // The first run on the pool boots its L1; time the ones after.
        let mflab = RunOptions::default();
        run_scenario(&s, &images, &accel, &mflab, Some(&mut pool), quiet);
        let (shared, stages) = shared_runs(&s, &images, &accel, &mflab, &mut pool, args.runs);
        line(&format!("depth {depth}, its own L1"), median(fresh), floor);
        line(&format!("depth {depth}, shared L1"), shared, floor);
        print_stages(stages);
        // libvirt's backend beside mflab's, on the same shared L1.
        if depth != Depth::Rules && base.backends.contains(&Backend::Libvirt) {
            let libvirt = RunOptions {
                backend: Backend::Libvirt,
                ..Default::default()
            };
            let (secs, stages) = shared_runs(&s, &images, &accel, &libvirt, &mut pool, args.runs);
            println!(
                "  {:<44} {secs:>7.2} s   {:>5.2}x the mflab backend",
                format!("depth {depth}, shared L1, libvirt backend"),
                secs / shared
            );
            print_stages(stages);
        }
    }
    drop(pool);

    if args.suite {
        let count = discover(&[PathBuf::from("scenarios")])?.len();
        println!("suite: {count} scenarios, mflab backend, shared L1s (`mflab run --backend mflab --jobs N`):");
        for jobs in [1, args.jobs.max(2)] {
            checkpoint()?;
            let (secs, summary) = suite_wall(jobs, None)?;
            println!(
                "  {:<44} {secs:>7.2} s   {summary}",
                format!("--jobs {jobs}")
            );
        }
    }
    Ok(())
}

/// `mflab bench --against-qemu OTHER`: each figure L0's QEMU moves, under
/// `first` and then under OTHER, one pass after the other on this machine.
fn qemu_side_by_side(
    args: &BenchArgs,
    accel: &AccelChoice,
    first: &'static crate::host::l0_qemu::L0Qemu,
    other: &str,
) -> Result<(), BenchError> {
    use crate::host::l0_qemu::{resolve, switch_to};
    let second = resolve(Some(other), Some(accel.accel))?;
    let images = prepare_l1()?;
    let known: Vec<&str> = BUILTIN.iter().map(|(n, _)| *n).collect();
    let mut scenario = load(&args.scenario, &known)?;
    scenario.depth = Depth::Guest;
    scenario.expect = Default::default();
    let mut columns = Vec::new();
    for q in [first, switch_to(second)] {
        eprintln!("mflab bench: under L0's {}", q.describe());
        columns.push((
            q.describe(),
            qemu_figures(args, &images, accel, &scenario, q)?,
        ));
    }
    switch_to(first.clone());
    println!(
        "L0's QEMU side by side, median of {} run(s) each ({}):",
        args.runs, accel.accel
    );
    println!(
        "  {:<54} {:>26} {:>26} {:>7}",
        "", columns[0].0, columns[1].0, "ratio"
    );
    for (i, (label, a)) in columns[0].1.iter().enumerate() {
        let b = columns[1].1[i].1;
        println!("  {label:<54} {a:>24.2} s {b:>24.2} s {:>6.2}x", a / b);
    }
    Ok(())
}

/// The figures of [`qemu_side_by_side`] under L0's QEMU `q` (the one
/// [`crate::host::l0_qemu::chosen`] gives now).
fn qemu_figures(
    args: &BenchArgs,
    images: &L1Images,
    accel: &AccelChoice,
    scenario: &crate::host::scenario::Scenario,
    q: &crate::host::l0_qemu::L0Qemu,
) -> Result<Vec<(String, f64)>, BenchError> {
    let mut figures = Vec::new();
    let floor = (0..args.runs)
        .map(|_| checkpoint().and_then(|()| floor_boot(images, &images.boot_kernel, accel)))
        .collect::<Result<Vec<_>, _>>()?;
    figures.push(("floor: PVH ELF, init powers off".to_string(), median(floor)));
    let mut ready = Vec::new();
    for _ in 0..args.runs {
        checkpoint()?;
        ready.push(l1_boot(images, accel)?.0);
    }
    figures.push((
        "L1 (gpu-audio): runner start to agent ready".into(),
        median(ready),
    ));
    let mut pool = L1Slot::default();
    let quiet = Watch {
        observer: &Quiet,
        run: 0,
    };
    for backend in [Backend::Mflab, Backend::Libvirt] {
        checkpoint()?;
        let options = RunOptions {
            backend,
            ..Default::default()
        };
        // The first run on the pool boots its L1 (libvirt's: its daemon too).
        run_scenario(scenario, images, accel, &options, Some(&mut pool), quiet);
        let (secs, _) = shared_runs(scenario, images, accel, &options, &mut pool, args.runs);
        figures.push((
            format!("{}, guest depth, shared L1, {backend}", scenario.name),
            secs,
        ));
    }
    drop(pool);
    if args.suite {
        checkpoint()?;
        let (secs, _) = suite_wall(1, Some(&q.source))?;
        figures.push(("suite, mflab backend, --jobs 1".into(), secs));
    }
    Ok(figures)
}

/// One `mflab run` of the whole suite, as a user runs it (under `qemu`,
/// `--qemu`'s word, where given): its wall time and its own summary line.
fn suite_wall(jobs: usize, qemu: Option<&str>) -> Result<(f64, String), BenchError> {
    let exe = std::env::current_exe()?;
    let t = Instant::now();
    let mut child = Command::new(exe)
        .args(["run", "--backend", "mflab", "--jobs", &jobs.to_string()])
        .args(qemu.map(|q| format!("--qemu={q}")))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let mut stdout = child.stdout.take().expect("piped");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut stdout, &mut text);
        text
    });
    // Passed on: the run unwinds (its QEMUs and work directories go) and exits.
    while child.try_wait()?.is_none() {
        if crate::interrupt::interrupted() {
            // SAFETY: kill(2) on our own child's pid.
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
            let _ = child.wait();
            return Err(BenchError::Interrupted);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let secs = t.elapsed().as_secs_f64();
    let stdout = reader.join().unwrap_or_default();
    let summary = stdout.lines().last().unwrap_or("no summary").to_string();
    Ok((secs, summary))
}

fn floor_boot(
    images: &L1Images,
    kernel: &std::path::Path,
    accel: &AccelChoice,
) -> Result<f64, BenchError> {
    let (initrd, _) = floor_initramfs(&images.kernel)?;
    let args = DirectBoot {
        name: "mflab-floor",
        machine: &format!("q35,accel={}", accel.accel),
        cpu: &accel.cpu,
        memory_mib: 1024,
        smp: 1,
        kernel,
        initrd: &initrd,
        append: "console=ttyS0 quiet panic=-1",
    }
    .args();
    let work = WorkDir::new("mflab-bench-")?;
    let t = Instant::now();
    QemuProcess::spawn(
        crate::host::l0_qemu::chosen(),
        &args,
        &work.path().join("qemu.log"),
        false,
    )?
    .wait(Duration::from_secs(120), || Ok(()))?;
    Ok(t.elapsed().as_secs_f64())
}

const WAIT_FOR_KVM: &str = "while [ ! -e /run/mflab/late-modules ]; do sleep 0.01; done\n";

fn l1_boot(images: &L1Images, accel: &AccelChoice) -> Result<(f64, f64), BenchError> {
    let topology = topology::load("gpu-audio")?;
    let work = WorkDir::new("mflab-bench-")?;
    let config = L1Config::new(&topology, images, accel, work.path());
    let t = Instant::now();
    // KVM loads behind the agent (images/l1-late-modules.txt): the agent
    // waits for it and exits, so power-off comes just after KVM is in.
    let outcome = boot(&config, WAIT_FOR_KVM, Duration::from_secs(180))?;
    let ready = outcome.ready.ok_or(BenchError::NeverReady)?;
    // Count from the runner's start of this boot, copying the binary included.
    let extra = t.elapsed().saturating_sub(outcome.elapsed);
    Ok(((ready + extra).as_secs_f64(), t.elapsed().as_secs_f64()))
}

/// `vng --run` of the same kernel under TCG, timed from start to exit.
/// virtme-ng 1.42 exits 255 here even when the guest ran its command (it
/// finds no virtio-serial ports and falls back to the console), so a run
/// counts when vng started; the exit status is printed beside the time.
fn virtme_ng(images: &L1Images, runs: usize) -> Option<(f64, Option<i32>)> {
    Command::new("vng").arg("--version").output().ok()?;
    let mut status = None;
    let times: Vec<f64> = (0..runs)
        .filter_map(|_| {
            let t = Instant::now();
            let out = Command::new("vng")
                .args([
                    "--run",
                    &images.kernel.vmlinuz.display().to_string(),
                    "--disable-kvm",
                    "--force-9p",
                    "--exec",
                    "true",
                ])
                .output()
                .ok()?;
            status = out.status.code();
            Some(t.elapsed().as_secs_f64())
        })
        .collect();
    (!times.is_empty()).then(|| (median(times), status))
}
