//! `mflab run [PATH…]`: run scenarios (default `scenarios/`), or a bare
//! domain XML with `--xml FILE --topology NAME` to reproduce a bug report.

use std::path::PathBuf;

use clap::Args;
use lab::outcome::{Backend, Depth};
use lab::plan::Policy;

use super::plan::PolicyArg;
use super::{Format, Outcome};
use crate::accel::probe;
use crate::images::prepare_l1;
use crate::run::{describe_l2, run_scenario, RunOptions, ScenarioReport};
use crate::scenario::{discover, load, Expect, Scenario};
use crate::shared_l1::L1Pool;
use crate::topology::BUILTIN;

#[derive(Args)]
pub struct RunArgs {
    /// Scenario files or directories.
    #[arg(default_value = "scenarios")]
    paths: Vec<PathBuf>,
    /// Keep every work directory (failed ones are always kept).
    #[arg(long)]
    keep: bool,
    /// Who carries the domain out in L1: mflab's own logic, a real libvirt
    /// daemon, or both side by side (with a table of their differences).
    /// Without it, each scenario runs under the backends it lists
    /// (`backends = […]`, default mflab).
    #[arg(long, value_enum)]
    backend: Option<BackendArg>,
    /// A directory with another libvirt build's libvirtd and virsh (seen from L1,
    /// which shares the host's root).
    #[arg(long)]
    libvirt_bin: Option<PathBuf>,
    /// Independent L1s run side by side (default: from cores and memory).
    #[arg(long)]
    jobs: Option<usize>,
    /// Boot a fresh L1 for every scenario instead of sharing one per topology.
    #[arg(long)]
    fresh_l1: bool,
    /// Run in an order shuffled with this seed (results must not depend on order).
    #[arg(long)]
    shuffle: Option<u64>,
    /// Write a JUnit XML report for CI dashboards.
    #[arg(long)]
    junit: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t)]
    format: Format,
    /// Run this domain XML as it is, without a scenario file.
    #[arg(long, requires = "topology")]
    xml: Option<PathBuf>,
    /// The L1 topology for --xml.
    #[arg(long)]
    topology: Option<String>,
    /// The policy for --xml.
    #[arg(long, value_enum, default_value_t = PolicyArg::Fixed)]
    policy: PolicyArg,
    /// The depth for --xml: rules, plan, qmp or guest.
    #[arg(long, default_value = "guest", value_parser = parse_depth)]
    depth: Depth,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum BackendArg {
    Mflab,
    Libvirt,
    Both,
}

impl BackendArg {
    fn backends(self) -> Vec<Backend> {
        match self {
            BackendArg::Mflab => vec![Backend::Mflab],
            BackendArg::Libvirt => vec![Backend::Libvirt],
            BackendArg::Both => vec![Backend::Mflab, Backend::Libvirt],
        }
    }
}

/// One L1 per 2 cores and per 4 GiB of memory (an L1 takes 2 vCPUs, 2 GiB
/// plus QEMU's own), at least one.
fn default_jobs() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemAvailable:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(4, |kib| kib / (1024 * 1024));
    (cores / 2).min(mem_gib as usize / 4).max(1)
}

/// A small deterministic shuffle (xorshift), so a seed reproduces an order.
fn shuffle<T>(items: &mut [T], seed: u64) {
    let mut x = seed.max(1);
    for i in (1..items.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        items.swap(i, (x % (i as u64 + 1)) as usize);
    }
}

fn parse_depth(s: &str) -> Result<Depth, String> {
    serde_json::from_value(serde_json::Value::String(s.into()))
        .map_err(|_| format!("'{s}' is not a depth; write rules, plan, qmp or guest"))
}

fn known() -> Vec<&'static str> {
    BUILTIN.iter().map(|(n, _)| *n).collect()
}

pub fn run(args: RunArgs) -> Outcome {
    let scenarios = match &args.xml {
        Some(xml) => match bare_xml_scenario(xml, &args) {
            Ok(s) => vec![s],
            Err(e) => {
                eprintln!("mflab: {e}");
                return Outcome::UsageOrIo;
            }
        },
        None => match discover(&args.paths).and_then(|files| {
            files
                .iter()
                .map(|f| load(f, &known()))
                .collect::<Result<Vec<_>, _>>()
        }) {
            Ok(s) if s.is_empty() => {
                eprintln!("mflab: no scenario (*.toml) under {:?}", args.paths);
                return Outcome::UsageOrIo;
            }
            Ok(s) => s,
            Err(e) => {
                eprintln!("mflab: {e}");
                return Outcome::UsageOrIo;
            }
        },
    };
    let needs_vm = scenarios.iter().any(|s| s.depth != Depth::Rules);
    let images = if needs_vm {
        match prepare_l1() {
            Ok(i) => Some(i),
            Err(e) => {
                eprintln!("mflab: images: {e}");
                return Outcome::UsageOrIo;
            }
        }
    } else {
        None
    };
    let accel = probe();
    // Every (scenario, backend) to run, in order; `--shuffle` reorders them.
    let mut items: Vec<(usize, Backend)> = Vec::new();
    for (i, s) in scenarios.iter().enumerate() {
        for backend in args
            .backend
            .map_or_else(|| s.backends.clone(), BackendArg::backends)
        {
            // No VM at rules depth: libvirt's static verdict is `mflab check --backend libvirt`.
            if !(backend == Backend::Libvirt && s.depth == Depth::Rules) {
                items.push((i, backend));
            }
        }
    }
    match args.shuffle {
        Some(seed) => shuffle(&mut items, seed),
        // Scenarios of one topology one after the other, so a shared L1 serves them in a row.
        None => items.sort_by_key(|&(i, _)| scenarios[i].topology.clone()),
    }
    let tag_backend = items.iter().any(|(_, b)| *b == Backend::Libvirt);
    let jobs = args.jobs.unwrap_or_else(default_jobs).max(1);
    let queue = std::sync::Mutex::new(
        items
            .iter()
            .copied()
            .enumerate()
            .collect::<std::collections::VecDeque<_>>(),
    );
    let done: std::sync::Mutex<Vec<Option<ScenarioReport>>> =
        std::sync::Mutex::new((0..items.len()).map(|_| None).collect());
    let boots = std::sync::atomic::AtomicU32::new(0);
    let wall = std::time::Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|| {
                // Each worker has its own L1s, one per topology.
                let mut pool = L1Pool::default();
                loop {
                    let next = queue.lock().expect("queue").pop_front();
                    let Some((slot, (i, backend))) = next else {
                        break;
                    };
                    if crate::interrupt::interrupted() {
                        break;
                    }
                    let s = &scenarios[i];
                    let options = RunOptions {
                        backend,
                        libvirt_bin: args.libvirt_bin.clone(),
                        keep: args.keep,
                    };
                    let report = match &images {
                        Some(images) => run_scenario(
                            s,
                            images,
                            &accel,
                            &options,
                            (!args.fresh_l1).then_some(&mut pool),
                        ),
                        None => run_scenario_without_vm(s),
                    };
                    if crate::interrupt::interrupted() {
                        break;
                    }
                    if args.format == Format::Text {
                        print_report(s, &report, args.xml.is_some(), tag_backend);
                    }
                    done.lock().expect("results")[slot] = Some(report);
                }
                boots.fetch_add(pool.boots, std::sync::atomic::Ordering::SeqCst);
            });
        }
    });
    let done = done.into_inner().expect("results");
    if crate::interrupt::interrupted() {
        let finished = done.iter().filter(|r| r.is_some()).count();
        eprintln!("mflab: interrupted; {finished} of {} runs had finished; QEMU stopped, work directories removed", items.len());
        return Outcome::Interrupted;
    }
    // Reports back in scenario order, so that output and JUnit do not depend on --jobs or --shuffle.
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by_key(|&k| (items[k].0, items[k].1 == Backend::Libvirt));
    let mut slots: Vec<Option<ScenarioReport>> = done;
    let reports: Vec<ScenarioReport> = order.iter().filter_map(|&k| slots[k].take()).collect();
    let mut pairs = Vec::new();
    for (k, r) in reports.iter().enumerate() {
        if r.backend == Backend::Libvirt
            && k > 0
            && reports[k - 1].name == r.name
            && reports[k - 1].backend == Backend::Mflab
        {
            pairs.push((k - 1, k));
        }
    }
    if args.format == Format::Text && args.xml.is_none() {
        let shared = if args.fresh_l1 {
            "one L1 per scenario".to_string()
        } else {
            format!(
                "{} L1 boot(s) shared",
                boots.load(std::sync::atomic::Ordering::SeqCst)
            )
        };
        eprintln!(
            "mflab: {} run(s) in {:.1}s wall, {jobs} job(s), {shared}",
            reports.len(),
            wall.elapsed().as_secs_f64()
        );
    }
    if args.format == Format::Text && !pairs.is_empty() {
        print!(
            "{}",
            crate::compare_backends::side_by_side(&reports, &pairs)
        );
    }
    if let Some(path) = &args.junit {
        if let Err(e) = std::fs::write(path, junit(&reports)) {
            eprintln!("mflab: {}: {e}", path.display());
            return Outcome::UsageOrIo;
        }
    }
    if args.format == Format::Json {
        let objects: Vec<serde_json::Value> = reports.iter().map(json_object).collect();
        let value = if args.xml.is_some() {
            objects.into_iter().next().unwrap_or_default()
        } else {
            serde_json::Value::Array(objects)
        };
        println!(
            "{}",
            serde_json::to_string_pretty(&value).expect("report serializes")
        );
    }
    let failed = reports.iter().filter(|r| !r.passed()).count();
    if args.format == Format::Text && args.xml.is_none() {
        println!("{} passed, {} failed", reports.len() - failed, failed);
    }
    if failed == 0 {
        Outcome::Clean
    } else {
        Outcome::RuleErrors
    }
}

fn run_scenario_without_vm(s: &Scenario) -> ScenarioReport {
    // Rules depth never touches the images; the accelerator is irrelevant.
    let images = crate::images::L1Images::none();
    run_scenario(s, &images, &probe(), &RunOptions::default(), None)
}

/// `--xml FILE`: a scenario whose only expectation is that nothing fails.
fn bare_xml_scenario(xml: &PathBuf, args: &RunArgs) -> Result<Scenario, String> {
    let text =
        std::fs::read_to_string(xml).map_err(|e| format!("cannot read {}: {e}", xml.display()))?;
    let topology = args.topology.clone().unwrap_or_default();
    if !known().contains(&topology.as_str()) {
        return Err(format!(
            "unknown topology '{topology}'; the shipped ones are: {}",
            known().join(", ")
        ));
    }
    Ok(Scenario {
        name: xml.display().to_string(),
        description: String::new(),
        topology,
        policy: Policy::from(args.policy),
        depth: args.depth,
        xml_name: xml.display().to_string(),
        xml: text,
        kill_l2: false,
        manual_detach: vec![],
        backends: vec![Backend::Mflab],
        expect: Expect::default(),
    })
}

fn print_report(s: &Scenario, r: &ScenarioReport, bare: bool, tag_backend: bool) {
    let verdict = if r.passed() { "PASS" } else { "FAIL" };
    let name = if tag_backend {
        format!("{} [{}]", r.name, r.backend)
    } else {
        r.name.clone()
    };
    if !bare {
        println!(
            "{verdict} {} ({}, {:.1}s){}",
            name,
            r.depth,
            r.elapsed.as_secs_f64(),
            if s.description.is_empty() {
                String::new()
            } else {
                format!(" — {}", s.description)
            }
        );
    }
    for n in &r.notes {
        println!("    note: {n}");
    }
    for d in &r.outcome.diagnostics {
        println!("    {}", d.to_string().replace('\n', "\n    "));
    }
    if let Some(e) = &r.outcome.error {
        println!("    failure: {e}");
    }
    if bare || r.depth == Depth::Guest {
        for line in describe_l2(&r.outcome) {
            println!("    {line}");
        }
    }
    if !r.mismatches.is_empty() && !bare {
        for m in &r.mismatches {
            println!("    mismatch: {}", m.replace('\n', "\n      "));
        }
    }
    if let Some(dir) = &r.kept {
        println!("    work directory kept: {}", dir.display());
    }
}

/// `mflab run --xml … --format json`: plan, l1_during, l1_after, l2_qmp, l2_guest, error.
fn json_object(r: &ScenarioReport) -> serde_json::Value {
    let o = &r.outcome;
    let error = o.error.clone().or_else(|| {
        (!o.diagnostics.is_empty()).then(|| {
            o.diagnostics
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        })
    });
    serde_json::json!({
        "scenario": r.name,
        "backend": r.backend,
        "passed": r.passed(),
        "plan": o.plan,
        "l1_during": o.l1_during,
        "l1_after": o.l1_after,
        "l2_qmp": o.l2_qmp,
        "l2_guest": o.l2_guest,
        "error": error,
        "restored": o.restored,
        "mismatches": r.mismatches,
        "notes": r.notes,
        "seconds": r.elapsed.as_secs_f64(),
        "timings": o.timings,
        "work_dir": r.kept,
    })
}

fn junit(reports: &[ScenarioReport]) -> String {
    use quick_xml::escape::escape;
    let failed = reports.iter().filter(|r| !r.passed()).count();
    let total: f64 = reports.iter().map(|r| r.elapsed.as_secs_f64()).sum();
    let mut s = format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites>\n  <testsuite name=\"mflab\" tests=\"{}\" failures=\"{failed}\" time=\"{total:.3}\">\n", reports.len());
    for r in reports {
        s.push_str(&format!(
            "    <testcase classname=\"scenario.{}\" name=\"{}\" time=\"{:.3}\">\n",
            r.backend,
            escape(&r.name),
            r.elapsed.as_secs_f64()
        ));
        if !r.passed() {
            let body = r.mismatches.join("\n");
            s.push_str(&format!(
                "      <failure message=\"{}\">{}</failure>\n",
                escape(r.mismatches[0].lines().next().unwrap_or("")),
                escape(&body)
            ));
        }
        if let Some(dir) = &r.kept {
            s.push_str(&format!(
                "      <system-out>work directory: {}</system-out>\n",
                escape(dir.display().to_string())
            ));
        }
        s.push_str("    </testcase>\n");
    }
    s.push_str("  </testsuite>\n</testsuites>\n");
    s
}
