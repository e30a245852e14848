//! Comparing a run's outcome with a scenario's expectations: each
//! expectation that does not hold becomes one "expected … / seen …" line.

use lab::protocol::{FunctionRow, GuestFunction, RunOutcome};
use lab::{Diagnostic, RuleId};

use crate::host::scenario::Expect;

/// What a scenario asserts of L2's view: the functions it was given. The
/// machine's own are left out: bus 0 slots 0 and 1 (i440fx and PIIX on
/// mflab's `pc` L2), slot 0x1f (ICH9 on libvirt's q35), and every bridge
/// (libvirt's pcie-root-ports).
pub fn assigned_view(list: &[GuestFunction]) -> Vec<String> {
    let own = |f: &GuestFunction| {
        let chipset = f.bdf.domain == 0 && f.bdf.bus == 0 && matches!(f.bdf.slot, 0 | 1 | 0x1f);
        chipset || f.is_bridge() || f.is_report_port()
    };
    let mut keys: Vec<String> = list
        .iter()
        .filter(|f| !own(f))
        .map(GuestFunction::key)
        .collect();
    keys.sort();
    keys
}

/// The checks every outcome has: its rule errors in order, and its
/// failure text (none, or one containing the expected words).
pub fn rules_and_error(
    want_rules: Option<&[RuleId]>,
    seen: &[Diagnostic],
    want_error: Option<&str>,
    seen_error: Option<&str>,
    m: &mut Vec<String>,
) {
    let seen_rules: Vec<String> = seen.iter().map(|d| d.rule.to_string()).collect();
    let want_rules: Vec<String> = want_rules
        .into_iter()
        .flatten()
        .map(|r| r.to_string())
        .collect();
    if seen_rules != want_rules {
        let detail: Vec<String> = seen.iter().map(|d| d.to_string()).collect();
        m.push(format!(
            "rule errors: expected {want_rules:?}, seen {seen_rules:?}\n{}",
            detail.join("\n")
        ));
    }
    match (want_error, seen_error) {
        (None, Some(seen)) => m.push(format!("error: expected none, seen: {seen}")),
        (Some(want), None) => m.push(format!(
            "error: expected a failure containing {want:?}, seen none"
        )),
        (Some(want), Some(seen)) if !seen.contains(want) => m.push(format!(
            "error: expected a failure containing {want:?}, seen: {seen}"
        )),
        _ => {}
    }
}

/// Each function whose driver in L1 is not the one expected, as
/// `BDF expected on X, found on Y`.
pub fn driver_mismatches(
    want: &std::collections::BTreeMap<lab::PciAddress, String>,
    rows: &[lab::protocol::FunctionRow],
) -> Vec<String> {
    let mut m = Vec::new();
    for (bdf, driver) in want {
        let seen = rows
            .iter()
            .find(|r| &r.bdf == bdf)
            .map(|r| r.driver.clone().unwrap_or_else(|| "none".into()));
        if seen.as_deref() != Some(driver.as_str()) {
            m.push(format!(
                "{bdf} expected on {driver}, found on {}",
                seen.unwrap_or_else(|| "(absent from L1)".into())
            ));
        }
    }
    m
}

pub fn compare(e: &Expect, o: &RunOutcome) -> Vec<String> {
    let mut m = Vec::new();
    rules_and_error(
        e.rules.as_deref(),
        &o.diagnostics,
        e.error.as_deref(),
        o.error.as_deref(),
        &mut m,
    );
    let want_restored = e.restored.unwrap_or(true);
    if o.restored != want_restored {
        m.push(format!(
            "restored: expected {want_restored}, seen {} (drivers after: {:?})",
            o.restored,
            drivers(&o.l1_after)
        ));
    }
    if let Some(want) = &e.plan {
        if Some(want) != o.plan.as_ref() {
            let json =
                |p: &lab::assign::plan::Plan| serde_json::to_string(p).expect("plan serializes");
            m.push(format!(
                "plan: expected {}, seen {}",
                json(want),
                o.plan.as_ref().map_or("none".into(), json)
            ));
        }
    }
    for (label, want, rows) in [
        ("l1_during", &e.l1_during, &o.l1_during),
        ("l1_after", &e.l1_after, &o.l1_after),
    ] {
        let Some(want) = want else { continue };
        for line in driver_mismatches(want, rows) {
            m.push(format!("{label}: {line}"));
        }
    }
    for (label, want, seen) in [
        ("l2_qmp", &e.l2_qmp, &o.l2_qmp),
        ("l2_guest", &e.l2_guest, &o.l2_guest),
    ] {
        let Some(want) = want else { continue };
        let mut want = want.clone();
        want.sort();
        let seen = assigned_view(seen);
        if want != seen {
            m.push(format!("{label}: expected {want:?}, seen {seen:?}"));
        }
    }
    link_expectations(e, o, &mut m);
    m
}

/// The link proof's keys: L2 got `link_replies` echo replies, and every
/// restored function with a use test worked (`restored_by_use`).
fn link_expectations(e: &Expect, o: &RunOutcome, m: &mut Vec<String>) {
    let link = o.link.as_ref();
    if let Some(want) = e.link_replies {
        let seen = link.and_then(|l| l.l2.as_ref()).map(|l| l.received);
        if seen != Some(want) {
            m.push(format!(
                "link_replies: expected {want}, seen {}",
                seen.map_or("no link report".into(), |n| n.to_string())
            ));
        }
    }
    if let Some(want) = e.restored_by_use {
        let uses = link.map(|l| l.restored_use.as_slice()).unwrap_or_default();
        let seen = !uses.is_empty() && uses.iter().all(|u| u.worked);
        if seen != want {
            let tried: Vec<String> = uses
                .iter()
                .map(|u| format!("{} by {}: {}", u.function, u.how, u.detail))
                .collect();
            m.push(format!(
                "restored_by_use: expected {want}, seen {seen} ({})",
                if tried.is_empty() {
                    "nothing was tried".into()
                } else {
                    tried.join("; ")
                }
            ));
        }
    }
}

fn drivers(rows: &[FunctionRow]) -> Vec<String> {
    rows.iter()
        .map(|r| format!("{}={}", r.bdf, r.driver.as_deref().unwrap_or("none")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(bdf: &str, ids: (&str, &str), class: &str) -> GuestFunction {
        GuestFunction {
            bdf: bdf.parse().unwrap(),
            vendor: ids.0.into(),
            device: ids.1.into(),
            class: class.into(),
            driver: None,
        }
    }

    #[test]
    fn the_machines_own_functions_are_left_out_of_l2s_view() {
        let view = [
            f("0000:00:00.0", ("0x8086", "0x1237"), "0x0600"),
            f("0000:00:01.3", ("0x8086", "0x7113"), "0x0680"),
            f("0000:00:1f.2", ("0x8086", "0x2922"), "0x0106"),
            f("0000:00:02.0", ("0x1b36", "0x000c"), "0x060400"),
            f("0000:01:00.0", ("0x1234", "0x1111"), "0x038000"),
            // Slot 1 of another bus is the user's, not the chipset's.
            f("0000:02:01.0", ("0x8086", "0x293e"), "0x040300"),
            // The lab's report port, transitional (mflab's L2) or modern.
            f("0000:00:1e.0", ("0x1af4", "0x1003"), "0x078000"),
            f("0000:04:00.0", ("0x1af4", "0x1043"), "0x078000"),
        ];
        assert_eq!(
            assigned_view(&view),
            ["1234:1111@0000:01:00.0", "8086:293e@0000:02:01.0"]
        );
    }
}
