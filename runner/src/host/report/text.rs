//! The text report: one block per scenario run, as `mflab run` prints it.

use std::fmt::Write;

use lab::protocol::Depth;

use crate::host::scenario::Scenario;
use crate::host::suite::attempt::ScenarioReport;
use crate::host::suite::expect::assigned_view;

/// How a report is to be written.
#[derive(Clone, Copy, Debug, Default)]
pub struct TextStyle {
    /// A bare `--xml` run: no PASS line, L2's view whatever the depth.
    pub bare: bool,
    /// Name the backend after the scenario (several backends in the run).
    pub tag_backend: bool,
    /// Name the `--repeat` round after the scenario (more than one).
    pub tag_repeat: bool,
}

/// One scenario run's block: PASS/FAIL, notes, diagnostics, the failure,
/// what L2's kernel saw, the mismatches, the kept directory.
pub fn render(s: &Scenario, r: &ScenarioReport, style: TextStyle) -> String {
    let mut t = String::new();
    let verdict = if r.passed() { "PASS" } else { "FAIL" };
    let mut name = r.name.clone();
    if style.tag_backend {
        let _ = write!(name, " [{}]", r.backend);
    }
    if style.tag_repeat {
        let _ = write!(name, " #{}", r.repeat);
    }
    if !style.bare {
        let description = if s.description.is_empty() {
            String::new()
        } else {
            format!(" — {}", s.description)
        };
        let _ = writeln!(
            t,
            "{verdict} {name} ({}, {:.1}s){description}",
            r.depth,
            r.elapsed.as_secs_f64()
        );
    }
    for n in &r.notes {
        let _ = writeln!(t, "    note: {n}");
    }
    for a in r.outcome.plan.iter().flat_map(|p| p.assign.iter()) {
        if let Some(written) = a.written {
            let _ = writeln!(
                t,
                "    note: {} is written at guest {written}, a bus of the domain's own controllers; the lab's L2 has only its root bus and got it at {}",
                a.host, a.guest
            );
        }
    }
    if let Some(host) = &s.host {
        let _ = writeln!(t, "    host map (reported -> lab):");
        for line in host.map_lines() {
            let _ = writeln!(t, "      {line}");
        }
        if style.bare {
            for m in r
                .mismatches
                .iter()
                .filter(|m| m.starts_with("IOMMU groups"))
            {
                let _ = writeln!(t, "    mismatch: {}", m.replace('\n', "\n      "));
            }
        }
    }
    for d in &r.outcome.diagnostics {
        let _ = writeln!(t, "    {}", d.to_string().replace('\n', "\n    "));
    }
    if let Some(e) = &r.outcome.error {
        let _ = writeln!(t, "    failure: {e}");
    }
    if let Some(g) = &r.gave_up {
        let _ = writeln!(
            t,
            "    lab fault, no retry left: {}: {}",
            g.fault.kind.name(),
            g.fault
        );
    }
    if style.bare || r.depth == Depth::Guest {
        for line in describe_l2(r) {
            let _ = writeln!(t, "    {line}");
        }
    }
    if let Some(versions) = &r.outcome.l1_versions {
        let l0 = r.l0_qemu.as_deref().unwrap_or("an unnamed QEMU");
        let _ = writeln!(
            t,
            "    L1 ran {}; L0 ran L1 under {l0}",
            versions.describe()
        );
    }
    if let Some(accel) = r.outcome.l2_accel {
        let _ = writeln!(
            t,
            "    L2 ran under {} inside L1",
            accel.qemu_name().to_uppercase()
        );
    }
    if let Some(link) = &r.outcome.link {
        let _ = writeln!(t, "    proven: {}", link.summary());
    }
    for line in super::step_lines::describe_steps(s, &r.outcome) {
        let _ = writeln!(t, "    {line}");
    }
    if !r.mismatches.is_empty() && !style.bare {
        for m in &r.mismatches {
            let _ = writeln!(t, "    mismatch: {}", m.replace('\n', "\n      "));
        }
    }
    if let Some(dir) = &r.kept {
        let _ = writeln!(t, "    work directory kept: {}", dir.display());
    }
    t
}

/// What L2's kernel saw, in words: each assigned function seen or not,
/// each unassigned one absent or (wrongly) present.
pub fn describe_l2(r: &ScenarioReport) -> Vec<String> {
    let o = &r.outcome;
    let mut lines = Vec::new();
    let Some(plan) = &o.plan else { return lines };
    let ids = |host: lab::PciAddress| {
        o.l1_before.iter().find(|row| row.bdf == host).map(|row| {
            (
                row.vendor.trim_start_matches("0x").to_string(),
                row.device.trim_start_matches("0x").to_string(),
            )
        })
    };
    let guest = assigned_view(&o.l2_guest);
    let seen_at = |v: &str, d: &str| {
        guest
            .iter()
            .find(|k| k.starts_with(&format!("{v}:{d}@")))
            .map(|k| k.split('@').nth(1).unwrap_or("?").to_string())
    };
    for a in &plan.assign {
        if let Some((v, d)) = ids(a.host) {
            let host = a.host;
            lines.push(match seen_at(&v, &d) {
                Some(at) => format!("L2's kernel saw {host} [{v}:{d}] (assigned) at {at}"),
                None => format!("L2's kernel did NOT see {host} [{v}:{d}] (assigned)"),
            });
        }
    }
    for &host in &plan.unassigned {
        if let Some((v, d)) = ids(host) {
            lines.push(match seen_at(&v, &d) {
                None => format!("L2's kernel did not see {host} [{v}:{d}] (unassigned)"),
                Some(at) => format!("L2's kernel SAW {host} [{v}:{d}] (unassigned!) at {at}"),
            });
        }
    }
    lines
}
