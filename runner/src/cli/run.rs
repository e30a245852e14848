//! `mflab run [PATH…]`: run scenarios (default `scenarios/`), or a bare
//! domain XML with `--xml FILE --topology NAME` to reproduce a bug report.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;
use lab::assign::plan::Policy;
use lab::machine::accel::probe;
use lab::machine::partition::Partition;
use lab::protocol::{Backend, Depth};

use super::plan::PolicyArg;
use super::{CliError, Format, Outcome};
use crate::host::images::kernel_check::require;
use crate::host::images::{prepare_l1, proof_guest, Userland};
use crate::host::progress::{for_stderr, Observer};
use crate::host::report::text::TextStyle;
use crate::host::report::{json, junit, side_by_side, summary, text};
use crate::host::reported_host::{rewrite::rewrite_sources, LabHost, LabHostError};
use crate::host::scenario::{discover, load, Expect, Scenario, ScenarioError};
use crate::host::suite::attempt::DEFAULT_RETRIES;
use crate::host::suite::schedule::{RunKey, Suite};
use crate::host::topology::{load as load_topology, Topology, TopologyError, BUILTIN};
use crate::host::workdir;

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
    /// Another libvirt for the libvirt backend: a meson build directory
    /// (configured with -Dsystem=true, built with ninja; run as libvirt's
    /// build/run runs it), or a directory with libvirtd and virsh. L1 sees
    /// it in the host's root.
    #[arg(long)]
    libvirt_bin: Option<PathBuf>,
    /// Independent L1s run side by side (default: from cores and memory).
    #[arg(long)]
    jobs: Option<usize>,
    /// Boot a fresh L1 for every scenario instead of sharing one per topology.
    #[arg(long)]
    fresh_l1: bool,
    /// Run every selected scenario this many times (on shared L1s as usual),
    /// to see how often each passes and what lab faults cost.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    repeat: u32,
    /// Runs again on a fresh L1 after a lab fault, at most, per run (0: never).
    #[arg(long, default_value_t = DEFAULT_RETRIES)]
    retries: usize,
    /// Run in an order shuffled with this seed (results must not depend on order).
    #[arg(long)]
    shuffle: Option<u64>,
    /// Write a JUnit XML report for CI dashboards.
    #[arg(long)]
    junit: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t)]
    format: Format,
    /// Only share K of N of the selected runs (hashed by scenario name and
    /// backend, so the N shares of one suite split it with no overlap).
    #[arg(long, env = "MFLAB_PARTITION", value_name = "K/N")]
    partition: Option<Partition>,
    /// Print the runs the selection makes (`scenario backend`, one a line), run nothing.
    #[arg(long)]
    list: bool,
    /// Run this domain XML as it is, without a scenario file.
    #[arg(long)]
    xml: Option<PathBuf>,
    /// The L1 topology for --xml; for scenarios, the topology they run on
    /// instead of their own (the same functions behind another IOMMU, e.g.
    /// gpu-audio-virtio-iommu for the gpu-audio scenarios).
    #[arg(long, conflicts_with = "host")]
    topology: Option<String>,
    /// For --xml: the reporter's PCI listing (IOMMU group loop, `lspci -nn`
    /// or `virsh nodedev-dumpxml`); L1 is built from it.
    #[arg(long, requires = "xml")]
    host: Option<PathBuf>,
    /// The policy for --xml.
    #[arg(long, value_enum, default_value_t = PolicyArg::Fixed)]
    policy: PolicyArg,
    /// The depth for --xml: rules, plan, qmp or guest.
    #[arg(long, default_value = "guest", value_parser = parse_depth)]
    depth: Depth,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(super) enum BackendArg {
    Mflab,
    Libvirt,
    Both,
}

impl BackendArg {
    pub(super) fn backends(self) -> Vec<Backend> {
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

/// A `--depth` word that names no depth.
#[derive(Debug, thiserror::Error)]
#[error("'{0}' is not a depth; write rules, plan, qmp or guest")]
pub struct NotADepth(String);

fn parse_depth(s: &str) -> Result<Depth, NotADepth> {
    serde_json::from_value(serde_json::Value::String(s.into())).map_err(|_| NotADepth(s.into()))
}

/// Why the paths and flags select no scenarios to run.
#[derive(Debug, thiserror::Error)]
pub enum SelectError {
    #[error(transparent)]
    Scenario(#[from] ScenarioError),
    #[error("no scenario (*.toml) under {0:?}")]
    NoScenario(Vec<PathBuf>),
    #[error(transparent)]
    Topology(#[from] TopologyError),
    #[error("--topology {name}: scenario {scenario} runs on {from}, whose functions differ; give scenarios of a topology with the same slots (e.g. the gpu-audio-* ones for gpu-audio-virtio-iommu)")]
    OtherFunctions {
        name: String,
        scenario: String,
        from: String,
    },
    #[error("cannot read {}: {source}", path.display())]
    Xml {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Listing(#[from] LabHostError),
    #[error("--xml needs --topology NAME or --host LISTING")]
    NoTopology,
    #[error("unknown topology '{name}'; the shipped ones are: {known}")]
    UnknownTopology { name: String, known: String },
}

fn known() -> Vec<&'static str> {
    BUILTIN.iter().map(|(n, _)| *n).collect()
}

pub fn run(args: RunArgs) -> Result<Outcome, CliError> {
    let scenarios = load_scenarios(&args)?;
    let mut runs = selected_runs(&scenarios, args.backend);
    if let Some(partition) = args.partition {
        runs.retain(|r| partition.contains(&scenarios[r.scenario].name, &r.backend.to_string()));
    }
    if args.list {
        // A reader that stops early (`| head`) ends the list, not the process.
        let mut out = std::io::stdout().lock();
        for r in &runs {
            if writeln!(out, "{} {}", scenarios[r.scenario].name, r.backend).is_err() {
                break;
            }
        }
        return Ok(Outcome::Clean);
    }
    let needs_vm = runs
        .iter()
        .any(|r| scenarios[r.scenario].depth != Depth::Rules);
    let userland = Userland::from_env()?;
    let libvirt_bin = match args.libvirt_bin.as_deref() {
        Some(dir) => Some(crate::host::libvirt_bin::checked(dir, userland)?),
        None => None,
    };
    let images = if needs_vm {
        let mut topologies: Vec<Topology> = Vec::new();
        for r in &runs {
            if let Ok(t) = load_topology(&scenarios[r.scenario].topology) {
                if !topologies.contains(&t) {
                    topologies.push(t);
                }
            }
        }
        let l1_kvm =
            lab::machine::accel::decide(&lab::machine::accel::gather(std::path::Path::new("/")))
                .l1_kvm_module;
        // A scenario whose hostdevs ask for IOMMUFD needs it of L1's kernel.
        let wants_iommufd = runs.iter().any(|r| {
            let s = &scenarios[r.scenario];
            lab::schema::domain_reader::read_domain(&s.xml_name, &s.xml)
                .domain
                .wants_iommufd()
        });
        let extra = match wants_iommufd {
            true => lab::machine::kernel_needs::iommufd_needs(),
            false => Vec::new(),
        };
        require(
            &topologies.iter().collect::<Vec<_>>(),
            l1_kvm.as_deref(),
            &extra,
        )?;
        Some(prepare_l1()?)
    } else {
        None
    };
    sweep_leftovers();
    let accel = probe(&proof_guest(images.as_ref()));
    if let Some(i) = images.as_ref().filter(|i| i.userland != Userland::Host) {
        eprintln!(
            "mflab: L1's root: {} ({}), kernel {} ({})",
            i.root.display(),
            i.userland.name(),
            i.kernel.version,
            i.kernel.origin
        );
    }
    if needs_vm {
        eprintln!(
            "mflab: L1 runs under {} (-cpu {}): {}; L2: {}",
            accel.accel, accel.cpu, accel.reason, accel.l2
        );
        crate::host::l0_qemu::choose_and_say(&accel)?;
    }
    let mut runs = repeated(&runs, args.repeat as usize);
    match args.shuffle {
        Some(seed) => shuffle(&mut runs, seed),
        // Scenarios of one topology one after the other, so a shared L1 serves them in a row.
        None => runs.sort_by_key(|r| scenarios[r.scenario].topology.clone()),
    }
    let jobs = args.jobs.unwrap_or_else(default_jobs).max(1);
    let total = runs.len();
    let suite = Suite {
        scenarios: &scenarios,
        runs,
        jobs,
        fresh_l1: args.fresh_l1,
        images: images.as_ref(),
        accel: &accel,
        libvirt_bin,
        keep: args.keep,
        retries: args.retries,
    };
    let observer = for_stderr();
    let style = TextStyle {
        bare: args.xml.is_some(),
        tag_backend: suite.runs.iter().any(|r| r.backend == Backend::Libvirt),
        tag_repeat: args.repeat > 1,
    };
    let text_report = args.format == Format::Text;
    let observer: &dyn Observer = observer.as_ref();
    let result = suite.run(observer, &|s, report| {
        if text_report {
            observer.print(&text::render(s, report, style));
        }
    });
    if result.interrupted {
        let kept: Vec<String> = result
            .reports
            .iter()
            .filter_map(|r| r.kept.as_ref().map(|d| d.display().to_string()))
            .collect();
        let dirs = match kept.is_empty() {
            true => "work directories removed".to_string(),
            false => format!(
                "work directories removed but those of finished runs that failed: {}",
                kept.join(", ")
            ),
        };
        eprintln!(
            "mflab: interrupted; {} of {total} runs had finished; QEMU stopped, {dirs}",
            result.reports.len()
        );
        return Ok(Outcome::Interrupted);
    }
    let reports = result.reports;
    if text_report && args.xml.is_none() {
        let shared = if args.fresh_l1 {
            "one L1 per scenario".to_string()
        } else {
            format!("{} L1 boot(s) shared", result.boots)
        };
        eprintln!(
            "mflab: {} run(s) in {:.1}s wall, {jobs} job(s), {shared}",
            reports.len(),
            result.wall.as_secs_f64()
        );
    }
    let pairs = side_by_side::pairs(&reports);
    if text_report && !pairs.is_empty() {
        print!("{}", side_by_side::side_by_side(&reports, &pairs));
    }
    if let Some(path) = &args.junit {
        std::fs::write(path, junit::render(&reports, userland)).map_err(|source| {
            CliError::File {
                path: path.clone(),
                source,
            }
        })?;
    }
    if args.format == Format::Json {
        let objects: Vec<serde_json::Value> = reports
            .iter()
            .map(|r| {
                let mut o = json::object(r);
                let host = scenarios
                    .iter()
                    .find(|s| s.name == r.name)
                    .and_then(|s| s.host.as_ref());
                if let (Some(host), Some(map)) = (host, o.as_object_mut()) {
                    map.insert("host_map".into(), serde_json::json!(host.map));
                }
                o
            })
            .collect();
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
    if text_report && args.xml.is_none() {
        print!("{}", summary::render(&summary::of(&reports)));
        println!("{} passed, {} failed", reports.len() - failed, failed);
    }
    Ok(if failed == 0 {
        Outcome::Clean
    } else {
        Outcome::Failed
    })
}

fn load_scenarios(args: &RunArgs) -> Result<Vec<Scenario>, SelectError> {
    if let Some(xml) = &args.xml {
        return Ok(vec![bare_xml_scenario(xml, args)?]);
    }
    let files = discover(&args.paths)?;
    let scenarios = files
        .iter()
        .map(|f| load(f, &known()))
        .collect::<Result<Vec<_>, _>>()?;
    if scenarios.is_empty() {
        return Err(SelectError::NoScenario(args.paths.clone()));
    }
    match &args.topology {
        Some(topology) => on_topology(scenarios, topology),
        None => Ok(scenarios),
    }
}

/// `--topology NAME` without --xml: every scenario runs on NAME. Only
/// where the functions are the same: a scenario's XML and expectations
/// name host addresses of its own topology.
fn on_topology(scenarios: Vec<Scenario>, name: &str) -> Result<Vec<Scenario>, SelectError> {
    let to = load_topology(name)?;
    scenarios
        .into_iter()
        .map(|mut s| {
            let from = load_topology(&s.topology)?;
            if from.slot != to.slot
                || from.bridge != to.bridge
                || from.root_port != to.root_port
                || from.switch != to.switch
            {
                return Err(SelectError::OtherFunctions {
                    name: name.to_string(),
                    scenario: s.name,
                    from: s.topology,
                });
            }
            s.topology = name.to_string();
            Ok(s)
        })
        .collect()
}

/// Every (scenario, backend) to run, in scenario order: the backends
/// `--backend` names, or each scenario's own.
fn selected_runs(scenarios: &[Scenario], backend: Option<BackendArg>) -> Vec<RunKey> {
    let mut runs = Vec::new();
    for (i, s) in scenarios.iter().enumerate() {
        for backend in backend.map_or_else(|| s.backends.clone(), BackendArg::backends) {
            // No VM at rules depth: libvirt's static verdict is `mflab check --backend libvirt`.
            if !(backend == Backend::Libvirt && s.depth == Depth::Rules) {
                runs.push(RunKey {
                    scenario: i,
                    backend,
                    repeat: 1,
                });
            }
        }
    }
    runs
}

/// The runs `times` times over, round after round (`repeat` from 1).
fn repeated(runs: &[RunKey], times: usize) -> Vec<RunKey> {
    (1..=times)
        .flat_map(|repeat| runs.iter().map(move |r| RunKey { repeat, ..*r }))
        .collect()
}

/// Removes what runners killed by SIGKILL left in the temp dir (their
/// QEMU died with them; their directories did not). Kept directories stay
/// for `mflab clean --kept`.
fn sweep_leftovers() {
    let swept = workdir::sweep(&std::env::temp_dir(), false, &workdir::Owner::alive);
    for l in &swept.removed {
        eprintln!(
            "mflab: removed {} (left by runner {}, which is gone)",
            l.path.display(),
            l.owner.pid
        );
    }
    for (l, e) in &swept.failed {
        eprintln!("mflab: cannot remove {}: {e}", l.path.display());
    }
}

/// `--xml FILE`: a scenario whose only expectation is that nothing fails.
fn bare_xml_scenario(xml: &PathBuf, args: &RunArgs) -> Result<Scenario, SelectError> {
    let text = std::fs::read_to_string(xml).map_err(|source| SelectError::Xml {
        path: xml.clone(),
        source,
    })?;
    let (topology, host, text) = match &args.host {
        Some(listing) => {
            let lab = LabHost::load(listing)?;
            let (text, _) = rewrite_sources(&text, &lab);
            (lab.topology.name.clone(), Some(lab), text)
        }
        None => {
            let topology = args.topology.clone().ok_or(SelectError::NoTopology)?;
            if !known().contains(&topology.as_str()) {
                return Err(SelectError::UnknownTopology {
                    name: topology,
                    known: known().join(", "),
                });
            }
            (topology, None, text)
        }
    };
    Ok(Scenario {
        name: xml.display().to_string(),
        description: String::new(),
        topology,
        host,
        policy: Policy::from(args.policy),
        depth: args.depth,
        xml_name: xml.display().to_string(),
        xml: text,
        kill_l2: false,
        manual_detach: vec![],
        backends: vec![Backend::Mflab],
        expect: Expect::default(),
        steps: vec![],
        link: None,
    })
}
