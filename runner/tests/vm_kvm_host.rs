//! mflab's KVM path, proven on a machine without hardware virtualization:
//! an outer VM under TCG with `-cpu max` (AMD SVM with nested paging, 2
//! vCPUs, 3.5 GiB, the host's root over 9p read-only, kvm_amd loaded: its
//! `/dev/kvm` is real KVM) runs `mflab probe` and one guest-depth
//! scenario on the mflab backend. Three levels of virtualization on TCG:
//! the outer VM, L1 under KVM in it, and L2 in L1 (nested KVM if L1's
//! KVM runs a guest, else TCG). Needs QEMU and a kernel: when they are
//! missing this fails, it never skips.

use std::path::Path;
use std::time::{Duration, Instant};

use lab::machine::accel::{Accel, AccelChoice};
use lab::protocol::paths::{L1_QEMU_LOG, WORK_MOUNT};
use mflab::host::images::L1Images;
use mflab::host::images::{cache_dir, prepare_l1, proof_guest_for};
use mflab::host::l1::boot::{boot, BootError, BootOutcome};
use mflab::host::l1::cmdline::L1Config;
use mflab::host::l1::process::VmError;
use mflab::host::topology::{parse, Topology};
use mflab::host::workdir::WorkDir;

// The outer VM: a KVM host made out of a TCG VM. It is an L1 like any
// other (the same kernel, initramfs, the host's root shared read-only
// over 9p, a chroot of it) but under TCG with `-cpu max`, which emulates
// AMD SVM with nested paging, so kvm_amd loads in it and its `/dev/kvm`
// is real KVM. A script runs in it as L1's agent would (`mflab probe`,
// `mflab run` there boot their own L1 under that KVM).

/// What it needs: its own L1 of 1 GiB (the default), that L1's L2, QEMU
/// and mflab on both levels, page cache for the 9p root; 2 vCPUs, as the
/// machine has (with one, L2 under KVM in L1 under KVM printed nothing
/// within its deadline in 2 of 2 tries: too slow to prove anything).
pub const MEMORY_MIB: u32 = 3584;

/// The outer VM's accelerator: TCG, with the CPU that gives its guest SVM.
pub fn accel() -> AccelChoice {
    AccelChoice {
        accel: Accel::Tcg,
        cpu: Accel::Tcg.cpu_model().into(),
        reason: "a KVM host made from a TCG VM: TCG's emulated AMD SVM with nested paging".into(),
        l2: "KVM on TCG's emulated SVM".into(),
        l1_kvm_module: Some("kvm_amd".into()),
        time_scale: 1,
    }
}

/// No functions under test: only the IOMMU the lab's L1 always has.
pub fn topology() -> Topology {
    parse(
        "kvm-host",
        "description = 'a KVM host made from a TCG VM: no functions under test'",
    )
    .expect("a topology with no slots parses")
}

/// Boots the outer VM with `script` as what runs inside (its work
/// directory at /mflab) and waits for its power-off within `timeout`.
pub fn boot_kvm_host(
    images: &L1Images,
    script: &str,
    work_dir: &Path,
    timeout: Duration,
) -> Result<BootOutcome, BootError> {
    let topology = topology();
    let accel = accel();
    let config = L1Config {
        memory_mib: MEMORY_MIB,
        // Emulated SVM under TCG has reset the outer VM with no word on
        // its console; QEMU's log then says "Triple fault".
        log_resets: true,
        ..L1Config::new(&topology, images, &accel, work_dir)
    };
    boot(&config, script, timeout)
}

/// The whole outer VM, from QEMU's start to its power-off: 377 s in one
/// run on a loaded 2-core machine (the test prints the figures).
const TIMEOUT: Duration = Duration::from_secs(720);
/// `mflab run` inside it, killed after this so that its logs still come out.
const RUN_LIMIT: Duration = Duration::from_secs(560);

/// Attempts of the whole outer VM: another one only when the one before
/// was spoiled by the lab (the outer VM's kernel panicked, it reset
/// itself, or its QEMU died before `mflab run` ended: emulated nested SVM
/// under TCG), printed as such. Two clean-clone runs on 2026-12-03 lost 6
/// of 6 attempts that way ("TASK stack guard page was hit" in
/// `exc_page_fault` three times, "corrupted stack end detected inside
/// scheduler", a 13 s soft lockup in KVM's MMU notifier), each at 70-260 s,
/// where a passing attempt takes about 380 s; three attempts were not
/// enough. So attempts go on while less than [`ATTEMPT_BUDGET`] has been
/// spent, [`ATTEMPTS`] at most: at worst that budget plus one [`TIMEOUT`].
const ATTEMPTS: usize = 6;
const ATTEMPT_BUDGET: Duration = Duration::from_secs(1500);

/// What the outer VM runs, in its work directory (`/mflab` inside).
const INNER_MFLAB: &str = "mflab-under-test";
const INNER_SCENARIO: &str = "scenario.toml";

/// How one attempt ended: passed, failed (the system's verdict), or
/// spoiled by the lab (worth another attempt).
enum Ending {
    Passed,
    Failed(String),
    LabFault(String),
}

#[test]
fn kvm_host_made_of_a_tcg_vm_runs_a_scenario_with_l1_under_kvm() {
    // The images the inner mflab needs, built here: the host's cache is
    // read-only in the outer VM, and building under TCG would be slow.
    let images = prepare_l1().expect("L1 images");
    let _ = proof_guest_for(&images.kernel);
    // The outer VM runs mflab and reads the scenario from its own work
    // directory (copied there by `attempt_once`): its /tmp is a tmpfs of
    // its own, which hides a checkout under the host's /tmp.
    let mflab = format!("{WORK_MOUNT}/{INNER_MFLAB}");
    let scenario = format!("{WORK_MOUNT}/{INNER_SCENARIO}");
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let script = format!(
        r#"export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME='{home}' MFLAB_CACHE='{cache}' MFLAB_NO_PROGRESS=1
while [ ! -e /run/mflab/late-modules ]; do sleep 0.2; done
cat /run/mflab/late-modules > /mflab/late-modules.txt
ls -l /dev/kvm > /mflab/dev-kvm.txt 2>&1
t0=$(cut -d' ' -f1 /proc/uptime)
'{mflab}' probe > /mflab/probe.txt 2>&1; echo $? > /mflab/probe.rc
t1=$(cut -d' ' -f1 /proc/uptime)
timeout -s KILL {run_limit} '{mflab}' run --backend mflab --keep --format json '{scenario}' > /mflab/run.json 2> /mflab/run.err; echo $? > /mflab/run.rc
t2=$(cut -d' ' -f1 /proc/uptime)
echo "ready $t0 probe $t1 run $t2" > /mflab/uptimes.txt
cat /tmp/mflab-run-*/l1-cmdline.txt > /mflab/inner-l1-cmdline.txt 2>/dev/null
for f in /tmp/mflab-*/*serial.log /tmp/mflab-*/*/*serial.log; do [ -f "$f" ] && {{ echo "== $f"; tail -n 20 "$f"; }}; done > /mflab/inner-serial.txt 2>&1
"#,
        cache = cache_dir().display(),
        run_limit = RUN_LIMIT.as_secs(),
    );
    let mut faults = Vec::new();
    let began = Instant::now();
    for attempt in 1..=ATTEMPTS {
        if attempt > 1 && began.elapsed() > ATTEMPT_BUDGET {
            say(&format!(
                "no attempt {attempt}: {:.0} s spent, past the {} s budget",
                began.elapsed().as_secs_f64(),
                ATTEMPT_BUDGET.as_secs()
            ));
            break;
        }
        say(&format!("attempt {attempt} of at most {ATTEMPTS}"));
        match attempt_once(&images, &script) {
            Ending::Passed => {
                if !faults.is_empty() {
                    say(&format!(
                        "FLAKY: passed on attempt {attempt} after {} lab fault(s):\n{}",
                        faults.len(),
                        faults.join("\n")
                    ));
                }
                return;
            }
            Ending::Failed(why) => panic!("{why}"),
            Ending::LabFault(why) => {
                say(&format!(
                    "LAB FAULT on attempt {attempt} (retried if attempts remain):\n{why}"
                ));
                faults.push(why);
            }
        }
    }
    panic!(
        "every attempt was spoiled by the lab ({} attempts, at most {ATTEMPTS} within {} s):\n{}",
        faults.len(),
        ATTEMPT_BUDGET.as_secs(),
        faults.join("\n")
    );
}

/// One outer VM from boot to power-off, and its verdict.
fn attempt_once(images: &L1Images, script: &str) -> Ending {
    let mut work = WorkDir::new("mflab-kvmhost-").expect("work directory");
    std::fs::copy(env!("CARGO_BIN_EXE_mflab"), work.path().join(INNER_MFLAB))
        .expect("mflab copied into the outer VM's work directory");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/gpu-audio-unassigned.toml"),
        work.path().join(INNER_SCENARIO),
    )
    .expect("scenario copied into the outer VM's work directory");
    let start = Instant::now();
    let booted = boot_kvm_host(images, script, work.path(), TIMEOUT);
    let elapsed = start.elapsed();
    let read = |name: &str| std::fs::read_to_string(work.path().join(name)).unwrap_or_default();
    let serial = read("l1-serial.log");
    let probe = read("probe.txt");
    let probe_rc = read("probe.rc");
    let run_err = read("run.err");
    let run_json = read("run.json");
    let run_rc = read("run.rc");
    let l1_cmdline = read("inner-l1-cmdline.txt");
    println!(
        "outer VM (TCG, -cpu max): {:.1} s wall, QEMU start to power-off",
        elapsed.as_secs_f64()
    );
    println!("uptimes inside it (s): {}", read("uptimes.txt").trim());
    println!("/dev/kvm in it: {}", read("dev-kvm.txt").trim());
    println!(
        "--- mflab probe inside it (exit {}):\n{probe}",
        probe_rc.trim()
    );
    println!(
        "--- mflab run inside it (exit {}), stderr:\n{run_err}",
        run_rc.trim()
    );
    println!("--- its JSON:\n{run_json}");
    say(&format!(
        "outer VM {:.1} s; uptimes inside it (s): {}",
        elapsed.as_secs_f64(),
        read("uptimes.txt").trim()
    ));
    for line in probe
        .lines()
        .filter(|l| l.contains("accelerator:") || l.contains("why:"))
    {
        say(&format!("probe: {}", line.trim()));
    }
    for line in run_err.lines().filter(|l| l.contains("L1 runs under")) {
        say(line.trim());
    }
    println!(
        "--- inner serial logs (tails):\n{}",
        read("inner-serial.txt")
    );
    // The first check that does not hold ends the attempt; its work
    // directory is kept and named.
    macro_rules! ensure {
        ($ok:expr, $lab:expr, $what:expr $(,)?) => {
            if !$ok {
                let why = format!(
                    "{}\nwork directory kept: {}\nouter VM serial (last lines):\n{}",
                    $what,
                    work.keep().display(),
                    tail(&serial, 30)
                );
                return match $lab {
                    true => Ending::LabFault(why),
                    false => Ending::Failed(why),
                };
            }
        };
    }
    let panicked = serial.contains("Kernel panic") || serial.contains("BUG: ");
    if let Err(e) = &booted {
        // Once the probe is done, what runs is under `timeout -s KILL`
        // (RUN_LIMIT): an outer VM still up at TIMEOUT was frozen whole
        // (nothing after "L1 ready", its own KILL never fired).
        let frozen = !probe_rc.trim().is_empty() && matches!(e, BootError::Vm(VmError::Timeout(_)));
        ensure!(
            false,
            panicked || frozen,
            format!(
                "the outer VM failed: {e}{}",
                if frozen {
                    " (frozen: its own `timeout` never fired)"
                } else {
                    ""
                }
            )
        );
    }
    // The script ran to its end. An outer VM whose kernel panicked, that
    // reset itself (a triple fault: its console says nothing, QEMU's log
    // does), or whose QEMU died did not, and none of these is mflab's.
    let qemu_log = read(L1_QEMU_LOG);
    let triple_fault = qemu_log.contains("Triple fault");
    let status = booted.as_ref().map(|b| b.status).ok();
    let qemu_died = status.is_some_and(|s| !s.success());
    ensure!(
        !run_rc.trim().is_empty(),
        panicked || triple_fault || qemu_died,
        format!(
            "the outer VM stopped before `mflab run` ended: {} (QEMU {}; its log without register dumps:\n{})",
            if panicked {
                "its kernel panicked"
            } else if triple_fault {
                "it triple-faulted (QEMU's log says \"Triple fault\"; TCG's emulated SVM)"
            } else if qemu_died {
                "its QEMU died"
            } else {
                "no panic, no triple fault, QEMU exited 0 (see its serial log below)"
            },
            status.map_or("did not end".into(), |s| s.to_string()),
            qemu_log_events(&qemu_log),
        ),
    );
    // The probe chose KVM with the host's CPU, proven by a guest.
    ensure!(
        probe.contains("accelerator: kvm (L1 cpu host)") && probe.contains("ran under -accel kvm"),
        false,
        "the probe did not choose proven KVM with -cpu host",
    );
    ensure!(
        probe_rc.trim() == "0",
        false,
        format!("mflab probe exited {}", probe_rc.trim()),
    );
    // L1 ran under KVM.
    ensure!(
        run_err.contains("mflab: L1 runs under kvm (-cpu host)"),
        false,
        "L1 did not run under KVM",
    );
    // Under KVM its intel-iommu remaps interrupts, as on a real host.
    println!("--- L1's command line there:\n{l1_cmdline}");
    ensure!(
        l1_cmdline.contains("-machine q35,accel=kvm,kernel-irqchip=split")
            && l1_cmdline.contains("-cpu host")
            && l1_cmdline.contains("intel-iommu,caching-mode=on,intremap=on"),
        false,
        "L1's command line under KVM lacks -cpu host or interrupt remapping",
    );
    let outcomes: Vec<serde_json::Value> = serde_json::from_str(&run_json).unwrap_or_default();
    ensure!(outcomes.len() == 1, false, "mflab run printed no outcome");
    let o = &outcomes[0];
    let l2 = o["l2_accel"].as_str().unwrap_or("none").to_string();
    say(&format!(
        "L2 ran on: {l2}; scenario {} in {:.1} s",
        if o["passed"] == true {
            "passed"
        } else {
            "FAILED"
        },
        o["seconds"].as_f64().unwrap_or(0.0)
    ));
    ensure!(
        matches!(l2.as_str(), "kvm" | "tcg"),
        false,
        format!("L2's accelerator not reported: {l2}"),
    );
    ensure!(
        o["passed"] == true,
        false,
        format!("the scenario did not pass: {o}"),
    );
    ensure!(
        run_rc.trim() == "0",
        false,
        format!("mflab run exited {}", run_rc.trim()),
    );
    Ending::Passed
}

/// A line for the test's output even when it passes: `cargo test`
/// captures `println!`, not writes to the process's stderr, and CI's log
/// must show what the probe chose and what L2 ran on.
fn say(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "vm_kvm_host: {line}");
}

/// QEMU's log under `-d cpu_reset` less the registers it dumps at each
/// reset ("CPU Reset (CPU 0)", "Triple fault", QEMU's own errors).
fn qemu_log_events(log: &str) -> String {
    let events: Vec<&str> = log.lines().filter(|l| !l.contains('=')).collect();
    tail(&events.join("\n"), 12)
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
