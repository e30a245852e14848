//! `mflab report --compare`: what libvirt did on each scenario, side by
//! side across runs of different versions. Reads the [`RunRecord`]s of
//! `mflab run --backend libvirt --format json` runs (one file per
//! version) and writes a Markdown table: per scenario, what each run's
//! libvirt did (refused at define, failed at start, or what L2 saw) in
//! libvirt's own words, and whether the scenario's expectations for that
//! version held. Rows where every run did the same are left out unless
//! asked for.

use std::collections::BTreeMap;
use std::fmt::Write;

use lab::protocol::GuestFunction;

use super::json::RunRecord;

/// One column: its label and its runs.
pub struct Column {
    pub label: String,
    pub runs: Vec<RunRecord>,
}

/// The Markdown table; `all`: rows where every run did the same too.
pub fn table(columns: &[Column], all: bool) -> String {
    let by_name: Vec<BTreeMap<&str, &RunRecord>> = columns
        .iter()
        .map(|c| c.runs.iter().map(|r| (r.scenario.as_str(), r)).collect())
        .collect();
    let mut names: Vec<&str> = by_name.iter().flat_map(|m| m.keys().copied()).collect();
    names.sort();
    names.dedup();
    let mut t = String::new();
    let labels: Vec<&str> = columns.iter().map(|c| c.label.as_str()).collect();
    let _ = writeln!(t, "| scenario | {} |", labels.join(" | "));
    let _ = writeln!(t, "{}|", "|---".repeat(columns.len() + 1));
    for name in names {
        let cells: Vec<String> = by_name
            .iter()
            .map(|m| match m.get(name) {
                None => "-".to_string(),
                Some(r) if r.passed => what_libvirt_did(r),
                Some(r) => format!("{} **(expectation failed)**", what_libvirt_did(r)),
            })
            .collect();
        if all || cells.iter().any(|c| c != &cells[0]) {
            let _ = writeln!(t, "| {name} | {} |", cells.join(" | "));
        }
    }
    t
}

/// One cell: the error in libvirt's words (timestamps aside), the failed
/// steps, or what L2 saw of the functions under test.
fn what_libvirt_did(r: &RunRecord) -> String {
    if let Some(error) = &r.error {
        return cell(&without_timestamps(error));
    }
    let failed: Vec<&str> = r.steps.iter().filter_map(|s| s.error.as_deref()).collect();
    if !failed.is_empty() {
        return cell(&format!("steps: {}", failed.join(" / ")));
    }
    if !r.l2_guest.is_empty() {
        return format!("L2 saw {}", functions(&r.l2_guest));
    }
    if !r.l2_qmp.is_empty() {
        return format!("QMP saw {}", functions(&r.l2_qmp));
    }
    if !r.steps.is_empty() {
        return format!("all {} steps went through", r.steps.len());
    }
    "no L2 (plan depth, or refused before libvirt)".into()
}

/// Network, display and multimedia functions (the ones under test), as
/// `1234:1111@00:05.0`.
fn functions(view: &[GuestFunction]) -> String {
    let under_test: Vec<String> = view
        .iter()
        .filter(|f| {
            ["0x02", "0x03", "0x04"]
                .iter()
                .any(|c| f.class.starts_with(c))
        })
        .map(|f| {
            let bdf = f.bdf.to_string();
            format!(
                "{}:{}@{}",
                f.vendor.trim_start_matches("0x"),
                f.device.trim_start_matches("0x"),
                bdf.get(5..).unwrap_or(&bdf)
            )
        })
        .collect();
    match under_test.is_empty() {
        true => "none of the functions".into(),
        false => under_test.join(", "),
    }
}

/// A table cell: one line, pipes escaped.
fn cell(text: &str) -> String {
    text.replace('\n', " ").replace('|', "\\|")
}

/// QEMU's and libvirt's timestamps (`2026-12-01 13:35:06.985+0000: `,
/// `2026-12-01T13:35:06.985Z `) differ from run to run; the words do not.
fn without_timestamps(text: &str) -> String {
    let mut out = String::new();
    let mut i = 0;
    while let Some(c) = text[i..].chars().next() {
        match timestamp_at(&text[i..]) {
            Some(len) => i += len,
            None => {
                out.push(c);
                i += c.len_utf8();
            }
        }
    }
    out
}

/// The length of a timestamp at the start of `s` with what follows it
/// (`: ` or a space), if one is there: `YYYY-MM-DD`, `T` or a space, then
/// digits, colons and dots, an optional `+0000` or `Z`.
fn timestamp_at(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let digits = |from: usize, n: usize| {
        b.len() >= from + n && b[from..from + n].iter().all(u8::is_ascii_digit)
    };
    if !(digits(0, 4)
        && b.get(4) == Some(&b'-')
        && digits(5, 2)
        && b.get(7) == Some(&b'-')
        && digits(8, 2))
    {
        return None;
    }
    if !matches!(b.get(10), Some(b'T') | Some(b' ')) || !digits(11, 2) {
        return None;
    }
    let mut i = 11;
    while i < b.len() && (b[i].is_ascii_digit() || b[i] == b':' || b[i] == b'.') {
        i += 1;
    }
    if b.get(i) == Some(&b'+') && digits(i + 1, 4) {
        i += 5;
    } else if b.get(i) == Some(&b'Z') {
        i += 1;
    }
    if b.get(i) == Some(&b':') {
        i += 1;
    }
    if b.get(i) == Some(&b' ') {
        i += 1;
    }
    Some(i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(scenario: &str, passed: bool, error: Option<&str>, l2: &[(&str, &str)]) -> RunRecord {
        let mut r: RunRecord = serde_json::from_value(serde_json::json!({
            "scenario": scenario, "backend": "libvirt", "passed": passed, "error": error,
        }))
        .unwrap();
        r.l2_guest = l2
            .iter()
            .map(|(bdf, class)| GuestFunction {
                bdf: bdf.parse().unwrap(),
                vendor: "0x1234".into(),
                device: "0x1111".into(),
                class: class.to_string(),
                driver: None,
            })
            .collect();
        r
    }

    #[test]
    fn rows_where_the_versions_differ_in_libvirt_s_words() {
        let columns = [
            Column {
                label: "9.0".into(),
                runs: vec![
                    record("same", true, None, &[("0000:01:00.0", "0x038000")]),
                    record(
                        "differs",
                        true,
                        Some("2026-12-01 13:35:06.985+0000: internal error: group 3 | not viable"),
                        &[],
                    ),
                ],
            },
            Column {
                label: "11.3".into(),
                runs: vec![
                    record(
                        "same",
                        true,
                        None,
                        &[("0000:01:00.0", "0x038000"), ("0000:00:1f.0", "0x060100")],
                    ),
                    record("differs", false, None, &[("0000:01:00.0", "0x038000")]),
                ],
            },
        ];
        assert_eq!(
            table(&columns, false),
            "| scenario | 9.0 | 11.3 |\n|---|---|---|\n| differs | internal error: group 3 \\| not viable | L2 saw 1234:1111@01:00.0 **(expectation failed)** |\n"
        );
        let all = table(&columns, true);
        assert!(
            all.contains("| same | L2 saw 1234:1111@01:00.0 | L2 saw 1234:1111@01:00.0 |"),
            "{all}"
        );
    }

    #[test]
    fn timestamps_go_and_the_words_stay() {
        assert_eq!(
            without_timestamps("qemu said: 2026-12-01T13:35:06.985Z qemu-system-x86_64: vfio 0000:00:06.0: group 2 is not viable"),
            "qemu said: qemu-system-x86_64: vfio 0000:00:06.0: group 2 is not viable"
        );
        assert_eq!(without_timestamps("no time here 2026"), "no time here 2026");
    }
}
