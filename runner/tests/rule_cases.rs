//! Every `scenarios/rules/*.xml` is a test: `mflab check --format json` on
//! it must give exactly the diagnostics listed in the `.expected` file
//! beside it, and the matching exit status.

use std::path::{Path, PathBuf};
use std::process::Command;

use libtest_mimic::{Arguments, Failed, Trial};

fn main() -> std::process::ExitCode {
    let args = Arguments::from_args();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/rules");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("scenarios/rules exists")
        .map(|e| e.expect("readable dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "xml"))
        .collect();
    cases.sort();
    assert!(
        !cases.is_empty(),
        "no rule cases found in {}",
        dir.display()
    );
    let trials = cases
        .into_iter()
        .map(|xml| {
            let name = format!("rules::{}", xml.file_stem().unwrap().to_string_lossy());
            Trial::test(name, move || run_case(&xml))
        })
        .collect();
    libtest_mimic::run(&args, trials).exit_code()
}

fn run_case(xml: &Path) -> Result<(), Failed> {
    let expected_path = xml.with_extension("expected");
    let expected_text = std::fs::read_to_string(&expected_path).map_err(|e| {
        format!(
            "{}: {e} (every case needs its .expected file)",
            expected_path.display()
        )
    })?;
    let expected: Vec<String> = expected_text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();

    let out = Command::new(env!("CARGO_BIN_EXE_mflab"))
        .args(["check", "--format", "json"])
        .arg(xml)
        .output()?;
    let list: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).map_err(|e| {
        format!(
            "stdout is not a JSON array: {e}\n{}",
            String::from_utf8_lossy(&out.stdout)
        )
    })?;
    let seen: Vec<String> = list
        .iter()
        .map(|d| {
            format!(
                "{}:{} {} {}",
                d["line"],
                d["column"],
                d["severity"].as_str().unwrap_or("?"),
                d["rule"].as_str().unwrap_or("?")
            )
        })
        .collect();
    for d in &list {
        for key in ["file", "message", "hint"] {
            if d[key].as_str().is_none_or(str::is_empty) {
                return Err(format!("diagnostic without a {key}: {d}").into());
            }
        }
    }
    if seen != expected {
        return Err(format!(
            "expected:\n  {}\nseen:\n  {}\nfull output:\n{}",
            expected.join("\n  "),
            seen.join("\n  "),
            String::from_utf8_lossy(&out.stdout)
        )
        .into());
    }
    let want_status = if expected.iter().any(|l| l.contains(" error ")) {
        1
    } else {
        0
    };
    if out.status.code() != Some(want_status) {
        return Err(format!(
            "exit status {:?}, expected {want_status}",
            out.status.code()
        )
        .into());
    }
    Ok(())
}
