//! Bug reports as people paste them (`lab/tests/diagnose/NAME.txt`), each
//! with the verdict `mflab diagnose` must give (`NAME.expect.toml`): a new
//! case is two new files. Each runs the real binary with `--format json`
//! (the keys tools read), and the fixed XML it writes goes through
//! `mflab check`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use libtest_mimic::{Arguments, Failed, Trial};
use serde::Deserialize;
use serde_json::Value;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    #[serde(default)]
    rules: Option<Vec<String>>,
    #[serde(default)]
    fix_needed: Option<bool>,
    #[serde(default)]
    fixable: Option<bool>,
    #[serde(default)]
    added_unassigned: Option<Vec<String>>,
    #[serde(default)]
    reported_group: Option<u32>,
    #[serde(default)]
    libvirt: Option<String>,
    #[serde(default)]
    qemu: Option<String>,
    #[serde(default)]
    kernel: Option<String>,
    /// A paste whose XML cannot be read: the XML finding and its line.
    #[serde(default)]
    xml_error: Option<bool>,
    #[serde(default)]
    line: Option<u64>,
    #[serde(default)]
    group: Vec<Group>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Group {
    group: u64,
    #[serde(default)]
    member: Vec<Member>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Member {
    address: String,
    declared: String,
    blocks: bool,
    host_critical: bool,
}

fn cases() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../lab/tests/diagnose")
}

fn mflab() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mflab"))
}

fn diagnose_json(paste: &Path) -> Result<Value, Failed> {
    let out = mflab()
        .args(["diagnose", "--format", "json"])
        .arg(paste)
        .output()
        .map_err(|e| format!("cannot run mflab: {e}"))?;
    if !matches!(out.status.code(), Some(0..=2)) {
        return Err(format!(
            "mflab diagnose ended with {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    serde_json::from_slice(&out.stdout).map_err(|e| {
        format!(
            "not JSON ({e}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
        .into()
    })
}

fn same(wrong: &mut Vec<String>, what: &str, want: Value, seen: &Value) {
    if &want != seen {
        wrong.push(format!("{what}: expected {want}, seen {seen}"));
    }
}

fn check(name: &str) -> Result<(), Failed> {
    let paste = cases().join(format!("{name}.txt"));
    let expect_text = std::fs::read_to_string(cases().join(format!("{name}.expect.toml")))
        .map_err(|e| format!("{name}.expect.toml: {e}"))?;
    let expect: Expect =
        toml::from_str(&expect_text).map_err(|e| format!("{name}.expect.toml: {e}"))?;
    let d = diagnose_json(&paste)?;
    let mut wrong: Vec<String> = Vec::new();
    for key in ["groups", "rules", "fixed_xml", "warnings", "replay"] {
        if d.get(key).is_none() {
            return Err(format!("the JSON has no `{key}`: {d}").into());
        }
    }

    if let Some(rules) = &expect.rules {
        let seen: Vec<Value> = d["rules"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["severity"] == "error")
            .map(|r| r["rule"].clone())
            .collect();
        same(
            &mut wrong,
            "rules",
            serde_json::json!(rules),
            &Value::Array(seen),
        );
    }
    if let Some(needed) = expect.fix_needed {
        same(
            &mut wrong,
            "fix needed",
            Value::Bool(needed),
            &Value::Bool(d["passes"] == false),
        );
    }
    if let Some(fixable) = expect.fixable {
        same(
            &mut wrong,
            "fixable",
            Value::Bool(fixable),
            &Value::Bool(!d["fixed_xml"].is_null()),
        );
    }
    if let Some(added) = &expect.added_unassigned {
        same(&mut wrong, "added", serde_json::json!(added), &d["added"]);
    }
    if let Some(group) = expect.reported_group {
        let groups: Vec<&Value> = d["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| &e["group"])
            .collect();
        if !groups.iter().any(|g| g.as_u64() == Some(u64::from(group))) {
            wrong.push(format!(
                "reported group: expected {group} among the error lines' {groups:?}"
            ));
        }
    }
    for (key, want) in [
        ("libvirt", &expect.libvirt),
        ("qemu", &expect.qemu),
        ("kernel", &expect.kernel),
    ] {
        if let Some(want) = want {
            same(
                &mut wrong,
                key,
                Value::String(want.clone()),
                &d["versions"][key],
            );
        }
    }
    if expect.xml_error == Some(true) {
        let line = expect.line.ok_or("xml_error needs line")?;
        let xml_at_line = d["rules"]
            .as_array()
            .unwrap()
            .iter()
            .chain(d["unread"].as_array().unwrap())
            .any(|r| r["line"].as_u64() == Some(line));
        if !xml_at_line {
            wrong.push(format!(
                "expected a finding or an unread line at line {line}; rules {}, unread {}",
                d["rules"], d["unread"]
            ));
        }
    }

    let seen_groups: BTreeMap<u64, &Value> = d["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| (g["group"].as_u64().unwrap(), g))
        .collect();
    if !expect.group.is_empty() {
        let want: Vec<u64> = expect.group.iter().map(|g| g.group).collect();
        let seen: Vec<u64> = seen_groups.keys().copied().collect();
        if want != seen {
            wrong.push(format!("groups: expected {want:?}, seen {seen:?}"));
        }
    }
    for g in &expect.group {
        let Some(seen) = seen_groups.get(&g.group) else {
            continue;
        };
        let members = seen["members"].as_array().unwrap();
        let seen_addresses: Vec<&str> = members
            .iter()
            .map(|m| m["address"].as_str().unwrap())
            .collect();
        let want_addresses: Vec<&str> = g.member.iter().map(|m| m.address.as_str()).collect();
        if seen_addresses != want_addresses {
            wrong.push(format!(
                "group {}: members {seen_addresses:?}, expected {want_addresses:?}",
                g.group
            ));
            continue;
        }
        for (m, s) in g.member.iter().zip(members) {
            let line = format!(
                "{} declared {} blocks {} host_critical {}",
                m.address, m.declared, m.blocks, m.host_critical
            );
            let seen_line = format!(
                "{} declared {} blocks {} host_critical {}",
                s["address"].as_str().unwrap(),
                s["declared"].as_str().unwrap_or("?"),
                s["blocks"],
                s["host_critical"]
            );
            if line != seen_line {
                wrong.push(format!(
                    "expected {line}\n      seen {seen_line} ({})",
                    s["why"]
                ));
            }
            if s["why"].as_str().is_none_or(str::is_empty) {
                wrong.push(format!("{}: no why", m.address));
            }
        }
    }

    if let Some(fixed) = d["fixed_xml"].as_str() {
        if !d["fixed_rules"].as_array().unwrap().is_empty() {
            wrong.push(format!(
                "the fixed XML breaks rules on the pasted host: {}",
                d["fixed_rules"]
            ));
        }
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let file = dir.path().join("fixed.xml");
        std::fs::write(&file, fixed).map_err(|e| e.to_string())?;
        let out = mflab()
            .arg("check")
            .arg(&file)
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            wrong.push(format!(
                "mflab check refuses the fixed XML: {}",
                String::from_utf8_lossy(&out.stdout)
            ));
        }
    }
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(format!("{name}:\n  {}", wrong.join("\n  ")).into())
    }
}

/// Every prefix of every paste (a paste cut off anywhere) gives a
/// diagnosis or a clear refusal, never a crash.
fn truncated_pastes_never_crash() -> Result<(), Failed> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    for entry in std::fs::read_dir(cases()).map_err(|e| e.to_string())? {
        let path = entry.map_err(|e| e.to_string())?.path();
        if path.extension().is_none_or(|e| e != "txt") {
            continue;
        }
        let text = std::fs::read_to_string(&path).map_err(|e| e.to_string())?;
        let cut = dir.path().join("cut.txt");
        let step = (text.len() / 9).max(1);
        for end in (1..text.len()).step_by(step) {
            let end = (0..=end)
                .rev()
                .find(|&e| text.is_char_boundary(e))
                .unwrap_or(0);
            std::fs::write(&cut, &text[..end]).map_err(|e| e.to_string())?;
            diagnose_json(&cut).map_err(|e| {
                format!(
                    "{} cut at byte {end}: {}",
                    path.display(),
                    e.message().unwrap_or("")
                )
            })?;
        }
    }
    Ok(())
}

/// docs/diagnose.md shows a paste and what `mflab diagnose` prints for it:
/// each block after `<!-- paste: FILE -->` is that file, each after
/// `<!-- output: mflab ARGS -->` is what the binary prints (run from the
/// repository's root).
fn docs_page_is_what_mflab_prints() -> Result<(), Failed> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let page = std::fs::read_to_string(root.join("docs/diagnose.md")).map_err(|e| e.to_string())?;
    let lines: Vec<&str> = page.lines().collect();
    let mut shown = 0;
    for (i, line) in lines.iter().enumerate() {
        let Some(marker) = line
            .strip_prefix("<!-- ")
            .and_then(|l| l.strip_suffix(" -->"))
        else {
            continue;
        };
        let (kind, what) = marker.split_once(": ").ok_or("a marker without ': '")?;
        let fence = lines.get(i + 1).ok_or("a marker at the end")?;
        let ticks = &fence[..fence.len() - fence.trim_start_matches('`').len()];
        let end = (i + 2..lines.len())
            .find(|&j| lines[j] == ticks)
            .ok_or_else(|| format!("docs/diagnose.md:{}: the block never ends", i + 2))?;
        let block = lines[i + 2..end].join("\n");
        let want = match kind {
            "paste" => std::fs::read_to_string(root.join(what)).map_err(|e| e.to_string())?,
            "output" => {
                let args: Vec<&str> = what.split_whitespace().skip(1).collect();
                let out = mflab()
                    .args(&args)
                    .current_dir(&root)
                    .output()
                    .map_err(|e| e.to_string())?;
                String::from_utf8_lossy(&out.stdout).into_owned()
            }
            _ => continue,
        };
        if block.trim_end() != want.trim_end() {
            return Err(format!(
                "docs/diagnose.md:{}: the block after `{marker}` is not what it shows now; regenerate it. Now:\n{want}",
                i + 1
            )
            .into());
        }
        shown += 1;
    }
    if shown < 3 {
        return Err(format!("docs/diagnose.md has {shown} checked blocks, expected the paste, the text and the Markdown").into());
    }
    Ok(())
}

fn main() {
    let args = Arguments::from_args();
    let mut names: Vec<String> = std::fs::read_dir(cases())
        .expect("lab/tests/diagnose")
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            name.strip_suffix(".expect.toml").map(str::to_string)
        })
        .collect();
    names.sort();
    assert!(
        names.len() >= 4,
        "fewer than four diagnose cases: {names:?}"
    );
    let mut trials: Vec<Trial> = names
        .into_iter()
        .map(|name| Trial::test(format!("diagnose::{name}"), move || check(&name)))
        .collect();
    trials.push(Trial::test(
        "diagnose::truncated_pastes_never_crash",
        truncated_pastes_never_crash,
    ));
    trials.push(Trial::test(
        "docs::diagnose_page",
        docs_page_is_what_mflab_prints,
    ));
    libtest_mimic::run(&args, trials).exit();
}
