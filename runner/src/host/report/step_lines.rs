//! What each scenario step left, in words, for the text report: what L2's
//! kernel saw after it, the drivers of the step's functions in L1, the
//! live domain's view of them.

use lab::protocol::{RunOutcome, StepOutcome};
use lab::schema::check::check_text;

use crate::host::scenario::Scenario;
use crate::host::suite::expect::assigned_view;

pub fn describe_steps(s: &Scenario, o: &RunOutcome) -> Vec<String> {
    let mut lines = Vec::new();
    for (i, step) in s.steps.iter().enumerate() {
        let functions: Vec<lab::PciAddress> = check_text(&step.xml_name, &step.xml)
            .domain
            .devices
            .iter()
            .filter_map(|d| d.pci_source())
            .collect();
        let names: Vec<String> = functions.iter().map(|f| f.to_string()).collect();
        let head = format!("step {} {} {}", i + 1, step.action, names.join(" "));
        let Some(seen) = o.steps.get(i) else {
            lines.push(format!("{head}: not carried out"));
            continue;
        };
        lines.push(format!("{head}: {}", verdict(seen)));
        let drivers: Vec<String> = functions
            .iter()
            .map(|f| {
                let driver = seen
                    .l1
                    .iter()
                    .find(|r| r.bdf == *f)
                    .map_or("(absent)", |r| r.driver.as_deref().unwrap_or("none"));
                let live = seen.live.iter().find(|h| h.host == *f).map_or(
                    "not in the live domain".to_string(),
                    |h| {
                        format!(
                            "live {}{}",
                            h.guest
                                .map_or(h.address_type.clone(), |g| format!("pci {g}")),
                            h.alias
                                .as_deref()
                                .map(|a| format!(" alias {a}"))
                                .unwrap_or_default()
                        )
                    },
                );
                format!("{f} on {driver}, {live}")
            })
            .collect();
        if !drivers.is_empty() {
            lines.push(format!("  L1: {}", drivers.join("; ")));
        }
        // A reset: what L2's QEMU and L1's kernel said about it.
        for line in &seen.reset_log {
            lines.push(format!("  {line}"));
        }
        if step.action.reboots() && seen.reset_log.is_empty() {
            lines.push("  neither L2's QEMU nor L1's kernel said anything about the reset".into());
        }
        lines.push(if seen.l2_reported {
            let view = assigned_view(&seen.l2_guest);
            if view.is_empty() {
                "  L2's kernel saw no assigned function".to_string()
            } else {
                format!("  L2's kernel saw {}", view.join(", "))
            }
        } else {
            "  L2's init did not report".to_string()
        });
    }
    lines
}

fn verdict(o: &StepOutcome) -> String {
    if !o.diagnostics.is_empty() {
        let rules: Vec<String> = o.diagnostics.iter().map(|d| d.to_string()).collect();
        return format!("refused: {}", rules.join(" / ").replace('\n', " "));
    }
    match &o.error {
        Some(e) => format!("failed: {e}"),
        None => "done".into(),
    }
}
