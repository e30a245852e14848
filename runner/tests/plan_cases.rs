//! Every `scenarios/plan/*.toml` is a test: build its host as a fake sysfs
//! tree (the kernel's layout), run `mflab plan --format json`, and compare.

use std::path::{Path, PathBuf};
use std::process::Command;

use lab::pci::view::{FakeFunction, FakeSysfs};
use libtest_mimic::{Arguments, Failed, Trial};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    host: String,
    #[serde(default = "fixed")]
    policy: String,
    xml: String,
    expect: Expect,
}

fn fixed() -> String {
    "fixed".into()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    plan: Option<String>,
    rules: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Host {
    function: Vec<HostFunction>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HostFunction {
    bdf: String,
    ids: String,
    class: u32,
    driver: Option<String>,
    group: Option<u32>,
    #[serde(default)]
    multifunction: bool,
    #[serde(default)]
    bridge: bool,
}

fn main() -> std::process::ExitCode {
    let args = Arguments::from_args();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/plan");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("scenarios/plan exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    cases.sort();
    assert!(!cases.is_empty());
    let trials = cases
        .into_iter()
        .map(|p| {
            let name = format!("plan::{}", p.file_stem().unwrap().to_string_lossy());
            Trial::test(name, move || run_case(&p))
        })
        .collect();
    libtest_mimic::run(&args, trials).exit_code()
}

fn build_host(dir: &Path, host_file: &Path) -> Result<(), Failed> {
    let host: Host = toml::from_str(&std::fs::read_to_string(host_file)?)
        .map_err(|e| format!("{}: {e}", host_file.display()))?;
    let tree = FakeSysfs::create(dir)?;
    for f in host.function {
        let (v, d) = f.ids.split_once(':').ok_or("ids must be vvvv:dddd")?;
        let mut fake = FakeFunction {
            address: f.bdf.parse()?,
            vendor: u16::from_str_radix(v, 16)?,
            device: u16::from_str_radix(d, 16)?,
            class: f.class,
            header_type: if f.bridge { 1 } else { 0 },
            driver: f.driver,
            iommu_group: f.group,
        };
        if f.multifunction {
            fake = fake.multifunction();
        }
        tree.add(&fake)?;
    }
    tree.add_driver("vfio-pci")?;
    Ok(())
}

fn run_case(path: &Path) -> Result<(), Failed> {
    let case: Case = toml::from_str(&std::fs::read_to_string(path)?)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let work = tempfile::tempdir()?;
    let sysfs = work.path().join("sys");
    build_host(
        &sysfs,
        &path
            .parent()
            .unwrap()
            .join("hosts")
            .join(format!("{}.toml", case.host)),
    )?;
    let xml = work.path().join("domain.xml");
    std::fs::write(&xml, &case.xml)?;

    let out = Command::new(env!("CARGO_BIN_EXE_mflab"))
        .args([
            "plan",
            "--format",
            "json",
            "--policy",
            &case.policy,
            "--sysfs",
        ])
        .arg(&sysfs)
        .arg(&xml)
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let seen: serde_json::Value = serde_json::from_str(&stdout).map_err(|e| {
        format!(
            "not JSON ({e}): {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    match (&case.expect.plan, &case.expect.rules) {
        (Some(plan), None) => {
            let want: serde_json::Value = serde_json::from_str(plan)?;
            if seen != want {
                return Err(format!("expected plan:\n{want}\nseen:\n{seen}").into());
            }
            if out.status.code() != Some(0) {
                return Err(format!("exit {:?}, expected 0", out.status.code()).into());
            }
        }
        (None, Some(rules)) => {
            let ids: Vec<String> = seen["diagnostics"]
                .as_array()
                .ok_or_else(|| format!("no diagnostics in {seen}"))?
                .iter()
                .map(|d| d["rule"].as_str().unwrap_or("?").to_string())
                .collect();
            if &ids != rules {
                return Err(format!("expected rules {rules:?}, seen {ids:?}\n{seen:#}").into());
            }
            if out.status.code() != Some(1) {
                return Err(format!("exit {:?}, expected 1", out.status.code()).into());
            }
        }
        _ => return Err("[expect] needs exactly one of plan or rules".into()),
    }
    Ok(())
}
