//! `mflab run --backend both`: where mflab's own logic and libvirt differ,
//! side by side: verdict, failure text, what L2 saw, drivers after.

use lab::protocol::{Backend, RunOutcome};

use crate::host::suite::attempt::ScenarioReport;
use crate::host::suite::expect::assigned_view;

/// The (mflab, libvirt) pairs of one scenario and `--repeat` round in
/// reports that are in scenario order, mflab first.
pub fn pairs(reports: &[ScenarioReport]) -> Vec<(usize, usize)> {
    let mut pairs = Vec::new();
    for (k, r) in reports.iter().enumerate().skip(1) {
        let before = &reports[k - 1];
        if r.backend == Backend::Libvirt
            && before.name == r.name
            && before.repeat == r.repeat
            && before.backend == Backend::Mflab
        {
            pairs.push((k - 1, k));
        }
    }
    pairs
}

fn verdict(o: &RunOutcome) -> String {
    match (&o.error, o.diagnostics.first()) {
        (Some(_), _) => "failed".into(),
        (None, Some(_)) => format!(
            "refused ({})",
            o.diagnostics
                .iter()
                .map(|d| d.rule.to_string())
                .collect::<Vec<_>>()
                .join(",")
        ),
        (None, None) => "ran".into(),
    }
}

fn error(o: &RunOutcome) -> String {
    match (&o.error, o.diagnostics.first()) {
        (Some(e), _) => e.clone(),
        (None, Some(d)) => d.message.clone(),
        (None, None) => "-".into(),
    }
}

/// L2's kernel view as ids only: libvirt puts hostdevs behind its own root
/// ports, so guest addresses differ by design; the ids say what L2 got.
fn l2_ids(o: &RunOutcome) -> String {
    let mut ids: Vec<String> = assigned_view(&o.l2_guest)
        .into_iter()
        .map(|k| k.split('@').next().unwrap_or_default().to_string())
        .collect();
    ids.sort();
    ids.dedup();
    if ids.is_empty() {
        "-".into()
    } else {
        ids.join(" ")
    }
}

fn drivers_after(o: &RunOutcome) -> String {
    // Only functions whose driver changed during the run or differs at the end.
    let mut parts = Vec::new();
    for before in &o.l1_before {
        let during = o
            .l1_during
            .iter()
            .find(|r| r.bdf == before.bdf)
            .and_then(|r| r.driver.clone());
        let after = o
            .l1_after
            .iter()
            .find(|r| r.bdf == before.bdf)
            .and_then(|r| r.driver.clone());
        if during.as_deref() == Some("vfio-pci") || after != before.driver {
            parts.push(format!(
                "{:02x}:{:02x}.{:x}={}",
                before.bdf.bus,
                before.bdf.slot,
                before.bdf.function,
                after.as_deref().unwrap_or("none")
            ));
        }
    }
    if parts.is_empty() {
        "-".into()
    } else {
        parts.join(" ")
    }
}

fn shorten(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(n - 1).collect::<String>())
    }
}

/// One line of the table: a label and how to read it off an outcome.
type Row = (&'static str, fn(&RunOutcome) -> String);

pub fn side_by_side(reports: &[ScenarioReport], pairs: &[(usize, usize)]) -> String {
    let mut s = String::from("\nmflab vs libvirt, side by side (differences marked with *):\n");
    for &(a, b) in pairs {
        let (m, l) = (&reports[a], &reports[b]);
        s.push_str(&format!(
            "{}  (expectations: mflab {}, libvirt {})\n",
            m.name,
            pass(m),
            pass(l)
        ));
        let rows: [Row; 4] = [
            ("verdict", verdict),
            ("failure", error),
            ("L2 saw", l2_ids),
            ("drivers after", drivers_after),
        ];
        for (label, f) in rows {
            let (x, y) = (f(&m.outcome), f(&l.outcome));
            let mark = if x != y { "*" } else { " " };
            s.push_str(&format!(
                "  {mark} {label:<14} mflab: {:<48} libvirt: {}\n",
                shorten(&x, 48),
                shorten(&y, 90)
            ));
        }
    }
    s
}

fn pass(r: &ScenarioReport) -> &'static str {
    if r.passed() {
        "hold"
    } else {
        "DO NOT hold"
    }
}
