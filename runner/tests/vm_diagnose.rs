//! `mflab diagnose --replay` on a GPU-with-audio report: the XML as
//! posted reproduces "group 1 is not viable" and the fixed one passes,
//! on both backends, in a real L1 rebuilt from the paste.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

#[test]
fn replay_reproduces_the_report_and_proves_the_fix() {
    let paste = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../lab/tests/diagnose/gtx1070-audio-undeclared.txt");
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_mflab"))
        .args([
            "diagnose",
            "--replay",
            "--backend",
            "both",
            "--format",
            "json",
        ])
        .arg(&paste)
        .env("TMPDIR", tmp.path())
        .output()
        .expect("run mflab");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let d: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("no JSON ({e}); stderr:\n{stderr}"));
    let runs = d["replay"].as_array().expect("replay[]");
    let seen: Vec<(String, String)> = runs
        .iter()
        .map(|r| {
            (
                r["xml"].as_str().unwrap().into(),
                r["backend"].as_str().unwrap().into(),
            )
        })
        .collect();
    let want: Vec<(String, String)> = [
        ("reported", "libvirt"),
        ("reported", "mflab"),
        ("fixed", "libvirt"),
        ("fixed", "mflab"),
    ]
    .iter()
    .map(|(x, b)| (x.to_string(), b.to_string()))
    .collect();
    assert_eq!(seen, want, "stderr:\n{stderr}");
    for r in runs {
        assert_eq!(r["passed"], true, "{r}\nstderr:\n{stderr}");
        match r["xml"].as_str().unwrap() {
            "reported" => {
                assert_eq!(r["reproduced"], true, "{r}");
                assert!(
                    r["error"]
                        .as_str()
                        .unwrap()
                        .contains("group 1 is not viable"),
                    "{r}"
                );
            }
            _ => {
                assert_eq!(r["error"], Value::Null, "{r}");
                assert_eq!(r["l2_saw"], serde_json::json!(["1234:1111"]), "{r}");
            }
        }
        if r["backend"] == "libvirt" {
            assert!(r["libvirt"].as_str().is_some_and(|v| !v.is_empty()), "{r}");
        }
    }
    assert_eq!(
        out.status.code(),
        Some(1),
        "the posted XML needs the fix: exit 1"
    );
    // Everything the replay made is gone (nothing failed, nothing kept).
    let left: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "left in TMPDIR: {left:?}");
}
