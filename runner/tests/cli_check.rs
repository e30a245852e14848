//! `mflab check` as a user runs it: exit statuses and output forms.

mod common;
use common::output as mflab;

fn case(name: &str) -> String {
    format!("{}/../scenarios/rules/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn missing_file_is_exit_2_and_says_which() {
    let out = mflab(&["check", "/nonexistent/domain.xml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/domain.xml"));
}

#[test]
fn no_file_at_all_is_a_usage_error() {
    assert_eq!(mflab(&["check"]).status.code(), Some(2));
}

#[test]
fn text_form_is_file_line_column_severity_rule_then_hint() {
    let file = case("r3-assigned-no-with-pci-address.xml");
    let out = mflab(&["check", &file]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mut lines = stdout.lines();
    assert!(
        lines
            .next()
            .unwrap()
            .starts_with(&format!("{file}:14:7: error[R3]: ")),
        "{stdout}"
    );
    assert!(lines.next().unwrap().contains("hint: "), "{stdout}");
}

#[test]
fn warnings_alone_exit_0() {
    let out = mflab(&["check", &case("r7-boot-on-unassigned-is-a-warning.xml")]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("warning[R7]"));
}

#[test]
fn json_collects_all_files_in_one_array() {
    let out = mflab(&[
        "check",
        "--format",
        "json",
        &case("r4-yes-with-none-address.xml"),
        &case("r5-none-on-disk.xml"),
        &case("ok-assigned-no.xml"),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let list: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let rules: Vec<&str> = list.iter().map(|d| d["rule"].as_str().unwrap()).collect();
    assert_eq!(rules, ["R4", "R5"]);
    for key in [
        "rule", "severity", "file", "line", "column", "message", "hint",
    ] {
        assert!(list[0].get(key).is_some(), "missing key {key}");
    }
}

#[test]
fn deep_nesting_is_an_xml_error_not_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("deep.xml");
    let depth = 200_000;
    std::fs::write(
        &file,
        format!("{}{}", "<a>".repeat(depth), "</a>".repeat(depth)),
    )
    .unwrap();
    let file = file.to_str().unwrap();
    let out = mflab(&["check", file]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    // The 257th <a> starts at column 1 + 256 * 3.
    assert!(
        stdout.starts_with(&format!("{file}:1:769: error[XML]: ")),
        "{stdout}"
    );
    assert!(stdout.contains("at most 256 deep"), "{stdout}");
}
