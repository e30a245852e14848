//! A diagnosis as text for a terminal and as Markdown to paste back into
//! the thread. (JSON is the [`Diagnosis`]'s serde form.)

use std::fmt::Write as _;

use super::verdict::{Declared, GroupVerdict, MemberVerdict};
use super::Diagnosis;

fn declared(m: &MemberVerdict) -> &'static str {
    match m.declared {
        Declared::Assigned => "assigned",
        Declared::Unassigned => "unassigned",
        Declared::Undeclared => "undeclared",
    }
}

fn driver(m: &MemberVerdict) -> String {
    match &m.driver {
        super::paste::HostDriver::Bound(d) => d.clone(),
        super::paste::HostDriver::None => "no driver".into(),
        super::paste::HostDriver::NotShown => "not shown".into(),
    }
}

fn class(m: &MemberVerdict) -> String {
    let name = m
        .description
        .split_once(": ")
        .map_or(m.description.as_str(), |(c, _)| c);
    let name = name.split(" [").next().unwrap_or(name);
    match m.class {
        Some(c) if name.is_empty() => format!("[{:04x}]", c >> 8),
        Some(c) => format!("{name} [{:04x}]", c >> 8),
        None => "?".into(),
    }
}

fn verdict_word(m: &MemberVerdict) -> &'static str {
    match (m.blocks, m.host_critical) {
        (true, true) => "BLOCKS, HOST NEEDS IT",
        (true, false) => "BLOCKS",
        (false, true) => "host needs it",
        (false, false) => "ok",
    }
}

fn group_heading(g: &GroupVerdict) -> String {
    match g.reported_on_line {
        Some(line) => format!(
            "IOMMU group {} (the error on line {line} names it)",
            g.group
        ),
        None => format!("IOMMU group {}", g.group),
    }
}

/// The verdict for a terminal.
pub fn text(d: &Diagnosis) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "{}: read {}", d.file, d.read.join("; "));
    for u in &d.unread {
        let _ = writeln!(s, "{}:{}: not read: {}", d.file, u.line, u.why);
    }
    for g in &d.groups {
        let _ = writeln!(s, "\n{}", group_heading(g));
        let rows: Vec<[String; 5]> = g
            .members
            .iter()
            .map(|m| {
                [
                    m.address.to_string(),
                    class(m),
                    driver(m),
                    declared(m).to_string(),
                    verdict_word(m).to_string(),
                ]
            })
            .collect();
        let widths: Vec<usize> = (0..5)
            .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
            .collect();
        for (r, m) in rows.iter().zip(&g.members) {
            let mut line = String::from(" ");
            for (c, cell) in r.iter().enumerate() {
                let _ = write!(line, " {cell:<w$}", w = widths[c]);
            }
            let _ = writeln!(s, "{}", line.trim_end());
            let _ = writeln!(s, "      {}", m.why);
        }
    }
    if !d.rules.is_empty() {
        let _ = writeln!(s, "\nThe rules on the XML as posted, with this host:");
        for r in &d.rules {
            let _ = writeln!(s, "{r}");
        }
    }
    let _ = writeln!(s);
    if d.passes {
        let _ = writeln!(
            s,
            "The XML as posted passes: nothing in its groups is left to the host."
        );
    } else if d.fixed_xml.is_some() {
        let added: Vec<String> = d.added.iter().map(|a| a.to_string()).collect();
        let _ = writeln!(
            s,
            "Fix: declare {} unassigned; add after line {} of the paste:",
            added.join(", "),
            d.added_after_line.unwrap_or_default()
        );
        let _ = writeln!(s, "{}", d.added_xml);
        if d.fixed_rules.is_empty() {
            let _ = writeln!(
                s,
                "The XML so fixed passes `mflab check` with this host (--fixed-xml FILE writes it whole)."
            );
        } else {
            let _ = writeln!(s, "The XML so fixed still breaks rules:");
            for r in &d.fixed_rules {
                let _ = writeln!(s, "{r}");
            }
        }
    } else if !d.remedies.is_empty() {
        let _ = writeln!(s, "No change to the XML fixes this:");
        for r in &d.remedies {
            let _ = writeln!(s, "- {r}");
        }
    }
    for w in &d.warnings {
        let _ = writeln!(s, "note: {w}");
    }
    if !d.replay.is_empty() {
        let first = &d.replay[0].versions;
        let _ = writeln!(s, "\nReplay in the lab ({first}):");
        for r in &d.replay {
            let versions = if &r.versions == first {
                String::new()
            } else {
                format!(" ({})", r.versions)
            };
            let _ = writeln!(
                s,
                "  {:<8} XML, {:<7} backend{versions}: {}{}",
                r.xml,
                r.backend,
                if r.passed { "" } else { "NOT AS EXPECTED: " },
                r.why
            );
        }
    }
    s
}

/// Text for a Markdown cell or line: XML in it (`<address type='unassigned'/>`)
/// as code, which a forum would otherwise swallow as HTML; `|` escaped.
fn md(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(open) = rest.find('<') {
        let Some(close) = rest[open..].find('>') else {
            break;
        };
        out.push_str(&rest[..open]);
        out.push('`');
        out.push_str(&rest[open..open + close + 1]);
        out.push('`');
        rest = &rest[open + close + 1..];
    }
    out.push_str(rest);
    out.replace('|', "\\|")
}

/// The verdict to paste back into the thread.
pub fn markdown(d: &Diagnosis) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "### What `mflab diagnose` reads in this report\n");
    for g in &d.groups {
        let _ = writeln!(s, "**{}**\n", group_heading(g));
        let _ = writeln!(
            s,
            "| Function | Class | Host driver | In the XML | Verdict | Why |"
        );
        let _ = writeln!(s, "|---|---|---|---|---|---|");
        for m in &g.members {
            let _ = writeln!(
                s,
                "| `{}` | {} | {} | {} | {} | {} |",
                m.address,
                md(&class(m)),
                driver(m),
                declared(m),
                verdict_word(m),
                md(&m.why)
            );
        }
        let _ = writeln!(s);
    }
    if d.passes {
        let _ = writeln!(
            s,
            "The XML as posted declares every function of its groups."
        );
    } else if let Some(fixed) = &d.fixed_xml {
        let added: Vec<String> = d.added.iter().map(|a| format!("`{a}`")).collect();
        let _ = writeln!(
            s,
            "Declare {} as unassigned; the rest of your XML stays as it is:\n",
            added.join(", ")
        );
        let _ = writeln!(s, "```xml\n{fixed}\n```\n");
    } else {
        for r in &d.remedies {
            let _ = writeln!(s, "- {}", md(r));
        }
        let _ = writeln!(s);
    }
    for w in &d.warnings {
        let _ = writeln!(s, "> {}\n", md(w));
    }
    if !d.replay.is_empty() {
        let _ = writeln!(s, "Replayed in a lab VM with this host's groups rebuilt:\n");
        let _ = writeln!(s, "| XML | Backend | Versions | Result |");
        let _ = writeln!(s, "|---|---|---|---|");
        for r in &d.replay {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} |",
                r.xml,
                r.backend,
                r.versions,
                md(&r.why)
            );
        }
        let _ = writeln!(s);
    }
    s
}
