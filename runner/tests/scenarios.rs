//! The regression suite: every `scenarios/*.toml` is its own test,
//! `scenario::<name>`, run through `mflab run FILE` (so filtering and
//! `--list` work). VM scenarios boot real L1s and L2s; when QEMU or the
//! kernel is missing they fail, they never skip.

use std::path::{Path, PathBuf};
use std::process::Command;

use libtest_mimic::{Arguments, Failed, Trial};

fn main() -> std::process::ExitCode {
    let args = Arguments::from_args();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("scenarios/")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 15,
        "the suite has shrunk: {} scenarios",
        files.len()
    );
    let mut trials = Vec::new();
    for f in files {
        let stem = f.file_stem().unwrap().to_string_lossy().into_owned();
        // A scenario runs under each backend it declares (default mflab);
        // the libvirt runs are `scenario::<name>::libvirt`.
        let value: toml::Value =
            toml::from_str(&std::fs::read_to_string(&f).unwrap()).expect("scenario is TOML");
        let backends: Vec<String> = value
            .get("backends")
            .and_then(|b| b.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|b| b.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_else(|| vec!["mflab".into()]);
        for backend in backends {
            let name = if backend == "mflab" {
                format!("scenario::{stem}")
            } else {
                format!("scenario::{stem}::{backend}")
            };
            let file = f.clone();
            trials.push(Trial::test(name, move || run(&file, &backend)));
        }
    }
    libtest_mimic::run(&args, trials).exit_code()
}

fn run(file: &Path, backend: &str) -> Result<(), Failed> {
    let out = Command::new(env!("CARGO_BIN_EXE_mflab"))
        .args(["run", "--backend", backend])
        .arg(file)
        .output()?;
    if out.status.success() {
        return Ok(());
    }
    Err(format!(
        "mflab run {} exited with {}\n{}{}",
        file.display(),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
    .into())
}
