//! `mflab report --compare`: what libvirt did, side by side across runs of
//! different versions. Reads either the [`RunRecord`]s of `mflab run
//! --backend libvirt --format json` (one row per scenario: refused at
//! define, failed at start, or what L2 saw) or the verdicts of `mflab
//! check --backend libvirt --format json` (one row per case: accepted, or
//! refused in libvirt's words), one file per version, and writes a
//! Markdown table, with whether the scenario's expectations for that
//! version held. Rows where every run did the same are left out unless
//! asked for.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::Path;

use lab::protocol::GuestFunction;
use serde::Deserialize;

use super::json::RunRecord;

/// One column: its label and a cell per row name.
pub struct Column {
    pub label: String,
    pub cells: BTreeMap<String, String>,
}

/// One row of `mflab check --backend libvirt --format json`.
#[derive(Debug, Deserialize)]
pub struct CheckRow {
    pub file: String,
    pub libvirt: CheckVerdict,
}

/// libvirt's side of a [`CheckRow`].
#[derive(Debug, Deserialize)]
pub struct CheckVerdict {
    pub accepted: bool,
    pub message: Option<String>,
}

/// What a file of `--compare` holds.
pub enum Compared {
    Runs(Vec<RunRecord>),
    Checks(Vec<CheckRow>),
}

impl Compared {
    /// Runs if the JSON is runs, else check verdicts, else the runs' error
    /// (the usual input).
    pub fn parse(text: &str) -> Result<Compared, serde_json::Error> {
        match serde_json::from_str::<Vec<RunRecord>>(text) {
            Ok(runs) => Ok(Compared::Runs(runs)),
            Err(as_runs) => serde_json::from_str::<Vec<CheckRow>>(text)
                .map(Compared::Checks)
                .map_err(|_| as_runs),
        }
    }

    /// The heading of the first column.
    pub fn row_heading(&self) -> &'static str {
        match self {
            Compared::Runs(_) => "scenario",
            Compared::Checks(_) => "case",
        }
    }

    pub fn column(&self, label: &str) -> Column {
        let cells = match self {
            Compared::Runs(runs) => runs
                .iter()
                .map(|r| {
                    let did = what_libvirt_did(r);
                    let cell = match r.passed {
                        true => did,
                        false => format!("{did} **(expectation failed)**"),
                    };
                    (r.scenario.clone(), cell)
                })
                .collect(),
            Compared::Checks(rows) => rows
                .iter()
                .map(|row| {
                    let case = Path::new(&row.file)
                        .file_stem()
                        .map_or(row.file.clone(), |s| s.to_string_lossy().into_owned());
                    let cell = match (&row.libvirt.accepted, &row.libvirt.message) {
                        (true, _) => "accepted".to_string(),
                        (false, Some(m)) => cell(&format!("rejected: {}", without_timestamps(m))),
                        (false, None) => "rejected".to_string(),
                    };
                    (case, cell)
                })
                .collect(),
        };
        Column {
            label: label.to_string(),
            cells,
        }
    }
}

/// The Markdown table, rows headed `heading`; `all`: rows where every run
/// did the same too.
pub fn table(heading: &str, columns: &[Column], all: bool) -> String {
    let mut names: Vec<&str> = columns
        .iter()
        .flat_map(|c| c.cells.keys().map(String::as_str))
        .collect();
    names.sort();
    names.dedup();
    let mut t = String::new();
    let labels: Vec<&str> = columns.iter().map(|c| c.label.as_str()).collect();
    let _ = writeln!(t, "| {heading} | {} |", labels.join(" | "));
    let _ = writeln!(t, "{}|", "|---".repeat(columns.len() + 1));
    for name in names {
        let cells: Vec<&str> = columns
            .iter()
            .map(|c| c.cells.get(name).map_or("-", String::as_str))
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
            Compared::Runs(vec![
                record("same", true, None, &[("0000:01:00.0", "0x038000")]),
                record(
                    "differs",
                    true,
                    Some("2026-12-01 13:35:06.985+0000: internal error: group 3 | not viable"),
                    &[],
                ),
            ])
            .column("9.0"),
            Compared::Runs(vec![
                record(
                    "same",
                    true,
                    None,
                    &[("0000:01:00.0", "0x038000"), ("0000:00:1f.0", "0x060100")],
                ),
                record("differs", false, None, &[("0000:01:00.0", "0x038000")]),
            ])
            .column("11.3"),
        ];
        assert_eq!(
            table("scenario", &columns, false),
            "| scenario | 9.0 | 11.3 |\n|---|---|---|\n| differs | internal error: group 3 \\| not viable | L2 saw 1234:1111@01:00.0 **(expectation failed)** |\n"
        );
        let all = table("scenario", &columns, true);
        assert!(
            all.contains("| same | L2 saw 1234:1111@01:00.0 | L2 saw 1234:1111@01:00.0 |"),
            "{all}"
        );
    }

    #[test]
    fn check_verdicts_are_compared_by_case() {
        let v90 = r#"[{"file":"scenarios/rules/ok-address-none.xml","mflab":[],"libvirt":{"accepted":false,"message":"unsupported configuration: unknown address type 'none'"}},{"file":"scenarios/rules/r1-assigned-maybe.xml","mflab":[],"libvirt":{"accepted":true,"message":null}}]"#;
        let v128 = r#"[{"file":"scenarios/rules/ok-address-none.xml","mflab":[],"libvirt":{"accepted":false,"message":"XML error: Invalid value for attribute 'type' in element 'address': 'none'."}},{"file":"scenarios/rules/r1-assigned-maybe.xml","mflab":[],"libvirt":{"accepted":true,"message":null}}]"#;
        let a = Compared::parse(v90).unwrap();
        assert_eq!(a.row_heading(), "case");
        let columns = [
            a.column("9.0"),
            Compared::parse(v128).unwrap().column("12.8"),
        ];
        assert_eq!(
            table("case", &columns, false),
            "| case | 9.0 | 12.8 |\n|---|---|---|\n| ok-address-none | rejected: unsupported configuration: unknown address type 'none' | rejected: XML error: Invalid value for attribute 'type' in element 'address': 'none'. |\n"
        );
        assert!(Compared::parse("[{\"neither\": 1}]").is_err());
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
